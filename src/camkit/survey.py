"""What a model offers to explain: one forward pass that lists its feature maps, and what the
automatic layer choice needs to know about the model's output and its head.

`candidates` is the public list (every layer whose output is a feature map of the input);
`survey` adds, from the same pass, the module that made the model's output (its head), the
feature maps that head reads, what kind of output it is (class scores, a dense map, something
else), and token outputs that could not be laid on the input's grid.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from camkit.capture import hook_here, removing, run_model
from camkit.inputs import Inputs, ModelInput
from camkit.layouts import Layout
from camkit.targets import OutputSelector, select_output

# Resampling to a fixed output size, or padding the map before it, makes no feature map worth
# explaining: skip them when choosing.
_RESAMPLERS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
    nn.modules.padding._CircularPadNd,
)

OutputKind = Literal["scores", "dense", "other"]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A layer whose output can be explained, as `candidates` found it.

    Attributes:
        name: the dotted name (``"layer4"``, ``"blocks.11.norm1"``).
        shape: its output's shape for one input.
        layout: ``"spatial"`` (1, C, *grid), ``"tokens"`` (1, N, C) or ``"channels-last"``
            (1, h, w, C).
        grid: the spatial grid the map has at this layer.
        block: a container or a normalisation layer (what the automatic choice takes for tokens).

    Examples:
        >>> Candidate("layer4", (1, 512, 7, 7), "spatial", (7, 7), True).cells
        49
    """

    name: str
    shape: tuple[int, ...]
    layout: str
    grid: tuple[int, ...]
    block: bool

    @property
    def cells(self) -> int:
        """The number of positions in the grid (1 for a globally pooled output)."""
        return math.prod(self.grid)


@dataclasses.dataclass(frozen=True)
class Survey:
    """What one forward pass of one input showed of a model.

    Attributes:
        found: the candidates (layers that run once and give a feature map), in finishing order.
        kind: the selected output: ``"scores"`` (B, K), ``"dense"`` (B, K, *grid) like the
            input (a segmenter), or ``"other"`` (a detector's boxes, a structure).
        output_shape: the selected output's shape, or None when none could be selected.
        head: the module that made the selected output: the first to finish holding it, or
            the last whose output it is a view of (a head's convolution, reshaped).
        head_made_tensor: whether the head's output is the selected tensor itself (a linear or
            convolutional head), rather than a structure around it (a detection head's tuple).
        head_inputs: the candidates whose outputs the head reads, in order.
        unplaced: (position in `found` when it finished, channels) of each (B, N, C) output that
            could not be laid on the input's grid.
    """

    found: list[Candidate]
    kind: OutputKind
    output_shape: tuple[int, ...] | None
    head: str | None
    head_made_tensor: bool
    head_inputs: list[str]
    unplaced: list[tuple[int, int]]


def _layout(
    out: Tensor, x: Tensor, layout: Layout, name: str
) -> tuple[str, tuple[int, ...]] | None:
    """How a layer's output for `x` maps onto a spatial grid, or None if it does not."""
    spatial = tuple(x.shape[2:])
    if out.dim() < 2 or out.shape[0] != x.shape[0]:
        return None  # not one row per input (region features of a detector, a flattened batch)
    converted = layout.spatial(out, spatial, name)
    if converted is not None:
        return ("tokens" if out.dim() == 3 else "channels-last"), tuple(converted.shape[2:])
    if out.dim() == x.dim():
        return "spatial", tuple(out.shape[2:])
    return None


def _is_block(module: nn.Module) -> bool:
    return next(module.children(), None) is not None or "norm" in type(module).__name__.lower()


