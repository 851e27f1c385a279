"""camkit: class activation maps for PyTorch models (CAM, Grad-CAM, Grad-CAM++, ...).

`camkit.metrics` holds the metrics that tell a faithful map from a pretty one.
"""

from camkit import metrics as metrics
from camkit import models as models
from camkit.api import explain
from camkit.augment import Augmented
from camkit.detections import Box, TopDetections
from camkit.errors import CamkitWarning
from camkit.explanation import Explanation
from camkit.image_text import PromptScores
from camkit.methods import (
    CAM,
    FEM,
    GAE,
    ISCAM,
    KPCACAM,
    METHODS,
    SESS,
    SSCAM,
    AblationCAM,
    AttentionRollout,
    CounterfactualGradCAM,
    DeepFeatureFactorization,
    EigenCAM,
    EigenGradCAM,
    Evidence,
    Explainer,
    FinerCAM,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    GuidedBackprop,
    GuidedGradCAM,
    HiResCAM,
    LayerCAM,
    LeGrad,
    RandomCAM,
    RefineCAM,
    ScoreCAM,
    SegEigenCAM,
    ShapleyCAM,
    SmoothGradCAMPlusPlus,
    Sobel,
    XGradCAM,
    register,
)
from camkit.overlay import grid, overlay
from camkit.regions import Region
from camkit.smoothing import Noise
from camkit.targets import Contrast, TopK

__all__ = [
    "CAM",
    "FEM",
    "GAE",
    "ISCAM",
    "KPCACAM",
    "METHODS",
    "SESS",
    "SSCAM",
    "AblationCAM",
    "AttentionRollout",
    "Augmented",
    "Box",
    "CamkitWarning",
    "Contrast",
    "CounterfactualGradCAM",
    "DeepFeatureFactorization",
    "EigenCAM",
    "EigenGradCAM",
    "Evidence",
    "Explainer",
    "Explanation",
    "FinerCAM",
    "FullGrad",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "LayerCAM",
    "LeGrad",
    "Noise",
    "PromptScores",
    "RandomCAM",
    "RefineCAM",
    "Region",
    "ScoreCAM",
    "SegEigenCAM",
    "ShapleyCAM",
    "SmoothGradCAMPlusPlus",
    "Sobel",
    "TopDetections",
    "TopK",
    "XGradCAM",
    "explain",
    "grid",
    "overlay",
    "register",
]
__version__ = "0.5.0"
