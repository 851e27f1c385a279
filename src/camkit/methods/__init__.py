"""The methods, each a small rule on the shared pipeline in `base`."""

from camkit.methods.base import METHODS, Evidence, Explainer, register
from camkit.methods.cam import CAM
from camkit.methods.gradient import GradCAM, GradCAMPlusPlus

__all__ = ["CAM", "METHODS", "Evidence", "Explainer", "GradCAM", "GradCAMPlusPlus", "register"]
