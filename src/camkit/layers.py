"""Which layer to explain: names, modules, and the automatic choice."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import re
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from camkit.capture import hook_here, removing, run_model
from camkit.inputs import Inputs, ModelInput
from camkit.targets import select_output

LayerSpec = str | nn.Module | Sequence[str | nn.Module] | None

_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)
# Resampling to a fixed output size is not a feature map worth explaining: skip it when choosing.
_RESAMPLERS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside `DataParallel` / `DistributedDataParallel`; the model itself otherwise.

    Explaining needs no data parallelism, and hooks on a replicated module would fire once per
    replica.
    """
    while isinstance(model, _WRAPPERS):
        model = model.module
    return model


def _spellings(name: str) -> list[str]:
    # Accept "features[28]" as well as "features.28", and names written for the wrapped model.
    name = re.sub(r"\[(\d+)\]", r".\1", name).strip(".")
    return [name, name.removeprefix("module.")]


def resolve_layers(model: nn.Module, layer: LayerSpec) -> list[tuple[str, nn.Module]]:
    """Turn a layer spec (name, module, or a list of those) into (dotted name, module) pairs.

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> [name for name, _ in resolve_layers(net, ["0", net[1]])]
        ['0', '1']
    """
    if layer is None:
        raise ValueError("resolve_layers needs a layer; use find_spatial_layer for layer=None")
    if isinstance(layer, (str, nn.Module)):
        specs = [layer]
    elif isinstance(layer, (list, tuple)):
        specs = list(layer)
    else:
        raise TypeError(
            f"layer must be a dotted name, an nn.Module or a list of those, not "
            f"{type(layer).__name__}: {layer!r}"
        )
    if not specs:
        raise ValueError("layer is an empty list: give at least one layer name or module")
    named = dict(model.named_modules())
    by_identity = {id(module): name for name, module in named.items()}
    return [_resolve(model, spec, named, by_identity) for spec in specs]


def _resolve(
    model: nn.Module, spec: object, named: dict[str, nn.Module], by_identity: dict[int, str]
) -> tuple[str, nn.Module]:
    """(dotted name, module) of one layer given by name or as a module of the model."""
    if isinstance(spec, nn.Module):
        if id(spec) not in by_identity:
            raise ValueError(
                f"the layer module {type(spec).__name__} is not part of the model "
                f"{type(model).__name__}: pass a submodule of the model or its dotted name"
            )
        return by_identity[id(spec)], spec
    if not isinstance(spec, str):
        raise TypeError(
            f"a layer is a dotted name or an nn.Module, not {type(spec).__name__}: {spec!r}"
        )
    name = next((n for n in _spellings(spec) if n and n in named), None)
    if name is None:
        close = difflib.get_close_matches(spec, [n for n in named if n], n=5, cutoff=0.5)
        hint = f"closest names: {', '.join(repr(c) for c in close)}" if close else ""
        raise ValueError(
            f"no layer named {spec!r} in {type(model).__name__}; {hint}"
            f"{'; ' if hint else ''}all names are listed by model.named_modules()"
        )
    return name, named[name]


def _grid(tokens: int, height: int, width: int) -> tuple[int, int] | None:
    """(h, w) with h * w == tokens and the input's aspect ratio (one stride for both axes)."""
    if tokens < 1:
        return None
    stride = math.sqrt(height * width / tokens)
    h, w = max(1, round(height / stride)), max(1, round(width / stride))
    return (h, w) if h * w == tokens else None


def _is_grid(size: Sequence[int], height: int, width: int) -> bool:
    h, w = size
    if h < 1 or w < 1 or h > height or w > width:
        return False
    return abs(height / h - width / w) <= 0.15 * max(height / h, width / w)


