"""The methods, each a small rule on the shared pipeline in `base`."""

from camkit.methods.base import (
    METHODS,
    Evidence,
    Explainer,
    method_class,
    register,
    unregister,
)
from camkit.methods.cam import CAM
from camkit.methods.eigen import EigenCAM, EigenGradCAM
from camkit.methods.gradient import (
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    SmoothGradCAMPlusPlus,
    XGradCAM,
)
from camkit.methods.perturbation import AblationCAM, ScoreCAM

__all__ = [
    "CAM",
    "METHODS",
    "AblationCAM",
    "EigenCAM",
    "EigenGradCAM",
    "Evidence",
    "Explainer",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "SmoothGradCAMPlusPlus",
    "XGradCAM",
    "method_class",
    "register",
    "unregister",
]
