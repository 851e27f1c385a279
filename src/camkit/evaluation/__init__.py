"""Evaluation: every metric for every method over a dataset, with intervals, plots and a report.

- `plugins`: what a metric plug-in declares (settings, columns, curves, plots, statistics,
  comparisons) and the registry (`METRICS`, `register_metric`).
- `builtin`: the metrics camkit ships (drop, deletion, insertion, road, pointing, energy,
  boxacc, sanity); `complexity` (sparseness, complexity, effective-complexity),
  `localisation` (relevance-mass, relevance-rank, top-k, roc-auc), `faithfulness`
  (faithfulness-correlation), `robustness` (sensitivity) and `randomisation` (random-logit)
  the ones of the Quantus catalogue; all on top of the mathematics of `camkit.metrics`.
- `settings`: the protocol parameters (`Settings`).
- `loop`: `evaluate` and `Evaluation`, which explain each batch once per method.
- `report`: the `Report` (Markdown, CSV, JSON, plots); `bootstrap`: its intervals.
- `datasets`: folders of class subfolders and the bundled benchmarks as batches.

Examples:
    >>> from camkit.models import load_shapes_model
    >>> from camkit.data import ShapesDataset
    >>> data = ShapesDataset(4, seed=1).stack()
    >>> report = evaluate(load_shapes_model(), [Batch(data["image"], data["label"])], ["cam"],
    ...                   ["deletion"], settings=Settings(steps=4))
    >>> report.columns
    ['Deletion AUC', 'Explain s']
"""

# isort: off
# The shipped metrics register in the order of `METRICS` (and of `--metrics all`).
from camkit.evaluation import builtin as builtin
from camkit.evaluation import complexity as complexity
from camkit.evaluation import faithfulness as faithfulness
from camkit.evaluation import localisation as localisation
from camkit.evaluation import randomisation as randomisation
from camkit.evaluation import robustness as robustness
from camkit.evaluation import axiomatic as axiomatic

# isort: on
from camkit.evaluation.loop import Batch, BatchResult, Evaluation, EvaluationInterrupted, evaluate
from camkit.evaluation.plugins import (
    METRICS,
    Comparison,
    Context,
    Load,
    Metric,
    Plot,
    Setting,
    Settings,
    Statistic,
    default_metrics,
    metric_settings,
    needing_masks,
    register_metric,
    unregister_metric,
)
from camkit.evaluation.report import Report, column_specs, plots_of

__all__ = [
    "METRICS",
    "Batch",
    "BatchResult",
    "Comparison",
    "Context",
    "Evaluation",
    "EvaluationInterrupted",
    "Load",
    "Metric",
    "Plot",
    "Report",
    "Setting",
    "Settings",
    "Statistic",
    "column_specs",
    "default_metrics",
    "evaluate",
    "metric_settings",
    "needing_masks",
    "plots_of",
    "register_metric",
    "unregister_metric",
]
