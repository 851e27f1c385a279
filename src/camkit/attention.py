"""Attention probabilities of a transformer, whichever attention implementation it runs.

Fused attention (``F.scaled_dot_product_attention``, flash kernels, ``nn.MultiheadAttention``'s
fast path) never materialises the probabilities A = softmax(QK^T / sqrt(d) + mask). Within
`recording_attention` a torch function mode computes them where they are needed:

- ``F.scaled_dot_product_attention`` runs as its textbook formula, A @ V, with A recorded;
- ``F.multi_head_attention_forward`` (torchvision's ViT, open_clip) likewise, from the
  module's projection weights;
- an explicit ``softmax`` over the last dimension (eager attention: timm with fused attention
  off, Hugging Face's "eager" implementation) is recorded as it is.

Every recorded A is the tensor the block's output is computed from, so gradients reach it.
Nothing on the model changes: no attribute, configuration or attention implementation is set,
and the mode and hooks end with the block, also when it raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from camkit.capture import hook_here, removing, run_model
from camkit.inputs import Inputs

_SOFTMAXES = {F.softmax, torch.softmax, Tensor.softmax}
_SDPA_ORDER = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
_MHA = inspect.signature(F.multi_head_attention_forward)


def probabilities(
    q: Tensor,
    k: Tensor,
    mask: Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """softmax(q k^T * scale + mask) over the keys, as `F.scaled_dot_product_attention`
    computes it (a boolean mask marks the keys that may be attended to).

    Examples:
        >>> q = k = torch.eye(2)[None]
        >>> probabilities(q, k, scale=math.log(3.0)).round(decimals=4).tolist()  # 3 : 1
        [[[0.75, 0.25], [0.25, 0.75]]]
    """
    logits = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if causal:
        above = torch.ones(logits.shape[-2:], dtype=torch.bool, device=q.device).triu(1)
        logits = logits.masked_fill(above, -math.inf)
    if mask is not None:
        logits = logits.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else logits + mask
    return logits.softmax(dim=-1)


def _no_dropout(p: float) -> None:
    if p > 0:
        raise ValueError(
            f"attention dropout (p={p}) is active, so the attention is random: call model.eval()"
        )


def _scaled_dot_product(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """(A, A @ V) for a call of `F.scaled_dot_product_attention`."""
    bound = {**dict(zip(_SDPA_ORDER, args, strict=False)), **kwargs}  # a builtin: no signature
    q, k, v = bound["query"], bound["key"], bound["value"]
    _no_dropout(float(bound.get("dropout_p", 0.0)))
    if bound.get("enable_gqa") and k.shape[-3] != q.shape[-3]:
        groups = q.shape[-3] // k.shape[-3]  # grouped-query attention: heads share keys
        k, v = k.repeat_interleave(groups, -3), v.repeat_interleave(groups, -3)
    a = probabilities(
        q, k, bound.get("attn_mask"), causal=bool(bound.get("is_causal")), scale=bound.get("scale")
    )
    return a, a @ v


def _multi_head(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Tensor, tuple[Any, Any]]:
    """(A, the call's result) for `F.multi_head_attention_forward`: self-attention with one
    projection for queries, keys and values, inputs (L, B, E) as `nn.MultiheadAttention` passes
    them."""
    b = _MHA.bind(*args, **kwargs).arguments
    optional = ("bias_k", "bias_v", "static_k", "static_v", "key_padding_mask")
    unusual = [n for n in optional if b.get(n) is not None]
    unusual += ["add_zero_attn"] if b.get("add_zero_attn") else []
    if unusual or b.get("use_separate_proj_weight"):
        raise ValueError(
            "camkit computes nn.MultiheadAttention's probabilities for self-attention with one "
            f"input projection, not with {', '.join(unusual) or 'separate projection weights'}"
        )
    _no_dropout(float(b["dropout_p"]) if b.get("training", True) else 0.0)
    query, heads = b["query"], int(b["num_heads"])
    length, batch, width = query.shape
    q, k, v = F.linear(query, b["in_proj_weight"], b["in_proj_bias"]).chunk(3, dim=-1)

    def split(t: Tensor) -> Tensor:  # (L, B, E) -> (B, heads, L, E / heads)
        return t.reshape(t.shape[0], batch, heads, -1).permute(1, 2, 0, 3)

    mask = b.get("attn_mask")
    if mask is not None and mask.dim() == 3:
        mask = mask.view(batch, heads, *mask.shape[1:])
    a = probabilities(split(q), split(k), mask, causal=bool(b.get("is_causal")) and mask is None)
    mixed = (a @ split(v)).permute(2, 0, 1, 3).reshape(length, batch, width)
    out = F.linear(mixed, b["out_proj_weight"], b["out_proj_bias"])
    weights = None
    if b.get("need_weights", True):
        weights = a.mean(dim=1) if b.get("average_attn_weights", True) else a
    return a, (out, weights)


class _Probabilities(TorchFunctionMode):
    """Computes and hands attention probabilities to `sink` while a block runs (`sink` set)."""

    def __init__(self) -> None:
        super().__init__()
        self.sink: Callable[[Tensor], None] | None = None

    def __torch_function__(
        self,
        func: Any,  # noqa: ANN401 - any torch function
        types: Any,  # noqa: ANN401
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # noqa: ANN401
        kwargs = kwargs or {}
        if self.sink is None:
            return func(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            a, out = _scaled_dot_product(args, kwargs)
            self.sink(a)
            return out
        if func is F.multi_head_attention_forward:
            a, result = _multi_head(args, kwargs)
            self.sink(a)
            return result
        out = func(*args, **kwargs)
        if func in _SOFTMAXES and _over_last(args, kwargs):
            self.sink(out)
        return out


def _over_last(args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    return isinstance(dim, int) and isinstance(args[0], Tensor) and dim in (-1, args[0].dim() - 1)


def first_tensor(value: object) -> Tensor | None:
    """A block's token output: the tensor itself, or the first element of a tuple/list."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    return value if isinstance(value, Tensor) else None


def _replace_first(value: object, tensor: Tensor) -> object:
    if isinstance(value, tuple):
        return (tensor, *value[1:])
    if isinstance(value, list):
        return [tensor, *value[1:]]
    return tensor


@dataclasses.dataclass
class AttentionRecord:
    """What `recording_attention` saw, per block in the order they ran.

    Attributes:
        blocks: the blocks' dotted names.
        attention: each block's probabilities, (B, heads, queries, keys).
        tokens: each block's token output (B, N, D) (the stacked outputs, with
            ``separate=True``, are returned to the model, not kept here).
        inputs: the token inputs made gradient leaves (``leaves="first"``: the first block's;
            ``"every"``: each block's), (B, N, D).
    """

    blocks: list[str]
    attention: list[Tensor] = dataclasses.field(default_factory=list)
    tokens: list[Tensor] = dataclasses.field(default_factory=list)
    inputs: list[Tensor] = dataclasses.field(default_factory=list)


def _with_leaf(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], Tensor]:
    """The block's call with its token input (the first tensor argument) made a leaf that
    records gradients, gradient recording on from here; and the leaf."""
    torch.set_grad_enabled(True)
    if args and isinstance(args[0], Tensor):
        leaf = args[0].detach().requires_grad_()
        return (leaf, *args[1:]), kwargs, leaf
    key = next((k for k, v in kwargs.items() if isinstance(v, Tensor)), None)
    if key is None:
        raise ValueError("a transformer block was called without a token tensor")
    leaf = kwargs[key].detach().requires_grad_()
    return args, {**kwargs, key: leaf}, leaf