def token_grid(tokens: int, input_spatial: Sequence[int]) -> tuple[int, tuple[int, int]] | None:
    """How `tokens` tokens of a 2-D input lie: (leading tokens, (h, w) patch grid), or None.

    Up to two leading tokens (class, distillation) or five (class and four registers) come
    before a row-major grid with the input's aspect ratio.

    Examples:
        >>> token_grid(1 + 14 * 14, (224, 224))  # ViT-B/16: a class token, then 14 x 14
        (1, (14, 14))
        >>> token_grid(5 + 16 * 16, (224, 224))  # DINOv2 with registers (patch 14)
        (5, (16, 16))
    """
    if len(input_spatial) != 2:
        return None
    for leading in (0, 1, 2, 5):
        grid = _grid(tokens - leading, input_spatial[0], input_spatial[1])
        if grid is not None:
            return leading, grid
    return None


def to_spatial(t: Tensor, input_spatial: Sequence[int]) -> Tensor | None:
    """(B, N, C) tokens or (B, h, w, C) channels-last as (B, C, h, w); None for other layouts.

    Tokens form a grid with the input's aspect ratio, after up to two leading tokens (class,
    distillation) that are dropped. Only 2-D inputs have such layouts.

    Examples:
        >>> import torch
        >>> to_spatial(torch.zeros(2, 1 + 14 * 14, 768), (224, 224)).shape  # ViT-B/16
        torch.Size([2, 768, 14, 14])
        >>> to_spatial(torch.zeros(2, 7, 7, 768), (224, 224)).shape  # Swin stage output
        torch.Size([2, 768, 7, 7])
        >>> to_spatial(torch.zeros(2, 512, 7, 7), (224, 224)) is None  # already (B, C, h, w)
        True
    """
    if len(input_spatial) != 2:
        return None
    height, width = input_spatial
    if t.dim() == 3:
        layout = token_grid(t.shape[1], (height, width))
        if layout is None:
            return None
        leading, grid = layout
        spatial: Tensor = t[:, leading:].transpose(1, 2).unflatten(2, grid)
        return spatial
    if (
        t.dim() == 4
        and _is_grid(t.shape[1:3], height, width)
        and not _is_grid(t.shape[2:4], height, width)
    ):
        return t.permute(0, 3, 1, 2)
    return None


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


def _layout(out: Tensor, x: Tensor) -> tuple[str, tuple[int, ...]] | None:
    """How a layer's output for `x` maps onto a spatial grid, or None if it does not."""
    spatial = tuple(x.shape[2:])
    if out.dim() < 2 or out.shape[0] != x.shape[0]:
        return None  # not one row per input (region features of a detector, a flattened batch)
    converted = to_spatial(out, spatial)
    if converted is not None:
        return ("tokens" if out.dim() == 3 else "channels-last"), tuple(converted.shape[2:])
    if out.dim() == x.dim():
        return "spatial", tuple(out.shape[2:])
    return None


def _is_block(module: nn.Module) -> bool:
    return next(module.children(), None) is not None or "norm" in type(module).__name__.lower()


