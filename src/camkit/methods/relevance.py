"""Layer-wise relevance propagation: LRP for convolutional networks, AttnLRP for transformers.

Both run as one forward and one backward pass: the forward pass computes the model's own
values, and each operation's gradient is replaced by its LRP rule written as a gradient, so
that the relevance of a tensor is the tensor times the gradient that reaches it (the
"gradient times input" form of LRP, Achtibat et al., ICML 2024, §3.3). The rules live in a
torch function mode for the call only (nothing on the model changes):

- an element-wise non-linearity f (GELU, SiLU, ...) passes relevance unchanged (identity
  rule): its gradient is f(x) / x;
- a layer norm is linear with its standard deviation held constant (Ali et al., ICML 2022);
- a matrix product of two activations (the attention's Q K^T and A V, as matmul, bmm or
  einsum) gives each factor half (uniform rule): each gradient is halved; an element-wise
  product (a gated unit) keeps its gradient, as a custom norm's ``x * rsqrt(var)`` must;
- the softmax keeps its gradient: times its input, that is AttnLRP's softmax rule,
  R_in = x (R_out - s sum R_out) (Proposition 3.1);
- (`lrp` only) a convolution takes the gamma rule, a linear layer the epsilon rule, each batch
  norm folded into the convolution before it.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from typing_extensions import override

from camkit.attention import AttentionRecord
from camkit.capture import run_model
from camkit.errors import first_line
from camkit.explanation import Explanation
from camkit.inputs import Inputs, ModelInput
from camkit.layers import LayerSpec, unwrap
from camkit.maps import normalise, upsample, warn_constant
from camkit.methods.base import Explainer, MethodOptions, detached, differentiate, register
from camkit.methods.transformer import AttentionExplainer
from camkit.targets import Score, Targets, score_targets

if TYPE_CHECKING:
    from typing_extensions import Unpack

# Element-wise activations with f(0) = 0, whose gradient is not already f(x) / x (ReLU's is).
_ACTIVATIONS = {
    F.gelu,
    F.silu,
    F.mish,
    F.elu,
    F.celu,
    F.selu,
    F.relu6,
    F.hardtanh,
    F.hardswish,
    F.leaky_relu,
    torch.tanh,
    Tensor.tanh,
    F.tanh,
}
_PRODUCTS = {torch.matmul, Tensor.matmul, Tensor.__matmul__, torch.bmm, Tensor.bmm}
_ATTENTION = {F.scaled_dot_product_attention, F.multi_head_attention_forward}
_SOFTMAXES = {F.softmax, torch.softmax, Tensor.softmax}
_CONVOLUTIONS = {F.conv1d, F.conv2d, F.conv3d}
# Calls that look at a tensor without computing from it (a batch norm checks its input's dim()).
_INSPECTIONS = {"dim", "size", "numel", "__len__", "__get__", "stride", "is_contiguous"}


def with_gradient_of(value: Tensor, proxy: Tensor) -> Tensor:
    """`value` as computed, differentiated as `proxy`: the way every rule here is written.

    Examples:
        >>> x = torch.tensor([2.0], requires_grad=True)
        >>> y = with_gradient_of(x * x, 3 * x)  # the value of x^2, the gradient of 3x
        >>> y.backward(); y.item(), x.grad.item()
        (4.0, 3.0)
    """
    return value.detach() + (proxy - proxy.detach())


def stabilised(z: Tensor, epsilon: float) -> Tensor:
    """z + epsilon * sign(z), a zero counting as positive (zennit's stabiliser)."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0)


def _activation(func: Callable[..., Tensor], args: Sequence[Any], kwargs: dict[str, Any]) -> Tensor:
    """Identity rule: f(x), differentiated as x * (f(x) / x), so relevance passes unchanged.
    An in-place activation runs out of place (its result is what the model uses)."""
    x = args[0]
    with contextlib.suppress(TypeError, ValueError):  # a builtin (torch.tanh) has no signature
        signature = inspect.signature(func)
        if "inplace" in signature.parameters:
            bound = signature.bind(*args, **kwargs)
            bound.arguments["inplace"] = False
            args, kwargs = bound.args, bound.kwargs
    out = func(*args, **kwargs)
    ratio = torch.where(x != 0, out / torch.where(x != 0, x, 1.0), 0.0).detach()
    return with_gradient_of(out, x * ratio)


def _layer_norm(args: Sequence[Any], kwargs: dict[str, Any]) -> Tensor:
    """F.layer_norm with its standard deviation held constant in the backward pass."""
    names = ("input", "normalized_shape", "weight", "bias", "eps")
    bound = {**dict(zip(names, args, strict=False)), **kwargs}
    x, shape = bound["input"], tuple(bound["normalized_shape"])
    dims = tuple(range(-len(shape), 0))
    centred = x - x.mean(dim=dims, keepdim=True)
    std = (centred.square().mean(dim=dims, keepdim=True) + bound.get("eps", 1e-5)).sqrt()
    proxy = centred / std.detach()
    if bound.get("weight") is not None:
        proxy = proxy * bound["weight"]
    return with_gradient_of(F.layer_norm(*args, **kwargs), proxy)


def _rms_norm(args: Sequence[Any], kwargs: dict[str, Any]) -> Tensor:
    """F.rms_norm with its root mean square held constant in the backward pass."""
    names = ("input", "normalized_shape", "weight", "eps")
    bound = {**dict(zip(names, args, strict=False)), **kwargs}
    x, dims = bound["input"], tuple(range(-len(tuple(bound["normalized_shape"])), 0))
    eps = bound.get("eps") or torch.finfo(x.dtype).eps
    proxy = x / (x.square().mean(dim=dims, keepdim=True) + eps).sqrt().detach()
    if bound.get("weight") is not None:
        proxy = proxy * bound["weight"]
    return with_gradient_of(F.rms_norm(*args, **kwargs), proxy)


def _is_activation(t: object) -> bool:
    """A tensor computed from the input (not a weight): batched, recording gradients."""
    if not isinstance(t, Tensor) or isinstance(t, nn.Parameter):
        return False
    return t.dim() >= 3 and t.requires_grad


def _is_attention(t: object) -> bool:
    """Attention probabilities: (..., N, N) scores over tokens, not a classifier's (B, C)."""
    return isinstance(t, Tensor) and t.dim() >= 3 and t.shape[-1] == t.shape[-2]


def halved(t: Tensor) -> Tensor:
    """`t`, its gradient halved (the uniform rule for one factor of a product)."""
    return with_gradient_of(t, t / 2)


class _Rules(TorchFunctionMode):
    """AttnLRP's rules for the operations of a forward pass (see the module's docstring);
    `lrp` adds the gamma and epsilon rules in `_LayerRules`. Counts what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = 0  # softmax or fused attention calls seen

    def __torch_function__(
        self,
        func: Any,  # noqa: ANN401 - any torch function
        types: Any,  # noqa: ANN401
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # noqa: ANN401
        kwargs = kwargs or {}
        args, kwargs = self._resolved(func, args, kwargs)
        if func in _ATTENTION or (func in _SOFTMAXES and args and _is_attention(args[0])):
            self.attention += 1
        self._see(func, args)
        if not torch.is_grad_enabled():
            return func(*args, **kwargs)
        return self._by_rule(func, args, kwargs)

    def _by_rule(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:  # noqa: ANN401
        """The call, differentiated by its rule (gradients are being recorded)."""
        if func in _ACTIVATIONS and args and isinstance(args[0], Tensor) and args[0].requires_grad:
            return _activation(func, args, kwargs)
        if func is F.layer_norm:
            return _layer_norm(args, kwargs)
        if func is F.rms_norm:
            return _rms_norm(args, kwargs)
        if func in _PRODUCTS and len(args) == 2 and all(_is_activation(a) for a in args):
            return func(halved(args[0]), halved(args[1]), **kwargs)
        if func is torch.einsum and len(args) == 3 and all(_is_activation(a) for a in args[1:]):
            return func(args[0], halved(args[1]), halved(args[2]), **kwargs)
        if func is F.scaled_dot_product_attention:
            # Q K^T, then A V, each a product: a quarter for the queries and keys, half for
            # the values (the softmax between keeps its gradient).
            q, k, v, *rest = args
            return func(_scaled(q, 4), _scaled(k, 4), halved(v), *rest, **kwargs)
        return self._more(func, args, kwargs)

    def _resolved(
        self,
        func: Any,  # noqa: ANN401
        args: Sequence[Any],
        kwargs: dict[str, Any],
    ) -> tuple[Sequence[Any], dict[str, Any]]:
        """The call's arguments with any tensor whose rule was deferred made ruled (`lrp`)."""
        return args, kwargs

    def _see(self, func: Any, args: Sequence[Any]) -> None:  # noqa: ANN401
        """Every call, with or without gradients (what `lrp` counts)."""

    def _more(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:  # noqa: ANN401
        return func(*args, **kwargs)


def _scaled(t: Tensor, factor: float) -> Tensor:
    return with_gradient_of(t, t / factor)


class _LayerRules(_Rules):
    """`_Rules` plus LRP's layer rules: gamma for convolutions (batch norm folded in), epsilon
    for linear layers. Keeps the input of the first such layer: the relevance is read there."""

    def __init__(self, gamma: float, epsilon: float) -> None:
        super().__init__()
        self.gamma, self.epsilon = gamma, epsilon
        self.first: Tensor | None = None
        self.layers = 0
        # A convolution's output by id, its rule not applied yet: a batch norm that follows it
        # takes the rule of the two folded together; any other use applies the convolution's.
        self._pending: dict[int, tuple[Tensor, _Convolution]] = {}
        self._ruled: dict[int, Tensor] = {}

    @override
    def _resolved(
        self,
        func: Any,
        args: Sequence[Any],
        kwargs: dict[str, Any],
    ) -> tuple[Sequence[Any], dict[str, Any]]:
        if not self._pending:
            return args, kwargs
        if func is F.batch_norm and args and id(args[0]) in self._pending:
            return args, kwargs  # folded in `_more`
        if getattr(func, "__name__", "") in _INSPECTIONS:  # reads the tensor, computes nothing
            return args, kwargs
        return [self._ruled_if_pending(a) for a in args], {
            k: self._ruled_if_pending(v) for k, v in kwargs.items()
        }

    def _ruled_if_pending(self, value: Any) -> Any:  # noqa: ANN401
        if isinstance(value, (list, tuple)):
            return type(value)(self._ruled_if_pending(v) for v in value)
        if not isinstance(value, Tensor) or id(value) not in self._pending:
            return value
        key = id(value)
        if key not in self._ruled:
            z, layer = self._pending[key]
            self._ruled[key] = layer.gamma_rule(z, self.gamma)
        return self._ruled[key]

    @override
    def _see(self, func: Any, args: Sequence[Any]) -> None:
        if func in _CONVOLUTIONS or func is F.linear:
            self.layers += 1
            if self.first is None:
                self.first = args[0]

    @override
    def _more(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        if func in _CONVOLUTIONS or func is F.linear:
            layer = _Convolution.of(func, args, kwargs)
            z = func(*args, **kwargs)
            if func is F.linear:
                share = (z / stabilised(z, self.epsilon)).detach()
                return with_gradient_of(z, share * F.linear(layer.x, layer.weight))
            self._pending[id(z)] = (z, layer)  # the rule waits for what uses z
            return z
        if func is F.batch_norm and id(args[0]) in self._pending:
            _, layer = self._pending[id(args[0])]
            return layer.folded(args, kwargs).gamma_rule(func(*args, **kwargs), self.gamma)
        return func(*args, **kwargs)


class _Convolution:
    """One call of a convolution (or linear layer): its input, weight, bias and options."""

    def __init__(
        self,
        func: Callable[..., Tensor],
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        options: tuple[Sequence[Any], dict[str, Any]],
    ) -> None:
        self.func, self.x, self.weight, self.bias, self.options = func, x, weight, bias, options
        self.batch_statistics = False  # folded with a batch norm in training mode

    @classmethod
    def of(cls, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> _Convolution:  # noqa: ANN401
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        options = {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
        return cls(func, args[0], args[1], bias, (list(args[3:]), options))

    def folded(self, args: Sequence[Any], kwargs: dict[str, Any]) -> _Convolution:
        """This convolution with the batch norm called with `args` folded in (its running
        statistics; in training mode, the batch's, held constant)."""
        names = ("input", "running_mean", "running_var", "weight", "bias", "training")
        bound = {**dict(zip(names, args, strict=False)), **kwargs}
        eps = kwargs.get("eps", args[7] if len(args) > 7 else 1e-5)
        mean, var = bound["running_mean"], bound["running_var"]
        if bound.get("training") or mean is None:  # normalised by the batch's statistics
            z = bound["input"].detach()
            dims = [0, *range(2, z.dim())]
            mean, var = z.mean(dim=dims), z.var(dim=dims, unbiased=False)
        scale = torch.rsqrt(var + eps)
        if bound.get("weight") is not None:
            scale = scale * bound["weight"]
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias * scale
        if bound.get("bias") is not None:
            shift = shift + bound["bias"]
        weight = self.weight * scale.view(-1, *([1] * (self.weight.dim() - 1)))
        folded = _Convolution(self.func, self.x, weight, shift, self.options)
        folded.batch_statistics = bool(bound.get("training")) or bound["running_mean"] is None
        return folded

    def _apply(self, x: Tensor, weight: Tensor) -> Tensor:
        rest, options = self.options
        return self.func(x, weight, None, *rest, **options)

    def gamma_rule(self, z: Tensor, gamma: float) -> Tensor:
        """`z` (this layer's output) differentiated by the generalised gamma rule (Andéol et
        al. 2021, as zennit's `Gamma`): a positive output shares its relevance in proportion
        to x+ (w + gamma w+) + x- (w + gamma w-), a negative one to x+ (w + gamma w-) +
        x- (w + gamma w+).

        Both are z's own linear part plus gamma times S = conv(x+, w+) + conv(x-, w-), or
        minus it, so one extra convolution (two for signed inputs) gives both, where zennit
        runs four."""
        x, w = self.x, self.weight
        # z differentiates as conv(x, w) but after a batch norm normalised by its batch's
        # statistics (training mode), whose gradient also runs through those statistics.
        linear = self._apply(x, w) if self.batch_statistics else z
        if bool((x < 0).any()):
            s = self._apply(x * (x > 0), w.clamp_min(0)) + self._apply(x * (x < 0), w.clamp_max(0))
        else:  # after a ReLU: x+ is x, one convolution in all
            s = self._apply(x, w.clamp_min(0))
        with torch.no_grad():
            extra = (
                s
                if self.bias is None
                else s + self.bias.clamp_min(0).view(-1, *[1] * (z.dim() - 2))
            )
            # A positive output shares by up = x+ (w + g w+) + x- (w + g w-) + b + g b+ = z + g
            # extra, a negative one by down, the other pairing, = z + g (z - extra).
            share = z / stabilised(z + gamma * torch.where(z > 0, extra, z - extra), 1e-6)
            negative = z < 0
            to_linear = share * torch.where(negative, 1 + gamma, 1.0)
            to_s = share * torch.where(negative, -gamma, gamma)
        out: Tensor = _Redistributed.apply(z, linear, s, to_linear, to_s)
        return out


class _Redistributed(torch.autograd.Function):
    """z as it is, differentiated as ``to_linear * linear + to_s * s`` (the proxy is never
    computed forward)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: Tensor, linear: Tensor, s: Tensor, to_linear: Tensor, to_s: Tensor) -> Tensor:
        return z.detach().clone()  # not a view: the model may apply an in-place ReLU to it

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: Tensor) -> None:  # noqa: ANN401
        ctx.save_for_backward(inputs[3], inputs[4])

    @staticmethod
    def backward(ctx: Any, gradient: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN401
        to_linear, to_s = ctx.saved_tensors
        return None, gradient * to_linear, gradient * to_s, None, None


@contextlib.contextmanager
def attnlrp_rules() -> Iterator[_Rules]:
    """Within the block, the forward pass differentiates by AttnLRP's rules: the relevance of a
    tensor t is ``t * dS/dt`` (see the module's docstring).

    Examples:
        >>> x = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> with attnlrp_rules():
        ...     y = F.gelu(x)
        >>> y.sum().backward()
        >>> (x * x.grad).tolist() == y.tolist()  # the identity rule: relevance passes unchanged
        True
    """
    with _Rules() as mode:
        yield mode


@contextlib.contextmanager
def lrp_rules(gamma: float = 0.25, epsilon: float = 1e-6) -> Iterator[_LayerRules]:
    """Within the block, convolutions differentiate by the gamma rule (a batch norm after one
    folded into it), linear layers by the epsilon rule, and the rest as in `attnlrp_rules`;
    the mode's ``first`` is the input of the first convolution or linear layer.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False))
        >>> net[0].weight.data = torch.tensor([[1.0, 3.0]])
        >>> x = torch.tensor([[2.0, 1.0]], requires_grad=True)
        >>> with lrp_rules() as rules:
        ...     score = net(x)[0, 0]
        >>> score.backward()
        >>> (x * x.grad).round(decimals=4).tolist()  # 2 * 1 and 1 * 3: all of the score 5
        [[2.0, 3.0]]
    """
    with _LayerRules(gamma, epsilon) as mode:
        yield mode


def _no_smoothing(method: Explainer) -> None:
    if method.smooth is not None or method.reshape is not None:
        raise ValueError(
            f"{method.name} propagates relevance through the whole model, not from a layer's "
            "feature map: it takes neither smooth= nor reshape="
        )


@register("attnlrp")
class AttnLRP(AttentionExplainer):
    """AttnLRP (Achtibat et al., ICML 2024): layer-wise relevance propagation through a
    transformer, with rules for the softmax and the attention products that keep relevance
    (nearly) conserved; read at the tokens that enter the first block, laid on the patch grid.

    One forward and one backward pass (`attnlrp_rules`). The map is the positive relevance
    (evidence for the target); `raw` keeps the signed relevance per patch token. The blocks are
    found as for the other attention methods; a `layer` given names blocks, and the relevance
    is read at the first of them.

    Examples:
        >>> import torch, camkit
        >>> vit = camkit.models.ShapesViT().eval()
        >>> AttnLRP(vit)(torch.rand(2, 3, 32, 32), targets=camkit.TopK(2)).maps.shape
        torch.Size([2, 2, 32, 32])
    """

    @override
    def _recording(self, from_input: bool = False) -> contextlib.AbstractContextManager[object]:
        stack = contextlib.ExitStack()
        stack.enter_context(super()._recording(from_input))
        stack.enter_context(attnlrp_rules())
        return stack

    def relevance(self, record: AttentionRecord, scores: Tensor, leading: int) -> Tensor:
        """Each token's relevance: its input to the first block times dS/d(token), summed over
        the token's features, (B, K, N)."""
        tokens = record.inputs[0]
        (gradients,) = differentiate(scores, [tokens])
        return (gradients * tokens.unsqueeze(1)).sum(dim=-1)


@register("lrp")
class LRP(Explainer):
    """Layer-wise relevance propagation for convolutional networks (Bach et al. 2015; the rules
    of Montavon et al. 2019): the gamma rule on every convolution, each batch norm folded into
    the convolution before it, the epsilon rule on linear layers, ReLU and pooling as they
    differentiate; the relevance is read at the input of the first convolution (the pixels
    after the model's own normalisation; the input itself where the first layer is a linear
    layer on flattened pixels), summed over channels. The map is the positive
    relevance; one forward and one backward pass. The rules are zennit's composite of the same
    rules (``EpsilonGammaBox`` without its box rule on the first layer: camkit does not know
    the bounds of an arbitrary model's input).

    Args:
        gamma: how much the positive weights are favoured in convolutions (0: LRP-0).
        epsilon: the epsilon rule's stabiliser in linear layers.

    A transformer is refused (its attention needs AttnLRP's rules: `attnlrp`). `layer` is not
    used (a layer given is ignored, with a warning).

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> LRP(net, gamma=0.1)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    layer_means = "own"
    draws_on = "the input of its first convolution"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        gamma: float = 0.25,
        epsilon: float = 1e-6,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        for name, value in (("gamma", gamma), ("epsilon", epsilon)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        _no_smoothing(self)
        self.gamma, self.epsilon = gamma, epsilon

    @classmethod
    def fits(cls, model: nn.Module, x: ModelInput) -> str | None:
        """A model fits when its forward pass runs convolutions or linear layers and no
        attention (one forward pass without gradients)."""
        try:
            with torch.no_grad(), lrp_rules() as rules:
                run_model(unwrap(model), Inputs.wrap(x))
        except (ValueError, RuntimeError, TypeError) as error:
            return f"{cls.name}: {first_line(error)}"
        return _refusal(rules)

    @override
    def _explain(self, inputs: Inputs, targets: Targets, score: Score) -> Explanation:
        x = inputs.spatial
        rows = inputs.map(lambda t: t, x.detach().requires_grad_())
        with self._recording(from_input=True), lrp_rules(self.gamma, self.epsilon) as rules:
            outputs = run_model(self.model, rows)
            refusal = _refusal(rules)
            if refusal is not None:
                raise ValueError(refusal)
            indices, scores, _ = score_targets(
                outputs,
                targets,
                score=score,
                output=self.output,
                batch_size=len(x),
                size=x.shape[2:],
            )
            first = _read_at(rules.first, rows.spatial)
            (gradients,) = differentiate(scores, [first])
        with torch.no_grad():
            raw = (gradients * first.unsqueeze(1)).sum(dim=2)  # (B, K, *S)
            maps = normalise(upsample(raw.clamp_min(0), x.shape[2:])).float()
        warn_constant(maps, self.name)
        return Explanation(
            maps=maps,
            raw=(raw.detach(),),
            targets=indices,
            scores=scores.detach().float(),
            outputs=detached(outputs),
            layers=("input",),
            method=self.name,
        )


def _read_at(first: Tensor | None, x: Tensor) -> Tensor:
    """Where the relevance is read: the first layer's input when it is laid out as the input
    is (the pixels after the model's own normalisation), else the input itself (a first
    linear layer on flattened pixels: flattening passes relevance unchanged)."""
    if first is not None and first.dim() == x.dim() and len(first) == len(x):
        return first
    return x


def _refusal(rules: _LayerRules) -> str | None:
    if rules.attention:
        return (
            "lrp's rules are for convolutional networks, and this model computes attention "
            "(a softmax): its relevance needs AttnLRP's rules for the softmax and the attention "
            "products: use attnlrp"
        )
    if rules.layers == 0:
        return "lrp: no convolution or linear layer ran in this model's forward pass"
    return None
