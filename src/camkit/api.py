"""`explain`: one call from a model and a batch to an `Explanation`."""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn

from camkit.explanation import Explanation
from camkit.layers import LayerSpec
from camkit.methods import method_class
from camkit.targets import Targets


def explain(
    model: nn.Module,
    x: Tensor,
    method: str = "gradcam",
    layer: LayerSpec = None,
    targets: Targets = None,
    **options: Any,
) -> Explanation:
    """Explain `targets` of the batch `x` with the method registered as `method`.

    `targets`: None (each input's predicted class), an int (that class for every input), B ints
    (one per input), a (B, K) LongTensor (K classes per input), `camkit.TopK(k)`, or a callable
    ``f(outputs) -> (B, K)`` scores (segmentation regions, box scores, ...). `options` go to the
    method's constructor (``output=``, ``reshape=``, ``fuse=``, ``head=``) or to the call
    (``score="softmax"``), wherever the name belongs.

    Example:
        >>> import torch, camkit
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                           torch.nn.Linear(8, 5)).eval()
        >>> x = torch.rand(4, 3, 32, 32)
        >>> result = camkit.explain(net, x, "gradcam++", targets=camkit.TopK(2))
        >>> tuple(result.maps.shape), result.method
        ((4, 2, 32, 32), 'gradcam++')
    """
    cls = method_class(method)
    call_names = set(inspect.signature(cls.__call__).parameters) - {"self", "x", "targets"}
    call_options = {k: v for k, v in options.items() if k in call_names}
    build_options = {k: v for k, v in options.items() if k not in call_names}
    return cls(model, layer, **build_options)(x, targets, **call_options)
