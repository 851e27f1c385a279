"""How good is a map? Faithfulness, localisation and sanity metrics from the literature.

Every metric takes maps as a (B, *spatial) tensor or straight from an `Explanation` (one target
per input) and runs batched on the inputs' device. Most return a small result object whose
fields are per-input tensors and whose properties are the published summary figures;
`energy_pointing_game`, `spearman`, `ssim` and `auc` return the per-input tensor itself. The
complexity metrics are in `camkit.metrics.complexity`; faithfulness correlation,
Sensitivity-N, infidelity and sufficiency in `camkit.metrics.faithfulness`; the metrics that
perturb in the map's order (faithfulness estimate, monotonicity, region perturbation,
selectivity, IROF) in `camkit.metrics.stepwise`, IROF's superpixels in
`camkit.metrics.superpixels`; sensitivity, the local Lipschitz estimate, relative stability,
continuity and consistency in `camkit.metrics.robustness`; completeness, non-sensitivity and
input invariance in `camkit.metrics.axiomatic`; focus with the localisation metrics; the MPRT
family with the sanity check.
"""

from camkit.boxes import box_iou
from camkit.metrics._common import ModelScores
from camkit.metrics.confidence import ADCC, Confidence, adcc, confidence, win_rate
from camkit.metrics.curves import Curve, auc, blur, deletion, insertion
from camkit.metrics.imputation import Road, impute, road
from camkit.metrics.localisation import (
    BoxAccuracy,
    Pointing,
    box_accuracy,
    boxes_to_masks,
    default_thresholds,
    energy_pointing_game,
    largest_component,
    map_boxes,
    masks_to_boxes,
    pointing_game,
    relevance_mass,
    relevance_rank,
    roc_auc,
    top_k_intersection,
)
from camkit.metrics.sanity import (
    Sanity,
    cascade_steps,
    cascading_randomisation,
    other_classes,
    random_logit,
    spearman,
    ssim,
)

__all__ = [
    "ADCC",
    "BoxAccuracy",
    "Confidence",
    "Curve",
    "ModelScores",
    "Pointing",
    "Road",
    "Sanity",
    "adcc",
    "auc",
    "blur",
    "box_accuracy",
    "box_iou",
    "boxes_to_masks",
    "cascade_steps",
    "cascading_randomisation",
    "confidence",
    "default_thresholds",
    "deletion",
    "energy_pointing_game",
    "impute",
    "insertion",
    "largest_component",
    "map_boxes",
    "masks_to_boxes",
    "other_classes",
    "pointing_game",
    "random_logit",
    "relevance_mass",
    "relevance_rank",
    "road",
    "roc_auc",
    "spearman",
    "ssim",
    "top_k_intersection",
    "win_rate",
]