def candidates(model: nn.Module, x: ModelInput | Inputs) -> list[Candidate]:
    """Every layer whose output is a feature map of the input, in the order the layers finish.

    One forward pass of the first input, without gradients. A layer qualifies when it runs once
    per forward pass, keeps one row per input, and its output is (B, C, *grid) like the input,
    (B, N, C) tokens or (B, h, w, C) channels-last. Adaptive pooling and `nn.Identity` (an alias
    of the layer before it) are left out.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> [(c.name, c.grid) for c in candidates(net, torch.rand(1, 3, 8, 8))]
        [('0', (6, 6)), ('1', (6, 6))]
    """
    inputs = x if isinstance(x, Inputs) else Inputs.wrap(x)
    probe_inputs = inputs.take(torch.arange(1))
    probe = probe_inputs.spatial
    finished: list[Candidate] = []
    runs: dict[str, int] = {}

    def recorder(name: str, module: nn.Module) -> Callable[[nn.Module, object, object], None]:
        def hook(_module: nn.Module, _inputs: object, out: object) -> None:
            runs[name] = runs.get(name, 0) + 1
            found = _layout(out, probe) if isinstance(out, Tensor) else None
            if found is not None and not isinstance(module, (*_RESAMPLERS, nn.Identity)):
                assert isinstance(out, Tensor)
                layout, grid = found
                finished.append(Candidate(name, tuple(out.shape), layout, grid, _is_block(module)))

        return hook

    hooks = [hook_here(m, recorder(n, m)) for n, m in model.named_modules() if n]
    # no_grad, not inference_mode: some models cache tensors they later use with autograd.
    with removing(hooks), torch.no_grad():
        run_model(model, probe_inputs, inputs.spatial.shape)
    return [c for c in finished if runs[c.name] == 1]


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """How the automatic choice treats one family of models: "this family: that layer, that
    layout". The first rule in `layer_rules()` whose `applies` holds narrows the candidates to
    the names matching `layer` (shell-style patterns, ``"backbone.*"``), minus those matching
    `skip`, and to `layout` if given; the usual choice (`find_spatial_layer`) is then made
    among them. A rule whose names match no candidate is passed over.

    Examples:
        >>> rule = LayerRule("encoders", lambda m: hasattr(m, "encoder"), layer="encoder.*")
        >>> rule.family, rule.layout
        ('encoders', None)
    """

    family: str
    applies: Callable[[nn.Module], bool]
    layer: str = "*"
    skip: str | None = None
    layout: str | None = None

    def narrow(self, found: list[Candidate]) -> list[Candidate]:
        """The candidates this rule keeps."""
        return [
            c
            for c in found
            if fnmatch.fnmatchcase(c.name, self.layer)
            and not (self.skip and fnmatch.fnmatchcase(c.name, self.skip))
            and (self.layout is None or c.layout == self.layout)
        ]


def _has_backbone(model: nn.Module) -> bool:
    return isinstance(getattr(model, "backbone", None), nn.Module)


_RULES: list[LayerRule] = [
    # torchvision detection and segmentation, and many others: the last stage of the backbone,
    # never a head that works on regions or on the pooled output, nor the feature pyramid.
    LayerRule("models with a backbone", _has_backbone, layer="backbone.*", skip="*.fpn*"),
]


def layer_rules() -> tuple[LayerRule, ...]:
    """The rules of the automatic layer choice, in the order they are tried.

    Examples:
        >>> [rule.family for rule in layer_rules()]
        ['models with a backbone']
    """
    return tuple(_RULES)


def add_layer_rule(rule: LayerRule) -> None:
    """Make the automatic choice use `rule` for its family, before the rules there are (so a
    rule of yours wins); `remove_layer_rule` takes it out.

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1))
        >>> add_layer_rule(LayerRule("first convolution", lambda m: m is net, layer="0"))
        >>> find_spatial_layer(net, torch.rand(1, 3, 8, 8))
        '0'
        >>> remove_layer_rule("first convolution")
        >>> find_spatial_layer(net, torch.rand(1, 3, 8, 8))
        '1'
    """
    _RULES.insert(0, rule)


def remove_layer_rule(family: str) -> None:
    """Take out the rules added for `family`."""
    _RULES[:] = [rule for rule in _RULES if rule.family != family]


def find_spatial_layer(model: nn.Module, x: ModelInput | Inputs, output: object = None) -> str:
    """The layer users would pick: the last feature map with a grid before global pooling.

    The rule, on the layers `candidates` lists:

    1. Never a layer with a 1-element grid: after global pooling every output is one, so the
       choice is always before the pooling (and never a pooled head's norm or 1 x 1 conv).
    2. The first `LayerRule` of `layer_rules()` for the model's family narrows the choice
       (a model with a ``backbone``: its last stage, never a region head or the pyramid).
    3. Convolutional layouts: the last such layer to finish. Containers finish after their
       children, so a ResNet gives ``"layer4"``, and a container and its last child are the
       same feature map.
    4. Token models (a ViT): a block's output or a normalisation layer, never an attention
       projection or an MLP layer: the last one whose grid tokens still reach the top class's
       score (one forward and backward pass of the first input decides). After the last block
       only the class token counts, so this is the last block's first norm.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> find_spatial_layer(net, torch.rand(1, 3, 8, 8))
        '1'
    """
    inputs = x if isinstance(x, Inputs) else Inputs.wrap(x)
    found = _narrowed(model, [c for c in candidates(model, inputs) if c.cells > 1])
    if not found:
        raise _no_layer(model, inputs.spatial.dim() - 2)
    if found[-1].layout != "tokens":
        return found[-1].name
    modules = dict(model.named_modules())
    tokens = [c.name for c in found if c.layout == "tokens" and c.block]
    reached = _layers_reaching_the_score(model, inputs, [modules[n] for n in tokens], output)
    chosen = [name for name, ok in zip(tokens, reached, strict=True) if ok]
    if chosen:
        return chosen[-1]
    raise ValueError(
        f"no token layer of {type(model).__name__} has a gradient path to its top score (all "
        "gradients are zero: a classifier initialised to zero, as in some models with random "
        "weights?); pass layer=... explicitly (camkit.layers.candidates lists the layers)"
    )


