"""The methods, each a small rule on the shared pipeline in `base`."""

from camkit.methods.activation import FEM, DeepFeatureFactorization
from camkit.methods.base import (
    METHODS,
    Evidence,
    Explainer,
    method_class,
    register,
    unregister,
)
from camkit.methods.baselines import RandomCAM, Sobel
from camkit.methods.cam import CAM
from camkit.methods.eigen import KPCACAM, EigenCAM, EigenGradCAM, SegEigenCAM
from camkit.methods.gradient import (
    CounterfactualGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ShapleyCAM,
    SmoothGradCAMPlusPlus,
    XGradCAM,
)
from camkit.methods.guided import FullGrad, GuidedBackprop, GuidedGradCAM
from camkit.methods.perturbation import AblationCAM, ScoreCAM

__all__ = [
    "CAM",
    "FEM",
    "KPCACAM",
    "METHODS",
    "AblationCAM",
    "CounterfactualGradCAM",
    "DeepFeatureFactorization",
    "EigenCAM",
    "EigenGradCAM",
    "Evidence",
    "Explainer",
    "FullGrad",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "LayerCAM",
    "RandomCAM",
    "ScoreCAM",
    "SegEigenCAM",
    "ShapleyCAM",
    "SmoothGradCAMPlusPlus",
    "Sobel",
    "XGradCAM",
    "method_class",
    "register",
    "unregister",
]
