"""Which layer to explain: names, modules, and the automatic choice."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from camkit.capture import hook_here, removing
from camkit.inputs import Inputs, ModelInput
from camkit.layouts import Layout, grid_ambiguous, to_spatial, token_grid
from camkit.survey import Candidate, Survey, candidates, survey
from camkit.targets import OutputSelector, select_output

__all__ = [
    "Candidate",
    "LayerChoice",
    "LayerRule",
    "LayerSpec",
    "add_layer_rule",
    "candidates",
    "choose_layer",
    "find_spatial_layer",
    "layer_rules",
    "remove_layer_rule",
    "resolve_layers",
    "stage_layers",
    "to_spatial",
    "token_grid",
    "unwrap",
]

LayerSpec = str | nn.Module | Sequence[str | nn.Module] | None

_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def _is_ultralytics_wrapper(model: nn.Module) -> bool:
    """ultralytics' `YOLO(...)` object: a module whose forward pass predicts (pre-processing,
    NMS, result objects); the network is its `.model`. Told by its class, without importing
    ultralytics."""
    return any(
        cls.__module__ == "ultralytics.engine.model" and cls.__name__ == "Model"
        for cls in type(model).__mro__
    ) and isinstance(getattr(model, "model", None), nn.Module)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside `DataParallel` / `DistributedDataParallel` or an ultralytics `YOLO`
    object; the model itself otherwise.

    Explaining needs no data parallelism (hooks on a replicated module would fire once per
    replica), and a `YOLO` object's own forward pass returns post-processed results, not the
    network's scores.

    Examples:
        >>> from torch import nn
        >>> net = nn.Linear(2, 2)
        >>> unwrap(nn.DataParallel(net)) is net
        True
    """
    while True:
        if isinstance(model, _WRAPPERS):
            model = model.module
        elif _is_ultralytics_wrapper(model):
            model = model.model  # type: ignore[assignment]  # checked: an nn.Module
        else:
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


def _part(model: nn.Module, name: str) -> str | None:
    """The dotted name of the outermost submodule called `name` (``"model.backbone"``)."""
    return next((n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] == name), None)


def _has_backbone(model: nn.Module) -> bool:
    """A backbone at any depth, but not the convolutional stem inside a hybrid ViT's patch
    embedding (its blocks come after it)."""
    found = _part(model, "backbone")
    return found is not None and "embed" not in found