def _block_hooks(
    record: AttentionRecord,
    mode: _Probabilities,
    modules: Sequence[nn.Module],
    batch: int,
    leaves: str,
) -> list[Any]:
    """Hooks that route each block's attention to the record; the input of the first block
    (``leaves="first"``), of every block (``"every"``) or of none (``"none"``) becomes a leaf."""
    seen: list[Tensor] = []

    def before(index: int) -> Callable[..., Any]:
        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:  # noqa: ANN401
            if len(record.attention) != index:
                raise ValueError(
                    f"block {record.blocks[index]!r} ran out of order or twice: {NEEDS_GLOBAL}"
                )
            seen.clear()
            mode.sink = seen.append
            if leaves == "every" or (leaves == "first" and index == 0):
                args, kwargs, leaf = _with_leaf(args, kwargs)
                record.inputs.append(leaf)
                return args, kwargs
            return None

        return hook

    def after(index: int) -> Callable[..., Any]:
        def hook(_m: nn.Module, _args: object, _kwargs: object, output: object) -> Any:  # noqa: ANN401
            mode.sink = None
            name, tokens = record.blocks[index], first_tensor(output)
            if len(seen) != 1 or tokens is None or tokens.dim() != 3 or len(tokens) != batch:
                raise ValueError(_not_a_block(name, len(seen), tokens, batch))
            a = seen[0]
            if a.dim() == 3 and a.shape[0] % batch == 0:
                a = a.view(batch, -1, *a.shape[-2:])  # (B * heads, N, N)
            if a.dim() != 4 or a.shape[0] != batch or a.shape[-1] != a.shape[-2] != 0:
                raise ValueError(_not_global(name, tuple(a.shape), tuple(tokens.shape)))
            if a.shape[-1] != tokens.shape[1]:
                raise ValueError(_not_global(name, tuple(a.shape), tuple(tokens.shape)))
            if record.attention and record.attention[0].shape[-1] != a.shape[-1]:
                first = record.attention[0].shape[-1]
                raise ValueError(
                    f"block {name!r} attends over {a.shape[-1]} tokens, block "
                    f"{record.blocks[0]!r} over {first} (a pyramid): {NEEDS_GLOBAL}"
                )
            record.attention.append(a)
            record.tokens.append(tokens)
            if leaves == "every" and index == len(modules) - 1:  # each block's tokens, scored
                return _replace_first(output, torch.cat(record.tokens))
            return None

        return hook

    return [
        *(hook_here(m, before(i), pre=True, with_kwargs=True) for i, m in enumerate(modules)),
        *(hook_here(m, after(i), with_kwargs=True) for i, m in enumerate(modules)),
    ]


