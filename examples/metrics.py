"""Which map is faithful? camkit.metrics on the bundled model, whose right answers are known.

Run: python examples/metrics.py
"""

import camkit
from camkit import metrics
from camkit.data import ShapesDataset
from camkit.models import load_shapes_model

model = load_shapes_model()
data = ShapesDataset(16, seed=7).stack()
x, labels, masks = data["image"], data["label"], data["mask"]

for method in ("gradcam", "gradcam++", "scorecam"):
    result = camkit.explain(model, x, method, targets=labels)
    drop = metrics.confidence(model, x, result)
    deletion = metrics.deletion(model, x, result, steps=16)
    insertion = metrics.insertion(model, x, result, steps=16)
    pointing = metrics.pointing_game(result, masks, tolerance=15 * 96 / 224)
    print(
        f"{method:10s} avg drop {drop.average_drop:5.1f}%  deletion AUC {deletion.mean_auc:.3f}  "
        f"insertion AUC {insertion.mean_auc:.3f}  pointing {100 * pointing.accuracy:5.1f}%"
    )