_RULES: list[LayerRule] = [
    # torchvision detection and segmentation, Hugging Face DETR and RT-DETR, and many others:
    # the last stage of the backbone, never a head that works on regions, object queries or
    # the pooled output, nor the feature pyramid.
    LayerRule("models with a backbone", _has_backbone, layer="*backbone.*", skip="*.fpn*"),
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


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """The automatic layer: what was chosen, by which rule, and whether the rule is sure.

    Attributes:
        names: the chosen layers' dotted names (several for a multi-scale detection head, whose
            maps are fused).
        rule: the rule that chose, in words.
        sure: False where no rule of camkit's knows the model's family; the explainer then
            says in a `CamkitWarning` which layer it took and why.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                     nn.Flatten(), nn.Linear(4, 2))
        >>> choice = choose_layer(net, torch.rand(1, 3, 8, 8))
        >>> choice.layer, choice.sure
        ('1', True)
    """

    names: tuple[str, ...]
    rule: str
    sure: bool = True

    @property
    def layer(self) -> str | list[str]:
        """The choice as a `layer=` argument: one name, or a list of names."""
        return self.names[0] if len(self.names) == 1 else list(self.names)

    def warning(self, model: nn.Module) -> str:
        """What the explainer says when the rule is not sure."""
        names = ", ".join(repr(n) for n in self.names)
        return (
            f"camkit explains layer {names} of {type(model).__name__}, chosen as {self.rule}; "
            "no rule of camkit's knows this model's family, so check that this is the layer "
            "you mean, or pass layer=... (camkit.layers.candidates lists them)"
        )


def choose_layer(
    model: nn.Module, x: ModelInput | Inputs, output: OutputSelector = None
) -> LayerChoice:
    """The layer(s) users would pick, and the rule that picked them.

    One forward pass of the first input lists the candidates (`candidates`) and shows the
    model's output and the module that made it (its head). Then:

    1. Never a layer with a 1-element grid (everything after global pooling), the head
       itself (the module that made the output, and for a detection head everything in it:
       its box regression and DFL layers), a layer on a skip path (a pooled shortcut), inside
       an attention (a pyramid transformer's key/value reduction), or a padding.
    2. The first `LayerRule` of `layer_rules()` for the model's family narrows the choice
       (a model with a ``backbone``, at any depth: its last stage, never a region head, the
       object queries or the pyramid).
    3. A head that reads several feature maps (ultralytics YOLO's Detect or Segment head on
       P3, P4 and P5): all of them, fused. Each box's score comes from one scale only, so any
       single one of them would give some boxes a blank map.
    4. A dense output (B, K, *grid) (a segmenter): the encoder's deepest stage, the last
       layer of the first stretch at the coarsest grid (inside the module named ``encoder``
       where there is one). The decoder's last map is one linear step from the logits, where
       Grad-CAM is the class's logit map itself.
    5. Otherwise the last feature map to finish (containers finish after their children, so a
       ResNet gives ``"layer4"``) among those that keep every axis of the input longer than
       one (a video's time); for token models (a ViT), the last block or norm whose grid
       tokens still reach the top score (one forward and backward pass decides).

    A choice made for an output that is neither class scores nor a dense map, by the
    coarsest-grid rule without an encoder-decoder shape, or on tokens whose 3-D grid the count
    does not settle, is not sure (`LayerChoice.sure`).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> choose_layer(net, torch.rand(1, 3, 8, 8)).rule
        'the last feature map before global pooling'
    """
    return _choose(model, x if isinstance(x, Inputs) else Inputs.wrap(x), output)[0]


def find_spatial_layer(
    model: nn.Module, x: ModelInput | Inputs, output: OutputSelector = None
) -> str | list[str]:
    """The automatic layer as a `layer=` argument: `choose_layer(...).layer`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> find_spatial_layer(net, torch.rand(1, 3, 8, 8))
        '1'
    """
    return choose_layer(model, x, output).layer


_BEFORE_POOLING = "the last feature map before global pooling"


def _choose(
    model: nn.Module, inputs: Inputs, output: OutputSelector
) -> tuple[LayerChoice, list[Candidate]]:
    """The choice and the candidates it was made among (for `stage_layers`)."""
    model = unwrap(model)
    layout = Layout.of(model)
    seen = survey(model, inputs, output, layout)
    found = _eligible(seen)
    if not found:
        raise _no_layer(model, inputs.spatial.dim() - 2)
    rule = next((r for r in _RULES if r.applies(model) and r.narrow(found)), None)
    reads = [c for c in found if c.name in seen.head_inputs]
    if rule is not None:
        found = rule.narrow(found)
        choice = _last(model, inputs, found, output, layout, f"the rule for {rule.family}")
    elif len({c.grid for c in reads}) > 1:
        rule_text = "the feature maps the detection head reads, one per scale, fused"
        choice, found = LayerChoice(tuple(c.name for c in reads), rule_text), reads
    elif seen.kind == "dense":
        choice, found = _deepest_stage(model, inputs, found, seen, output, layout)
    elif seen.kind == "scores":
        choice = _last(model, inputs, found, output, layout, _BEFORE_POOLING)
    else:
        shape = "a structure" if seen.output_shape is None else f"{seen.output_shape}"
        unknown = (
            f"{_BEFORE_POOLING} (the output, {shape}, is neither class scores (B, "
            "classes) nor a dense map (B, classes, *grid))"
        )
        choice = _last(model, inputs, found, output, layout, unknown, sure=False)
    _refuse_unplaced_tokens_after(model, choice, seen, inputs)
    return _settled_grid(choice, found, inputs, layout), found


def _eligible(seen: Survey) -> list[Candidate]:
    """Step 1: the candidates with a grid, outside the head and off skip paths."""
    found = [c for c in seen.found if c.cells > 1 and not _on_skip_path(c.name)]
    head = seen.head
    if head is not None:
        outside = [c for c in found if c.name != head and not c.name.startswith(head + ".")]
        found = outside or found  # a head holding everything is the whole model, not a head
    return found


def _on_skip_path(name: str) -> bool:
    """A branch beside the main path, never the map itself: a shortcut (MViT's pooled skip, a
    projection shortcut), or a layer inside an attention (the keys' and values' spatial
    reduction of pyramid transformers, at a coarser grid than the tokens)."""
    return any(
        word in part
        for part in name.split(".")
        for word in ("skip", "shortcut", "attn", "attention")
    )


def _keeps_axes(candidate: Candidate, input_spatial: Sequence[int]) -> bool:
    """Whether the layer's grid keeps every axis of the input longer than one (a video's time:
    a map with one time step is the same in every frame)."""
    return len(candidate.grid) != len(input_spatial) or all(
        g > 1 for g, side in zip(candidate.grid, input_spatial, strict=True) if side > 1
    )


def _last(
    model: nn.Module,
    inputs: Inputs,
    found: list[Candidate],
    output: OutputSelector,
    layout: Layout,
    rule: str,
    *,
    sure: bool = True,
) -> LayerChoice:
    """Step 5 among `found`: the last layer that keeps every axis (the last of all if none
    does); for tokens, the last block or norm whose tokens reach the score."""
    whole = [c for c in found if _keeps_axes(c, tuple(inputs.spatial.shape[2:]))]
    if whole and whole[-1] is not found[-1]:
        rule += ", keeping every axis of the input (a later layer has one step along one)"
    found = whole or found
    if found[-1].layout != "tokens":
        return LayerChoice((found[-1].name,), rule, sure)
    modules = dict(model.named_modules())
    tokens = [c.name for c in found if c.layout == "tokens" and c.block]
    reached = _layers_reaching_the_score(
        model, inputs, [(n, modules[n]) for n in tokens], output, layout
    )
    chosen = [name for name, ok in zip(tokens, reached, strict=True) if ok]
    if not chosen:
        raise ValueError(
            f"no token layer of {type(model).__name__} has a gradient path to its top score "
            "(all gradients are zero: a classifier initialised to zero, as in some models with "
            "random weights?); pass layer=... explicitly (camkit.layers.candidates lists the "
            "layers)"
        )
    return LayerChoice((chosen[-1],), f"{rule}: the last token layer that reaches the score", sure)


def _deepest_stage(
    model: nn.Module,
    inputs: Inputs,
    found: list[Candidate],
    seen: Survey,
    output: OutputSelector,
    layout: Layout,
) -> tuple[LayerChoice, list[Candidate]]:
    """Step 4: a segmenter's encoder's deepest stage."""
    encoder = _part(model, "encoder")
    part = [c for c in found if encoder is not None and c.name.startswith(encoder + ".")]
    part = part or found
    coarsest = min(c.cells for c in part)
    start = next(i for i, c in enumerate(part) if c.cells == coarsest)
    end = next((i for i in range(start, len(part)) if part[i].cells != coarsest), len(part))
    run = part[start:end]
    after = found[found.index(run[-1]) + 1 :]
    decodes = any(c.cells > coarsest for c in after)
    grid = " x ".join(map(str, run[-1].grid))
    where = f"the module {encoder!r}" if part is not found else "the model"
    rule = (
        f"the deepest stage of {where} (the last layer of the first stretch at its coarsest "
        f"grid, {grid}), as a segmenter's map is read: the layers after it are near-linear in "
        "the logits"
    )
    sure = (part is not found or decodes) and coarsest < _cells(seen.output_shape)
    return _last(model, inputs, run, output, layout, rule, sure=sure), run


def _cells(shape: tuple[int, ...] | None) -> int:
    return 0 if shape is None else int(torch.tensor(shape[2:]).prod())


def _refuse_unplaced_tokens_after(
    model: nn.Module, choice: LayerChoice, seen: Survey, inputs: Inputs
) -> None:
    """Never a patch embedding (or any layer) that token blocks follow when camkit could not
    lay those blocks' tokens on the grid: that choice would explain the model's input stem."""
    position = {c.name: i for i, c in enumerate(seen.found)}
    for name in choice.names:
        c = seen.found[position[name]]
        width = c.shape[1] if c.layout == "spatial" else c.shape[-1]
        later = [n for pos, n in seen.unplaced if pos > position[name] and n == width]
        if later:
            raise ValueError(
                f"layers of {type(model).__name__} after {name!r} output (B, N, {width}) "
                "tokens that camkit cannot lay on the grid of the "
                f"{tuple(inputs.spatial.shape[2:])} input (how many leading tokens, or in which "
                "order?), so the automatic choice would explain the input's stem: pass "
                "layer=... naming a block, and reshape=... turning its tokens into (B, C, *grid)"
            )


def _settled_grid(
    choice: LayerChoice, found: list[Candidate], inputs: Inputs, layout: Layout
) -> LayerChoice:
    """A token layer on a 3-D input whose grid the count does not settle is not sure."""
    by_name = {c.name: c for c in found}
    spatial = tuple(inputs.spatial.shape[2:])
    for name in choice.names:
        c = by_name.get(name)
        if c is None or c.layout != "tokens" or len(spatial) != 3:
            continue
        placed = token_grid(c.shape[1], spatial, layout.leading)
        # The time steps a convolutional stem left settle it (MViT's patch projection).
        stems = [s.grid[0] for s in found[: found.index(c)] if s.layout == "spatial"]
        settled = bool(stems) and stems[-1] == c.grid[0]
        if placed is not None and not settled and grid_ambiguous(c.shape[1] - placed[0], spatial):
            grid = " x ".join(map(str, c.grid))
            return dataclasses.replace(
                choice,
                rule=f"{choice.rule}; its {c.shape[1]} tokens were laid on a {grid} grid, one "
                "of several their count allows (the finest in time)",
                sure=False,
            )
    return choice


def stage_layers(model: nn.Module, x: ModelInput | Inputs, stages: int = 3) -> list[str]:
    """The last layer of each of the model's last `stages` resolutions (for multi-layer
    methods): a ResNet gives ``["layer2", "layer3", "layer4"]``. A model with one resolution
    (a ViT) gives its last `stages` blocks; the last is always the automatic choice (and a
    multi-scale detection head's maps are its stages).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
        ...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> stage_layers(net, torch.rand(1, 3, 16, 16))
        ['0', '1', '2']
    """
    inputs = x if isinstance(x, Inputs) else Inputs.wrap(x)
    choice, found = _choose(model, inputs, None)
    if len(choice.names) > 1:
        return list(choice.names[-stages:])
    names = [c.name for c in found]
    upto = found[: names.index(choice.names[0]) + 1]
    if upto[-1].layout == "tokens":
        blocks = [c.name for c in upto if c.block and c.layout == "tokens"]
        return blocks[-stages:]
    ends = [c.name for i, c in enumerate(upto) if i + 1 == len(upto) or upto[i + 1].grid != c.grid]
    return ends[-stages:]


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
    model: nn.Module,
    inputs: Inputs,
    layers: list[tuple[str, nn.Module]],
    output: OutputSelector,
    layout: Layout,
) -> list[bool]:
    """For each layer: does the top class's score depend on its grid tokens?"""
    kept: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: object, out: Tensor) -> Tensor:
        kept.append(out)
        return out.clone()  # later in-place ops must not touch what is differentiated

    with (
        removing([hook_here(layer, keep) for _, layer in layers]),
        torch.inference_mode(False),
        torch.enable_grad(),
    ):
        # A graph even with frozen parameters: the first input's spatial tensor requires grad.
        probe = inputs.take(torch.arange(1), inputs.spatial[:1].detach().clone().requires_grad_())
        logits = select_output(probe(model), output)
        grads = torch.autograd.grad(logits.max(), kept, allow_unused=True)
    spatial_size = tuple(inputs.spatial.shape[2:])
    reached = []
    for (name, _), grad in zip(layers, grads, strict=True):
        grid = None if grad is None else layout.spatial(grad, spatial_size, name)
        reached.append(grid is not None and bool(grid.abs().sum() > 0))
    return reached