NEEDS_GLOBAL = (
    "the attention methods need blocks that attend globally over one sequence of tokens, "
    "attention (B, heads, N, N) for N tokens in every block; windowed or pooled attention "
    "(Swin, PVT, Segformer, Hiera, MViT, LeViT) is not that: use gradcam (or another map "
    "method) on a token layer instead"
)


def _not_global(name: str, attention: tuple[int, ...], tokens: tuple[int, ...]) -> str:
    return (
        f"block {name!r} computed attention of shape {attention} for its tokens {tokens}: "
        f"{NEEDS_GLOBAL}"
    )


def _not_a_block(name: str, attentions: int, tokens: Tensor | None, batch: int) -> str:
    if attentions != 1:
        return (
            f"block {name!r} computed {attentions} attention maps, not one: name the "
            "transformer's blocks (each with one self-attention) as the layer"
        )
    shape = None if tokens is None else tuple(tokens.shape)
    return (
        f"block {name!r} returned {shape}, not batch-first tokens ({batch}, N, D): attention "
        "methods need blocks whose output is the token sequence"
    )


@contextlib.contextmanager
def recording_attention(
    model: nn.Module, blocks: Sequence[str], batch: int, *, leaves: str = "none"
) -> Iterator[AttentionRecord]:
    """Record the attention probabilities of `blocks` (dotted names, in the order they run)
    during the forward pass made in the block.

    ``leaves="first"``: run the pass under ``torch.no_grad()``; gradient recording starts at
    the first block's input (a leaf), so a backward pass ends there. ``leaves="every"``
    (LeGrad): every block's input is a leaf, so the gradient of a score computed from block
    l's tokens reaches only block l's attention; and the last block hands the rest of the
    model every block's tokens stacked along the batch, so the model's own head scores each
    block: the output has ``len(blocks) * batch`` rows, block-major.

    Examples:
        >>> from camkit.models import ShapesViT
        >>> vit = ShapesViT().eval()
        >>> with torch.no_grad(), recording_attention(vit, ["blocks.0"], 2) as record:
        ...     _ = vit(torch.rand(2, 3, 32, 32))
        >>> record.attention[0].shape  # (B, heads, 1 + 4 * 4 tokens, keys)
        torch.Size([2, 4, 17, 17])
    """
    if leaves not in ("none", "first", "every"):
        raise ValueError(f"leaves must be 'none', 'first' or 'every', got {leaves!r}")
    modules = dict(model.named_modules())
    record = AttentionRecord(list(blocks))
    mode = _Probabilities()
    hooks = _block_hooks(record, mode, [modules[b] for b in blocks], batch, leaves)
    with removing(hooks), mode:
        yield record


def find_blocks(model: nn.Module, inputs: Inputs) -> list[str]:
    """The transformer blocks of `model`, in the order they run on `inputs`: the innermost
    modules held in an `nn.ModuleList` or `nn.Sequential` that each compute one self-attention.

    One forward pass of the first input, without gradients.

    Examples:
        >>> from camkit.models import ShapesViT
        >>> find_blocks(ShapesViT().eval(), Inputs.wrap(torch.rand(1, 3, 32, 32)))
        ['blocks.0', 'blocks.1', 'blocks.2', 'blocks.3']
    """
    named = dict(model.named_modules())
    in_list = {
        f"{parent}.{child}" if parent else child
        for parent, m in named.items()
        if isinstance(m, (nn.ModuleList, nn.Sequential))
        for child, _ in m.named_children()
    }
    running: list[str] = []
    found: list[str] = []
    mode = _Probabilities()

    def note(_a: Tensor) -> None:
        holders = [n for n in running if n in in_list]
        if holders and holders[-1] not in found:
            found.append(holders[-1])

    def enter(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _args: object) -> None:
            running.append(name)

        return hook

    def leave(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _args: object, _out: object) -> None:
            if running and running[-1] == name:
                running.pop()

        return hook

    hooks = [hook_here(m, enter(n), pre=True) for n, m in named.items() if n]
    hooks += [hook_here(m, leave(n)) for n, m in named.items() if n]
    mode.sink = note
    with removing(hooks), torch.no_grad(), mode:
        run_model(model, inputs.take(torch.arange(1)), inputs.spatial.shape)
    # A stage holding blocks is not a block itself (LeViT's stage, whose downsampling attends).
    return [b for b in found if not any(o.startswith(b + ".") for o in found)]
