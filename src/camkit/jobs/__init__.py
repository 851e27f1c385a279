"""camkit's jobs as library calls: what `camkit explain` and `camkit evaluate` do, for Python
users, the command, the app and Ray workers alike. A job is a typed description (`ExplainJob`,
`EvaluateJob`: its fields are the command's options, declared once in `camkit.jobs.options`); a
job function runs it and returns what it did.

- `explain_folder(ExplainJob(...))`: overlays, grids, maps and JSON summaries for image files.
- `evaluate_dataset(EvaluateJob(...))`: the metrics' report for methods on a dataset.

Both run locally or on Ray (``ray=""`` or an address), report progress and failures to a
`Progress`, raise `camkit.errors.UsageError` before any work for a job that cannot run, and
`JobInterrupted` on Ctrl-C with what was finished.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as out:
    ...     done = explain_folder(ExplainJob(out=Path(out), methods=("cam",)))
    >>> done.inputs, done.failures
    (6, 0)
"""

from camkit.jobs.evaluate import EvaluateResult, evaluate_dataset
from camkit.jobs.explain import ExplainResult, explain_folder
from camkit.jobs.options import AppJob, ClassesJob, EvaluateJob, ExplainJob, LayersJob
from camkit.jobs.outputs import ImageResult, top_predictions, write_image
from camkit.jobs.progress import Collected, JobInterrupted, Progress

__all__ = [
    "AppJob",
    "ClassesJob",
    "Collected",
    "EvaluateJob",
    "EvaluateResult",
    "ExplainJob",
    "ExplainResult",
    "ImageResult",
    "JobInterrupted",
    "LayersJob",
    "Progress",
    "evaluate_dataset",
    "explain_folder",
    "top_predictions",
    "write_image",
]
