"""camkit: class activation maps for PyTorch models (CAM, Grad-CAM, Grad-CAM++, ...).

`camkit.metrics` holds the metrics that tell a faithful map from a pretty one.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
        LRP,
        METHODS,
        SESS,
        SSCAM,
        AblationCAM,
        AttentionRollout,
        AttnLRP,
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

_HOME = {
    "camkit.api": ("explain",),
    "camkit.augment": ("Augmented",),
    "camkit.detections": (
        "Box",
        "TopDetections",
    ),
    "camkit.errors": ("CamkitWarning",),
    "camkit.explanation": ("Explanation",),
    "camkit.image_text": ("PromptScores",),
    "camkit.overlay": (
        "grid",
        "overlay",
    ),
    "camkit.regions": ("Region",),
    "camkit.smoothing": ("Noise",),
    "camkit.targets": (
        "Contrast",
        "TopK",
    ),
}
"""Where each public name lives, but for the methods (`METHODS_HOME`, whose own list of names
is the source). They are imported when first used, not with the package:
they import torch (seconds), and `camkit --help`, a mistyped command and `camkit.errors` need
none of it. The `TYPE_CHECKING` imports above say the same for type checkers (a test keeps the
two and `__all__` equal)."""


METHODS_HOME = "camkit.methods"
_SUBPACKAGES = ("metrics", "models")


def __getattr__(name: str) -> object:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in __all__:
        raise AttributeError(f"module 'camkit' has no attribute {name!r}")
    home = next((module for module, names in _HOME.items() if name in names), METHODS_HOME)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once: later uses are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The package, whose public function `overlay` shares its name with the module
    `camkit.overlay`: importing that module binds it here, which would hide the function."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and name in __all__:
            return  # camkit.overlay stays the function (loaded by __getattr__), as it always was
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "CAM",
    "FEM",
    "GAE",
    "ISCAM",
    "KPCACAM",
    "LRP",
    "METHODS",
    "SESS",
    "SSCAM",
    "AblationCAM",
    "AttentionRollout",
    "AttnLRP",
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