def stage_layers(model: nn.Module, x: ModelInput | Inputs, stages: int = 3) -> list[str]:
    """The last layer of each of the model's last `stages` resolutions (for multi-layer
    methods): a ResNet gives ``["layer2", "layer3", "layer4"]``. A model with one resolution
    (a ViT) gives its last `stages` blocks; the last is always `find_spatial_layer`'s choice.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
        >>> stage_layers(net, torch.rand(1, 3, 16, 16))
        ['0', '1', '2']
    """
    inputs = x if isinstance(x, Inputs) else Inputs.wrap(x)
    last = find_spatial_layer(model, inputs)
    found = _narrowed(model, [c for c in candidates(model, inputs) if c.cells > 1])
    upto = [c for c in found[: [c.name for c in found].index(last) + 1]]
    if upto[-1].layout == "tokens":
        blocks = [c.name for c in upto if c.block and c.layout == "tokens"]
        return blocks[-stages:]
    ends = [c.name for i, c in enumerate(upto) if i + 1 == len(upto) or upto[i + 1].grid != c.grid]
    return ends[-stages:]


def _narrowed(model: nn.Module, found: list[Candidate]) -> list[Candidate]:
    """The candidates the first applicable rule keeps (all when none applies or keeps any)."""
    for rule in _RULES:
        if rule.applies(model):
            kept = rule.narrow(found)
            if kept:
                return kept
    return found


def _no_layer(model: nn.Module, dims: int) -> ValueError:
    return ValueError(
        f"found no layer in {type(model).__name__} whose output is a feature map of the "
        f"input with a grid larger than 1 x 1 ((B, C, *spatial) with {dims} spatial "
        "dimension(s), or tokens); pass layer=... explicitly (camkit.layers.candidates "
        "lists the layers)"
        + (
            "; if x is a single image (C, H, W), add the batch dimension: x.unsqueeze(0)"
            if dims == 1
            else ""
        )
    )


def _layers_reaching_the_score(
    model: nn.Module, inputs: Inputs, layers: list[nn.Module], output: object
) -> list[bool]:
    """For each layer: does the top class's score depend on its grid tokens?"""
    kept: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: object, out: Tensor) -> Tensor:
        kept.append(out)
        return out.clone()  # later in-place ops must not touch what is differentiated

    with (
        removing([hook_here(layer, keep) for layer in layers]),
        torch.inference_mode(False),
        torch.enable_grad(),
    ):
        # A graph even with frozen parameters: the first input's spatial tensor requires grad.
        probe = inputs.take(torch.arange(1), inputs.spatial[:1].detach().clone().requires_grad_())
        logits = select_output(probe(model), output)  # type: ignore[arg-type]  # the model's own output type
        grads = torch.autograd.grad(logits.max(), kept, allow_unused=True)
    spatial_size = tuple(inputs.spatial.shape[2:])
    reached = []
    for grad in grads:
        grid = None if grad is None else to_spatial(grad, spatial_size)
        reached.append(grid is not None and bool(grid.abs().sum() > 0))
    return reached
