"""`explain`: one call from a model and a batch to an `Explanation`."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor, nn

from camkit.explanation import Explanation
from camkit.layers import LayerSpec
from camkit.methods import method_class
from camkit.methods.base import MethodOptions
from camkit.methods.building import build
from camkit.methods.cam import Head
from camkit.methods.eigen import Kernel
from camkit.targets import Score, Targets

if TYPE_CHECKING:
    from typing_extensions import Unpack


class ExplainOptions(MethodOptions, total=False):
    """What `explain` passes on: the construction options of every method, the call's
    ``score``, and the options of particular methods (CAM's ``head``; SmoothGrad-CAM++'s
    ``copies``, ``sigma``, ``seed``; Score-CAM's and Ablation-CAM's ``rows_per_pass``; Score-CAM's
    ``channels``; and the rest, listed per method by `camkit.methods.building.options_of`)."""

    score: Score
    head: Head | None
    copies: int
    sigma: float
    seed: int | None
    rows_per_pass: int
    channels: int | None
    base: str
    compare: int
    alpha: float
    weighting: Literal["mean", "softmax"]
    rest: bool
    kernel: Kernel
    gamma: float | None
    k: float
    weights: Literal["mean", "share"]
    concepts: int
    steps: int
    samples: int
    scales: Sequence[int] | None
    num_scales: int
    window: int | None
    step: int | None
    pre_filter: float
    theta: float
    pool: Literal["mean", "max"]
    blur: bool
    head_fusion: Literal["mean", "max", "min"]
    discard_ratio: float
    epsilon: float


def explain(
    model: nn.Module,
    x: Tensor,
    method: str = "gradcam",
    layer: LayerSpec = None,
    targets: Targets = None,
    **options: Unpack[ExplainOptions],
) -> Explanation:
    """Explain `targets` of the batch `x` with the method registered as `method`.

    `targets`: None (each input's predicted class), an int (that class for every input), B ints
    (one per input), a (B, K) LongTensor (K classes per input), `camkit.TopK(k)`, or a callable
    ``f(outputs) -> (B, K)`` scores (segmentation regions, box scores, ...). `options` go to the
    method's constructor (``output=``, ``reshape=``, ``fuse=``, ``head=``) or to the call
    (``score="softmax"``), wherever the name belongs.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> x = torch.rand(4, 3, 32, 32)
        >>> result = camkit.explain(net, x, "gradcam++", targets=camkit.TopK(2))
        >>> tuple(result.maps.shape), result.method
        ((4, 2, 32, 32), 'gradcam++')
    """
    cls = method_class(method)
    call_names = set(inspect.signature(cls.__call__).parameters) - {"self", "x", "targets"}
    call_options: dict[str, Any] = {k: v for k, v in options.items() if k in call_names}
    build_options: dict[str, Any] = {k: v for k, v in options.items() if k not in call_names}
    return build(method, model, layer, {method: build_options})(x, targets, **call_options)
