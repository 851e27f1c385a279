"""camkit: class activation maps for PyTorch models (CAM, Grad-CAM, Grad-CAM++, ...)."""

from camkit.api import explain
from camkit.errors import CamkitWarning
from camkit.explanation import Explanation
from camkit.methods import CAM, METHODS, Evidence, Explainer, GradCAM, GradCAMPlusPlus, register
from camkit.targets import TopK

__all__ = [
    "CAM",
    "METHODS",
    "CamkitWarning",
    "Evidence",
    "Explainer",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "TopK",
    "explain",
    "register",
]
__version__ = "0.1.0"
