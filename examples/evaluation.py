"""The evaluation loop as a library call: every metric for two methods, batch by batch.

`camkit evaluate` runs this; here the batches come from the bundled benchmark. Run:
python examples/evaluation.py
"""

from camkit.data import ShapesDataset
from camkit.evaluation import Batch, Evaluation, Settings
from camkit.models import load_shapes_model

model = load_shapes_model()
data = ShapesDataset(24, seed=11)
evaluation = Evaluation(
    model, ["gradcam", "cam"], ["drop", "deletion", "pointing"], settings=Settings(steps=8)
)
for start in range(0, len(data), 8):
    part = data.stack(start, start + 8)
    batch = Batch(part["image"], part["label"], part["mask"])
    evaluation.add(evaluation.measure(batch, position=start))
report = evaluation.report()
print(report.to_markdown().split("\n\nCost")[0])
print(f"images: {report.info['images']}")
