"""The methods, each a small rule on the shared pipeline in `base`."""

from camkit.methods.activation import FEM, DeepFeatureFactorization
from camkit.methods.base import (
    METHODS,
    Evidence,
    Explainer,
    arrange,
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
from camkit.methods.meta import SESS, FinerCAM, RefineCAM
from camkit.methods.perturbation import ISCAM, SSCAM, AblationCAM, ScoreCAM
from camkit.methods.relevance import LRP, AttnLRP
from camkit.methods.transformer import GAE, AttentionRollout, LeGrad

# The order users see (the command's "all", the app, the README): the family by kind.
arrange(
    (
        "cam",
        "gradcam",
        "gradcam++",
        "smoothgradcam++",
        "hirescam",
        "gradcam-elementwise",
        "xgradcam",
        "layercam",
        "eigencam",
        "eigengradcam",
        "scorecam",
        "ablationcam",
        "gradcam-counterfactual",
        "shapleycam",
        "finercam",
        "refinecam",
        "sess",
        "sscam",
        "iscam",
        "kpcacam",
        "segeigencam",
        "fem",
        "dff",
        "guided-backprop",
        "guided-gradcam",
        "fullgrad",
        "lrp",
        "legrad",
        "gae",
        "rollout",
        "attnlrp",
        "randomcam",
        "sobel",
    )
)

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
    "CounterfactualGradCAM",
    "DeepFeatureFactorization",
    "EigenCAM",
    "EigenGradCAM",
    "Evidence",
    "Explainer",
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
    "RandomCAM",
    "RefineCAM",
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
