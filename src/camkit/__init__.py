"""camkit: class activation maps for PyTorch models (CAM, Grad-CAM, Grad-CAM++, ...).

`camkit.metrics` holds the metrics that tell a faithful map from a pretty one.
"""

from camkit import metrics as metrics
from camkit import models as models
from camkit.api import explain
from camkit.augment import Augmented
from camkit.errors import CamkitWarning
from camkit.explanation import Explanation
from camkit.methods import (
    CAM,
    METHODS,
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    Evidence,
    Explainer,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    GuidedBackprop,
    GuidedGradCAM,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    SmoothGradCAMPlusPlus,
    XGradCAM,
    register,
)
from camkit.overlay import grid, overlay
from camkit.regions import Box, Region
from camkit.smoothing import Noise
from camkit.targets import Contrast, TopK

__all__ = [
    "CAM",
    "METHODS",
    "AblationCAM",
    "Augmented",
    "Box",
    "CamkitWarning",
    "Contrast",
    "EigenCAM",
    "EigenGradCAM",
    "Evidence",
    "Explainer",
    "Explanation",
    "FullGrad",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "LayerCAM",
    "Noise",
    "Region",
    "ScoreCAM",
    "SmoothGradCAMPlusPlus",
    "TopK",
    "XGradCAM",
    "explain",
    "grid",
    "overlay",
    "register",
]
__version__ = "0.2.0"