def _tensors(value: object) -> Iterator[Tensor]:
    """The tensors of a module's output or arguments, one level into tuples, lists and dicts."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            if isinstance(item, Tensor):
                yield item
            elif isinstance(item, (tuple, list)):
                yield from (t for t in item if isinstance(t, Tensor))
    elif isinstance(value, Mapping):
        yield from (v for v in value.values() if isinstance(v, Tensor))


def _kind(selected: Tensor | None, x: Tensor) -> OutputKind:
    if selected is None:
        return "other"
    cells = math.prod(selected.shape[2:])
    if selected.dim() == 2 or (selected.dim() == x.dim() and cells == 1):
        return "scores"  # (B, K), or (B, K, 1, 1) from a pooled head without a flatten
    return "dense" if selected.dim() == x.dim() else "other"


def _selected(outputs: object, output: OutputSelector) -> Tensor | None:
    try:
        return select_output(outputs, output)
    except (TypeError, KeyError, IndexError, ValueError):
        return None  # a structure with no class scores (a detector's list of dicts)


Memory = tuple[int, int, float]
_PROBE = 4096  # values summed at each end of a tensor's memory


def _memory(t: Tensor) -> Memory:
    """Where a tensor's memory is, its size, and the sum of its first and last values: a view
    of it has the same, while a later tensor that reuses the memory after it was freed holds
    other values. (Only ends: a sum of everything, for every module's output, cost a whole
    extra pass over the activations, minutes on a large image.)"""
    storage = t.untyped_storage()
    if t.numel() == 0 or not t.is_floating_point():
        return (0, 0, 0.0)
    whole = torch.empty(0, dtype=t.dtype, device=t.device).set_(storage)
    ends = torch.cat([whole[:_PROBE], whole[-_PROBE:]])
    return (int(storage.data_ptr()), int(storage.nbytes()), float(ends.double().sum()))


def _head(
    made: list[tuple[str, weakref.ref[Tensor], bool, Memory | None]], selected: Tensor | None
) -> tuple[str, bool] | None:
    """(the module that made the selected output, whether it made the tensor itself): the first
    module holding it; else the last whose output it views (a detection head's convolution
    reshaped to (B, anchors, values)): the same memory, holding the same values."""
    if selected is None:
        return None
    held = next(((name, whole) for name, ref, whole, _ in made if ref() is selected), None)
    if held is not None:
        return held
    memory = _memory(selected)
    viewed = [name for name, _, _, at in made if memory[0] and at == memory]
    return (viewed[-1], True) if viewed else None


def survey(
    model: nn.Module,
    x: ModelInput | Inputs,
    output: OutputSelector = None,
    layout: Layout | None = None,
) -> Survey:
    """One forward pass of the first input, without gradients: the candidates, and the model's
    head and output (see `Survey`).

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                     nn.Flatten(), nn.Linear(4, 2))
        >>> found = survey(net, torch.rand(1, 3, 8, 8))
        >>> found.kind, found.head, [c.name for c in found.found]
        ('scores', '4', ['0', '1'])
    """
    inputs = x if isinstance(x, Inputs) else Inputs.wrap(x)
    layout = layout or Layout.of(model)
    probe_inputs = inputs.take(torch.arange(1))
    probe = probe_inputs.spatial
    finished: list[Candidate] = []
    runs: dict[str, int] = {}
    unplaced: list[tuple[int, int]] = []
    # id -> (name, weak reference) of each candidate's output, to find what a module reads
    # (the reference tells a live tensor from a later one that reuses a freed id)
    produced: dict[int, list[tuple[str, weakref.ref[Tensor]]]] = {}
    reads: dict[str, list[str]] = {}
    # each module's output tensors: (name, reference, the output itself?, its memory (outputs))
    made: list[tuple[str, weakref.ref[Tensor], bool, Memory | None]] = []

    def recorder(
        name: str, module: nn.Module
    ) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        def hook(_module: nn.Module, args: tuple[object, ...], out: object) -> None:
            runs[name] = runs.get(name, 0) + 1
            reads[name] = [
                source
                for t in _tensors(args)
                for source, ref in produced.get(id(t), [])[-1:]
                if ref() is t
            ]
            made.extend(
                (name, weakref.ref(t), t is out, _memory(t) if t is out else None)
                for t in _tensors(out)
            )
            if not isinstance(out, Tensor):
                return
            found = _layout(out, probe, layout, name)
            if found is None:
                if out.dim() == 3 and len(out) == len(probe):
                    unplaced.append((len(finished), int(out.shape[-1])))
                return
            if not isinstance(module, (*_RESAMPLERS, nn.Identity)):
                kind, grid = found
                finished.append(Candidate(name, tuple(out.shape), kind, grid, _is_block(module)))
                produced.setdefault(id(out), []).append((name, weakref.ref(out)))

        return hook

    hooks = [hook_here(m, recorder(n, m)) for n, m in model.named_modules() if n]
    # no_grad, not inference_mode: some models cache tensors they later use with autograd.
    with removing(hooks), torch.no_grad():
        outputs = run_model(model, probe_inputs, inputs.spatial.shape)
    selected = _selected(outputs, output)
    head = _head(made, selected)
    once = [c for c in finished if runs[c.name] == 1]
    kept = {c.name for c in once}
    return Survey(
        found=once,
        kind=_kind(selected, probe),
        output_shape=None if selected is None else tuple(selected.shape),
        head=None if head is None else head[0],
        head_made_tensor=head is not None and head[1],
        head_inputs=[] if head is None else [n for n in reads.get(head[0], []) if n in kept],
        unplaced=unplaced,
    )


def candidates(model: nn.Module, x: ModelInput | Inputs) -> list[Candidate]:
    """Every layer whose output is a feature map of the input, in the order the layers finish.

    One forward pass of the first input, without gradients. A layer qualifies when it runs once
    per forward pass, keeps one row per input, and its output is (B, C, *grid) like the input,
    (B, N, C) tokens or (B, h, w, C) channels-last. Adaptive pooling, padding and `nn.Identity`
    (an alias of the layer before it) are left out.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> [(c.name, c.grid) for c in candidates(net, torch.rand(1, 3, 8, 8))]
        [('0', (6, 6)), ('1', (6, 6))]
    """
    return survey(model, x).found
