"""Rules drawn on the input itself: guided backpropagation, Guided Grad-CAM and FullGrad.

Their "layer" is the model's input (`INPUT`): the pipeline records the whole forward pass and
differentiates down to the input rows, one forward and one backward pass in all.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from typing_extensions import override

from camkit.capture import hook_here, removing, run_model
from camkit.explanation import Explanation
from camkit.inputs import Inputs
from camkit.layers import LayerSpec
from camkit.maps import normalise, upsample
from camkit.methods.base import INPUT, Evidence, Explainer, MethodOptions, register
from camkit.methods.gradient import GradCAM
from camkit.targets import Score, Targets

if TYPE_CHECKING:
    from typing_extensions import Unpack


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward passes only the positive part of the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, relu_output: Tensor) -> Tensor:  # noqa: ANN401 - autograd's context
        return relu_output.view_as(relu_output)

    @staticmethod
    def backward(ctx: Any, gradient: Tensor) -> Tensor:  # noqa: ANN401 - autograd's context
        return gradient.clamp_min(0)


_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_}


class _GuidedReLU(TorchFunctionMode):
    """Every ReLU of the forward pass, module or functional, differentiates the guided way:
    the gradient passes where the input was positive *and* the gradient is positive. In-place
    ReLUs run out of place (their result is what the network uses)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def __torch_function__(
        self,
        func: Any,  # noqa: ANN401 - any torch function
        types: Any,  # noqa: ANN401
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # noqa: ANN401
        if func in _RELUS:
            self.seen += 1
            return _PositiveGradient.apply(torch.relu(args[0]))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def guided_relus() -> Iterator[_GuidedReLU]:
    """Within the block, ReLUs backpropagate only positive gradients (Springenberg et al.).

    Nothing is changed on the model: the rule lives in a torch function mode that ends with the
    block, also when it raises, so it can never outlive the call.

    Examples:
        >>> import torch
        >>> x = torch.tensor([1.0, -1.0, 2.0], requires_grad=True)
        >>> with guided_relus():
        ...     y = torch.relu(x)
        >>> (y * torch.tensor([-1.0, 1.0, 1.0])).sum().backward()
        >>> x.grad.tolist()
        [0.0, 0.0, 1.0]
    """
    with _GuidedReLU() as mode:
        yield mode


@register("guided-backprop")
class GuidedBackprop(Explainer):
    """Guided backpropagation (Springenberg et al. 2015): dS/dx with every ReLU passing only
    positive gradients; the map is the largest magnitude over the input's channels.

    One forward and one backward pass down to the input. Defined for ReLU networks: a model
    whose forward pass calls no ReLU (GELU, SiLU) is refused. ReLU modules, in-place ReLUs and
    functional ``F.relu`` / ``torch.relu`` are all guided, for this call only. `layer` is
    not used (a layer given is ignored, with a warning): the map is drawn on the input.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.GuidedBackprop(net)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    layer_means = "input"

    @override
    def _recording(self, from_input: bool = False) -> contextlib.AbstractContextManager[object]:
        stack = contextlib.ExitStack()
        stack.enter_context(super()._recording(from_input))
        stack.enter_context(_guided_call())
        return stack

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        assert evidence.gradients is not None
        return evidence.gradients.abs().amax(dim=2)  # (rows, K, C, *S) -> (rows, K, *S)


@contextlib.contextmanager
def _guided_call() -> Iterator[None]:
    """Guided ReLUs for one call, refusing a model in which none ran."""
    with guided_relus() as mode:
        yield
    if mode.seen == 0:
        raise ValueError(
            "guided backpropagation is defined for ReLU networks, and no ReLU ran in this "
            "model's forward pass (GELU, SiLU?): use gradcam, or fullgrad for a map at the "
            "input's resolution"
        )


@register("guided-gradcam")
class GuidedGradCAM(Explainer):
    """Guided Grad-CAM (Selvaraju et al. 2017, §3): guided backpropagation times the upsampled
    Grad-CAM map, for maps at the input's resolution that are still class-discriminative.

    Two passes: Grad-CAM's at `layer` and guided backpropagation's to the input. The Grad-CAM
    factor is the ReLU'd map upsampled (bilinear, as in the paper) and scaled by its maximum,
    not min-max normalised, so a region Grad-CAM scores 0 stays 0.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.GuidedGradCAM(net)(torch.rand(1, 3, 16, 16)).maps.shape
        torch.Size([1, 1, 16, 16])
    """

    def __init__(
        self, model: nn.Module, layer: LayerSpec = None, **options: Unpack[MethodOptions]
    ) -> None:
        super().__init__(model, layer, **options)
        self.gradcam = GradCAM(model, layer, **options)
        self.guided = GuidedBackprop(model, **options)

    @override
    def _explain(self, inputs: Inputs, targets: Targets, score: Score) -> Explanation:
        cam = self.gradcam(inputs.given, targets, score=score)
        guided = self.guided(inputs.given, targets, score=score)
        size = inputs.spatial.shape[2:]
        heat = torch.stack([_peak_scaled(upsample(r, size)) for r in cam.raw]).mean(dim=0)
        product = guided.raw[0] * heat
        return dataclasses.replace(
            cam, maps=normalise(product).float(), raw=(product,), method=self.name
        )


def _peak_scaled(maps: Tensor) -> Tensor:
    """Each (B, K) map divided by its maximum (an all-zero map stays 0)."""
    peak = maps.flatten(2).amax(dim=2).reshape(*maps.shape[:2], *[1] * (maps.dim() - 2))
    return maps / torch.where(peak > 0, peak, 1.0)


def _channel_scaled_sum(t: Tensor, kept: Tensor | None = None) -> Tensor:
    """Min-max scale each (rows, K, C) map of (rows, K, C, *S) and sum over C; a constant map,
    or a channel not `kept` (C,), counts 0. As ``sum_c t_c / span_c - sum_c low_c / span_c``:
    one pass for the extremes, one product over the channels, and no scaled copy of `t`
    (FullGrad's cost beyond its passes)."""
    flat = t.flatten(3)  # (rows, K, C, P)
    low, high = flat.aminmax(dim=3)
    span = high - low
    inverse = torch.where(span > 0, 1.0 / torch.where(span > 0, span, 1.0), 0.0)
    if kept is not None:
        inverse = inverse * kept
    summed = (inverse.unsqueeze(2) @ flat).squeeze(2) - (low * inverse).sum(2, keepdim=True)
    return summed.reshape(*t.shape[:2], *t.shape[3:])


_CONVOLUTIONS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def bias_of(module: nn.Module) -> Tensor | None:
    """The bias a layer adds to each output channel: a convolution's bias, or what a batch
    norm with running statistics adds, ``beta - mean * gamma / sqrt(var + eps)``.

    Examples:
        >>> import torch
        >>> norm = torch.nn.BatchNorm2d(2).eval()
        >>> bias_of(norm).tolist()
        [0.0, 0.0]
    """
    if isinstance(module, nn.modules.conv._ConvNd):
        return None if module.bias is None else module.bias.detach()
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
        assert module.running_var is not None
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach()
        shift = module.running_mean * scale
        return -shift if module.bias is None else module.bias.detach() - shift
    return None


@register("fullgrad")
class FullGrad(Explainer):
    """FullGrad (Srinivas & Fleuret 2019): ``|x * dS/dx|`` plus, for every layer that adds a
    bias, ``|b * dS/dz|`` at its output z; each channel scaled to [0, 1], summed over channels,
    upsampled and summed over layers.

    The bias layers are the convolutions and batch norms (with running statistics) of the
    input's dimensionality that run once per forward pass (found with one probe pass of the
    first input, per input rank); `layer` is not used (a layer given is ignored, with a
    warning; the explanation's `layers` names them).
    One forward and one backward pass. A model without such biases (a vision transformer) is
    refused. As in pytorch-grad-cam and the paper's code, each channel is scaled before the
    sums.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.FullGrad(net)(torch.rand(2, 3, 16, 16)).layers[:2]
        ('input', '0')
    """

    all_layers_must_run = False
    layer_means = "own"
    draws_on = "the input and every layer that adds a bias"

    def __init__(
        self, model: nn.Module, layer: LayerSpec = None, **options: Unpack[MethodOptions]
    ) -> None:
        super().__init__(model, layer, **options)
        self._biases: dict[str, Tensor] = {}

    @override
    def _layers_for(self, inputs: Inputs) -> list[tuple[str, nn.Module]]:
        return self._once_per_rank(inputs, lambda: self._bias_layers(inputs))

    def _bias_layers(self, inputs: Inputs) -> list[tuple[str, nn.Module]]:
        """The input and every layer that adds a bias and runs once on `inputs`."""
        rank = inputs.spatial.dim() - 2
        kinds = (_CONVOLUTIONS.get(rank, ()), _NORMS.get(rank, ()))
        layers = []
        for name, module in self.model.named_modules():
            bias = bias_of(module) if isinstance(module, kinds) else None
            if bias is not None:
                self._biases[name] = bias
                layers.append((name, module))
        layers = _run_once(self.model, inputs, layers)
        if not layers:
            raise ValueError(
                f"FullGrad needs layers that add a bias per channel: {rank}-D convolutions with a "
                "bias, or batch norms with running statistics; this model has none it can reach "
                "(a vision transformer?): use gradcam or another method"
            )
        return [(INPUT, self.model), *layers]

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        assert evidence.gradients is not None
        if evidence.layer == INPUT:
            x = evidence.activations.unsqueeze(1)  # (rows, 1, C, *S)
            return _channel_scaled_sum((evidence.gradients * x).abs())
        # |b_c * g| scaled per channel is |g| scaled, or 0 where b_c = 0 (a constant map)
        kept = self._biases[evidence.layer].to(evidence.gradients) != 0
        return _channel_scaled_sum(evidence.gradients.abs(), kept)

    @override
    def _combine(self, raw: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        # Interpolation is linear: the maps of one size are summed first, upsampled once.
        sums: dict[tuple[int, ...], Tensor] = {}
        for r in raw:
            shape = tuple(r.shape[2:])
            sums[shape] = r.clone() if shape not in sums else sums[shape].add_(r)
        total = torch.zeros_like(upsample(raw[0], size))
        for part in sums.values():
            total += upsample(part, size)
        return normalise(total)


def _run_once(
    model: nn.Module, inputs: Inputs, layers: list[tuple[str, nn.Module]]
) -> list[tuple[str, nn.Module]]:
    """The layers that run exactly once in a forward pass of the first input (a shared head,
    run once per pyramid level, has no single output to differentiate)."""
    runs = dict.fromkeys((name for name, _ in layers), 0)

    def counter(name: str) -> Callable[..., None]:
        def count(*_: object) -> None:
            runs[name] += 1

        return count

    with removing([hook_here(m, counter(n)) for n, m in layers]), torch.no_grad():
        run_model(model, inputs.take(torch.arange(1)), inputs.spatial.shape)
    return [(name, module) for name, module in layers if runs[name] == 1]
