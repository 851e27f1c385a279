"""The pipeline every method shares: capture, score, differentiate, weigh and finish.

A method is a subclass that states only its rule, `weigh(evidence) -> (B, K, *spatial)`, and
whether that rule needs gradients. Everything else happens here, once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar, Literal, TypedDict, TypeVar

import torch
from torch import Tensor, nn

from camkit.capture import batched_only, capture, preserved_state, run_model
from camkit.errors import CamkitWarning
from camkit.explanation import Explanation
from camkit.inputs import Inputs, ModelInput, SpatialInput
from camkit.layers import LayerSpec, choose_layer, resolve_layers, unwrap
from camkit.layouts import Layout
from camkit.maps import Fuse, fuse, normalise, rectify, upsample, warn_constant
from camkit.registry import adder, lookup
from camkit.smoothing import Noise
from camkit.targets import (
    ClassScore,
    OutputSelector,
    Score,
    Scorer,
    Targets,
    score_targets,
    select_output,
)

Reshape = Callable[[Tensor], Tensor]

INPUT = "input"
"""The layer name of the model's (spatial) input, for rules drawn on the input itself."""

LayerMeaning = Literal["feature maps", "blocks", "input", "own"]
"""What a method's `layer` names (`Explainer.layer_means`): "feature maps", layers whose output
is (B, C, *spatial); "blocks", the transformer blocks whose attention the method reads (a layer
inside a block stands for its block); "input" and "own", nothing: the method draws on the
input, or on layers it finds itself (`draws_on` says which), and a layer given is ignored, with
a warning."""


class MethodOptions(TypedDict, total=False):
    """The construction options every method takes (see `Explainer`), for ``**options``."""

    output: OutputSelector
    reshape: Reshape | None
    fuse: Fuse
    smooth: Noise | None
    spatial_input: SpatialInput


_REGISTRY: dict[str, type[Explainer]] = {}
METHODS: Mapping[str, type[Explainer]] = MappingProxyType(_REGISTRY)
"""Method name -> class, e.g. ``METHODS["gradcam++"] is GradCAMPlusPlus``."""

E = TypeVar("E", bound="type[Explainer]")


def register(name: str) -> Callable[[E], E]:
    """Class decorator: make a method available as `METHODS[name]` and `explain(method=name)`.

    Examples:
        >>> import camkit
        >>> @camkit.register("activation-sum")
        ... class ActivationSum(camkit.Explainer):
        ...     needs_gradients = False
        ...     def weigh(self, evidence):
        ...         return evidence.activations.sum(dim=1, keepdim=True)
        >>> camkit.METHODS["activation-sum"] is ActivationSum
        True
        >>> camkit.methods.unregister("activation-sum")
    """

    return adder(_REGISTRY, "method", name)


def unregister(name: str) -> None:
    """Remove a method added with `register` (examples and tests clean up with it)."""
    _REGISTRY.pop(name, None)


def arrange(order: Sequence[str]) -> None:
    """List the methods named in `order` first, in that order (what "all" runs and the app
    shows); the rest keep their registration order after them."""
    known = [name for name in order if name in _REGISTRY]
    rest = [name for name in _REGISTRY if name not in known]
    arranged = {name: _REGISTRY[name] for name in (*known, *rest)}
    _REGISTRY.clear()
    _REGISTRY.update(arranged)


def method_class(name: str) -> type[Explainer]:
    """The class registered as `name`; a `ValueError` with close matches for an unknown name.

    Examples:
        >>> method_class("gradcam++").__name__
        'GradCAMPlusPlus'
    """
    return lookup(_REGISTRY, "method", name)


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What a method's rule sees for one layer (float32, or float64 for a float64 model).

    Rows are the explained inputs; with ``copies > 1`` (noise smoothing) they are `copies`
    stacked copies of the batch, copy-major, and the pipeline averages the rule's maps over them.

    Attributes:
        layer: the layer's dotted name.
        activations: A, (rows, C, *spatial).
        gradients: dS/dA for each of the K scores, (rows, K, C, *spatial); None without gradients.
        targets: (B, K) class indices, or None when the scores come from a function.
        logits: the model's (rows, classes) scores when targets are class indices, else None.
        scores: the explained scores (rows, K), detached.
        inputs: the model's (spatial) input rows, (rows, C_in, *input_spatial).
        model_inputs: all of the model's input rows (several inputs, keyword inputs), to run the
            model on changed copies: ``model_inputs.take(rows, spatial=changed)(model)``.
        scorer: scores the targets on the outputs of other batches built from the rows.
        copies: how many copies of the batch the rows hold.

    Examples:
        >>> import torch
        >>> Evidence("layer4", torch.ones(1, 2, 3, 3), None, None, None).spatial
        (2, 3)
    """

    layer: str
    activations: Tensor
    gradients: Tensor | None
    targets: Tensor | None
    logits: Tensor | None
    scores: Tensor | None = None
    inputs: Tensor | None = None
    scorer: Scorer | None = None
    copies: int = 1
    model_inputs: Inputs | None = None

    @property
    def spatial(self) -> tuple[int, ...]:
        """The spatial dimensions of `activations` (2, 3, ...)."""
        return tuple(range(2, self.activations.dim()))


def differentiate(scores: Tensor, activations: Sequence[Tensor]) -> list[Tensor]:
    """dS/dA for every score at once: one (B, K, *A.shape[1:]) tensor per activation.

    K scores per input take one vectorised backward pass (`is_grads_batched`), not K passes.
    Inputs of a batch are independent, so the gradient of the batch sum is each input's gradient.
    """
    if not scores.requires_grad:
        raise ValueError(
            "the scores to explain do not depend on the explained layer (no gradient path): a "
            "target function must return scores computed from the model's output, not detached "
            "or integer values"
        )
    k = scores.shape[1]
    if k == 1:
        grads = torch.autograd.grad(scores.sum(), activations, allow_unused=True)
        grads = tuple(None if g is None else g.unsqueeze(1) for g in grads)
    else:
        one_hot = torch.eye(k, dtype=scores.dtype, device=scores.device)[:, None, :]
        grads = torch.autograd.grad(
            scores,
            activations,
            grad_outputs=one_hot.expand(k, *scores.shape),
            is_grads_batched=True,
            allow_unused=True,
        )
        grads = tuple(None if g is None else g.movedim(0, 1) for g in grads)
    return [
        a.new_zeros(a.shape[0], k, *a.shape[1:]) if g is None else g
        for a, g in zip(activations, grads, strict=True)
    ]


def detached(value: object) -> object:
    """The model's output without its graph, so a kept result keeps no activations alive."""
    if isinstance(value, Tensor):
        return value.detach()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return dataclasses.replace(
            value, **{f.name: detached(getattr(value, f.name)) for f in fields if f.init}
        )
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[detached(v) for v in value])  # type: ignore[arg-type]  # its fields
    if isinstance(value, (tuple, list)):
        return type(value)(detached(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, detached(v)) for k, v in value.items())
    return value


def _named(layer: LayerSpec) -> str:
    """A layer given, in words: its names (a module by its class)."""
    given = layer if isinstance(layer, (list, tuple)) else [layer]
    return ", ".join(item if isinstance(item, str) else type(item).__name__ for item in given)


def _check_input(x: object) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a float tensor (B, C, *spatial), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"expected a floating-point input, got {x.dtype}: convert it, e.g. x.float() / 255 "
            "followed by the model's normalisation"
        )
    if x.dim() >= 1 and x.shape[0] == 0:
        raise ValueError(f"the batch is empty (shape {tuple(x.shape)}): give at least one input")
    if x.dim() == 2:
        raise ValueError(
            f"expected a batch (B, C, L), (B, C, H, W) or (B, C, D, H, W), got shape "
            f"{tuple(x.shape)}: a batch of signals without a channel axis (B, L) is explained "
            "as x.unsqueeze(1), (B, 1, L), with a model that takes that (for one that takes "
            "(B, L): nn.Sequential(nn.Flatten(1), model)); a single signal (C, L) needs "
            "x.unsqueeze(0), a single-channel image (H, W) x[None, None]"
        )
    if x.dim() not in (3, 4, 5):
        raise ValueError(
            f"expected a batch (B, C, L), (B, C, H, W) or (B, C, D, H, W), got shape "
            f"{tuple(x.shape)}"
            + (": add a batch dimension with x.unsqueeze(0)" if x.dim() < 2 else "")
        )


def _is_text_model(model: nn.Module) -> bool:
    """A model that reads token ids through an embedding table and takes no pixels (a
    Hugging Face text classifier)."""
    getter = getattr(model, "get_input_embeddings", None)
    if not callable(getter):
        return False
    try:
        embeddings = getter()
    except (NotImplementedError, AttributeError, TypeError):  # a model without one says so
        return False
    takes_pixels = "pixel_values" in inspect.signature(model.forward).parameters
    return isinstance(embeddings, nn.Embedding) and not takes_pixels


def _check_device(model: nn.Module, x: Tensor) -> None:
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    if len(devices) == 1 and (device := devices.pop()) != x.device:
        raise ValueError(
            f"the input is on {x.device} but the model is on {device}: move one of them, e.g. "
            f"x.to('{device}')"
        )


class Explainer:
    """Base of every method: `Method(model, layer=None)(x, targets=None) -> Explanation`.

    Subclasses set `needs_gradients` and implement `weigh`. Construction options:

    Args:
        model: any `nn.Module`; `DataParallel` wrappers are looked through.
        layer: a dotted name (``"layer4"``, ``"features.28"``), a module of `model`, a list of
            those (maps are fused), or None for the last layer whose output is (B, C, *spatial).
        output: which part of a tuple/dict/dataclass output holds the class scores: a key, an
            index or a callable (None: a tensor, ``.logits``, ``["out"]`` or the first element).
        reshape: turns a layer's output into (B, C, *spatial). None: (B, N, C) token outputs
            (with a class or other leading tokens) and channels-last (B, h, w, C) outputs are
            recognised from the input's shape.
        fuse: how maps of several layers combine: ``"mean"``, ``"max"`` or ``"product"``.
        smooth: `camkit.Noise(copies, sigma)` averages the maps of noisy copies of each input
            (SmoothGrad), all copies in one batch.
        spatial_input: with several inputs (``x`` a tuple or a dict of tensors, passed to the
            model as ``model(*x)`` or ``model(**x)``), the index or key of the one the maps are
            drawn on; None: the first with spatial dimensions.

    The seam a method plugs into, in the order a call runs (every other step is shared):

    - `weigh(evidence)`: the rule; 24 of the 33 methods have one (the other nine override
      `_explain`, below).
    - `layer_means` and `fits(model, x)`: what `layer` names, and whether the method can
      explain a model at all (with the reason); the command, the evaluation and the app ask it.
    - `_layers_for(inputs)`: the layers to capture when the method chooses its own (FullGrad:
      every bias layer).
    - `_recording(from_input)`: how the forward pass records gradients (guided backprop guides
      the ReLUs; ShapleyCAM keeps the graph for second derivatives; AttnLRP runs its rules).
    - `_differentiate(scores, activations)`: the gradients the rule sees (ShapleyCAM adds the
      Hessian-vector term).
    - `_combine(raw, size)`: one map from the per-layer maps (FullGrad sums them).
    - `_explain(inputs, targets, score)`: the whole call, for a method over a method (Finer-CAM,
      RefineCAM, SESS, Guided Grad-CAM call a base method; the attention methods run their own
      pipeline, `AttentionExplainer`; LRP reads relevance at the first convolution's input).

    Examples:
        A new method is only its rule; here HiResCAM, ``sum_k g * A``:

        >>> import torch, camkit
        >>> class HiRes(camkit.Explainer):
        ...     def weigh(self, evidence):
        ...         return (evidence.gradients * evidence.activations[:, None]).sum(dim=2)
        >>> net = camkit.models.example_net()
        >>> HiRes(net)(torch.rand(2, 3, 16, 16), targets=camkit.TopK(2)).maps.shape
        torch.Size([2, 2, 16, 16])
    """

    name: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = True
    all_layers_must_run: ClassVar[bool] = True  # False: layers the pass skipped are left out
    uses_score: ClassVar[bool] = True  # False: the map ignores the explained score's rule
    layer_means: ClassVar[LayerMeaning] = "feature maps"
    draws_on: ClassVar[str] = "the input"  # with layer_means "own": its layers, in words

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        output: OutputSelector = None,
        reshape: Reshape | None = None,
        fuse: Fuse = "mean",
        smooth: Noise | None = None,
        spatial_input: SpatialInput = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if fuse not in ("mean", "max", "product"):
            raise ValueError(f"fuse must be 'mean', 'max' or 'product', got {fuse!r}")
        self.model = unwrap(model)
        self.output = output
        self.reshape = reshape
        self.fuse: Fuse = fuse
        self.smooth = smooth
        self.spatial_input = spatial_input
        if self.layer_means in ("input", "own") and layer is not None:
            warnings.warn(
                f"{self.name or type(self).__name__} draws on {self.draws_on}, not on a chosen "
                f"layer: the layer given ({_named(layer)}) is ignored",
                CamkitWarning,
                stacklevel=3,
            )
            layer = None
        self._layers = None if layer is None else resolve_layers(self.model, layer)
        if self.layer_means == "input":
            self._layers = [(INPUT, self.model)]
        self._found: dict[int, list[tuple[str, nn.Module]]] = {}  # input rank -> automatic layer
        self._layout = Layout.of(self.model)  # how its token layers lie on the input's grid
        self._unsure: dict[int, str] = {}  # input rank -> what to say of an unsure choice

    def weigh(self, evidence: Evidence) -> Tensor:
        """The method's rule: (rows, K, *spatial) weighted evidence, before ReLU."""
        raise NotImplementedError

    @classmethod
    def fits(cls, model: nn.Module, x: ModelInput) -> str | None:
        """Why this method cannot explain `model` (on inputs like `x`), or None when it can: the
        one answer the command, the evaluation and the app ask before they run a method. The
        check is cheap (at most one forward pass without gradients) and never raises: a model
        that fails on `x` is a reason too. One that passes may still fail on an input, with its
        own error.

        Examples:
            >>> import torch, camkit
            >>> net, x = camkit.models.example_net(), torch.rand(1, 3, 16, 16)
            >>> camkit.GradCAM.fits(net, x) is None
            True
            >>> print(camkit.LeGrad.fits(net, x))  # doctest: +ELLIPSIS
            legrad explains transformers, and no module of Sequential ...
        """
        return None

    def passes(self, channels: int, spatial: Sequence[int]) -> float:
        """About how many passes through the model explaining one input costs (a forward pass
        counts 1, a backward pass 1), for a layer of `channels` channels and an input of shape
        `spatial`: what a job estimates its time from.

        Examples:
            >>> import camkit
            >>> net = camkit.models.example_net()
            >>> camkit.GradCAM(net).passes(64, (96, 96)), camkit.ScoreCAM(net).passes(64, (96, 96))
            (2.0, 65.0)
        """
        copies = 1 if self.smooth is None else self.smooth.copies
        return (2.0 if self.needs_gradients else 1.0) * copies

    def __call__(
        self, x: ModelInput, targets: Targets = None, *, score: Score = "logit"
    ) -> Explanation:
        """Explain `targets` of the batch `x`; see `camkit.explain` for the forms of `targets`.

        `x` is a tensor (B, C, *spatial), or several inputs: a tuple of tensors (``model(*x)``)
        or a dict of keyword tensors (``model(**x)``); the batch size is the first tensor's.

        The model is left as it was: hooks removed, mode, parameters' ``.grad`` and, in training
        mode, every buffer (BatchNorm statistics). All state is per call, so one explainer may be
        called from several threads at once (for a model in eval mode).
        """
        inputs = self._inputs(x, targets)
        if self.model.training:
            warnings.warn(
                "the model is in training mode: dropout and batch statistics make maps random and "
                "couple the inputs of a batch; call model.eval() first (its buffers are restored "
                "after the call)",
                CamkitWarning,
                stacklevel=2,
            )
        with preserved_state(self.model), batched_only(self.model, inputs.spatial.shape):
            result = self._explain(inputs, targets, score)
        # Said once, and only with a map: a call that fails has its own message.
        unsure = self._unsure.pop(inputs.spatial.dim(), None)
        if unsure:
            warnings.warn(unsure, CamkitWarning, stacklevel=2)
        return result

    def _inputs(self, x: ModelInput, targets: Targets) -> Inputs:
        """The checked inputs of a call: a clear error for what no method can explain."""
        plain = not isinstance(targets, ClassScore) or type(targets).rule is ClassScore.rule
        if not self.uses_score and not plain:
            raise ValueError(
                f"{self.name or type(self).__name__} draws maps that do not follow the explained "
                f"score, so {type(targets).__name__}'s score would be ignored: give its classes, "
                "or use a gradient or perturbation method (gradcam, scorecam, ...)"
            )
        if _is_text_model(self.model):
            raise ValueError(
                f"{type(self.model).__name__} is a text model (token ids through an embedding "
                "table): camkit draws maps on images, volumes and signals, not on sequences "
                "of tokens; for what each token contributes use a text attribution method, "
                "e.g. Captum's LayerIntegratedGradients on the embeddings"
            )
        inputs = Inputs.wrap(x, self.spatial_input)
        _check_input(inputs.spatial)
        if inputs.spatial.shape[0] != inputs.batch:
            raise ValueError(
                f"the spatial input has {inputs.spatial.shape[0]} rows but the first input has "
                f"{inputs.batch}: every input needs the same batch size"
            )
        _check_device(self.model, inputs.spatial)
        return inputs

    def _explain(self, inputs: Inputs, targets: Targets, score: Score) -> Explanation:
        x = inputs.spatial
        layers = self._layers_for(inputs)
        batch = x.shape[0]
        copies = 1 if self.smooth is None else self.smooth.copies
        model_rows = self._model_rows(inputs, layers)
        hooked = [(name, module) for name, module in layers if name != INPUT]
        from_input = len(hooked) < len(layers)
        with (
            self._recording(from_input),
            capture(hooked, len(model_rows.spatial), differentiable=self.needs_gradients) as got,
        ):
            outputs = run_model(self.model, model_rows)
            indices, scores, scorer = score_targets(
                outputs,
                targets,
                score=score,
                output=self.output,
                batch_size=batch,
                copies=copies,
                size=x.shape[2:],
            )
            got[INPUT] = model_rows.spatial
            layers = self._layers_that_ran(layers, got)
            activations = [got[name] for name, _ in layers]
            gradients = (
                self._differentiate(scores, activations)
                if self.needs_gradients
                else [None] * len(activations)
            )
        outputs = detached(outputs)
        logits = None if indices is None else select_output(outputs, self.output).float()
        with torch.no_grad():
            raw = []
            for (name, _), a, g in zip(layers, activations, gradients, strict=True):
                evidence = self._evidence(
                    name, a, g, indices, logits, scores, model_rows, scorer, copies
                )
                weighted = self.weigh(evidence)  # (copies * B, K, *spatial)
                raw.append(rectify(weighted.unflatten(0, (copies, batch)).mean(dim=0), name))
            maps = self._combine(raw, x.shape[2:]).float()
        warn_constant(maps, self.name)
        if copies > 1 and isinstance(outputs, Tensor):
            outputs = outputs.unflatten(0, (copies, batch)).mean(dim=0)
        return Explanation(
            maps=maps,
            raw=tuple(raw),
            targets=indices,
            scores=scores.detach().float().unflatten(0, (copies, batch)).mean(dim=0),
            outputs=outputs,
            layers=tuple(name for name, _ in layers),
            method=self.name,
        )

    def _model_rows(self, inputs: Inputs, layers: Sequence[tuple[str, nn.Module]]) -> Inputs:
        """The rows the model runs on: the inputs, or their noisy copies; a leaf that records
        gradients when the input itself is explained."""
        if self.smooth is not None:
            inputs = inputs.repeat(self.smooth.copies, self.smooth.expand(inputs.spatial))
        if any(name == INPUT for name, _ in layers):
            leaf = inputs.spatial.detach().requires_grad_(self.needs_gradients)
            inputs = inputs.map(lambda t: t, leaf)
        return inputs

    def _layers_that_ran(
        self, layers: list[tuple[str, nn.Module]], got: Mapping[str, Tensor]
    ) -> list[tuple[str, nn.Module]]:
        missing = [name for name, _ in layers if name not in got]
        if missing and self.all_layers_must_run:
            raise ValueError(f"layer(s) {missing} did not run in the model's forward pass")
        return [(name, module) for name, module in layers if name in got]

    def _differentiate(self, scores: Tensor, activations: Sequence[Tensor]) -> list[Tensor]:
        """The gradients a rule sees, (rows, K, *A.shape[1:]) per layer: dS/dA here."""
        return differentiate(scores, activations)

    def _combine(self, raw: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        """One normalised map from the rectified per-layer maps: each upsampled to the input's
        size and normalised, then fused."""
        return fuse([normalise(upsample(r, size)) for r in raw], self.fuse)

    def _recording(self, from_input: bool = False) -> contextlib.AbstractContextManager[object]:
        if not self.needs_gradients:
            return torch.inference_mode()
        stack = contextlib.ExitStack()
        if from_input:  # record the whole forward pass, from the input up
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            return stack
        # Works inside the caller's inference_mode / no_grad: capture() switches recording on at
        # the first hooked layer, and leaving no_grad() restores the caller's mode.
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.no_grad())
        return stack

    @property
    def given_layers(self) -> list[tuple[str, nn.Module]] | None:
        """The layers given at construction, resolved to (name, module); the input for a method
        that draws on it (`layer_means` "input"); None when the method chooses (the automatic
        layer, FullGrad's bias layers, the attention methods' blocks)."""
        return self._layers

    def _layers_for(self, inputs: Inputs) -> list[tuple[str, nn.Module]]:
        """The layers a call captures: those given, or the automatic choice."""
        if self._layers is not None:
            return self._layers

        def automatic() -> list[tuple[str, nn.Module]]:
            choice = choose_layer(self.model, inputs, self.output)
            if not choice.sure:
                self._unsure[inputs.spatial.dim()] = choice.warning(self.model)
            return resolve_layers(self.model, list(choice.names))

        return self._once_per_rank(inputs, automatic)

    def _once_per_rank(
        self, inputs: Inputs, find: Callable[[], list[tuple[str, nn.Module]]]
    ) -> list[tuple[str, nn.Module]]:
        """The layers `find()` returns, found once per input rank (a probe pass costs time):
        what a method that chooses its own layers caches them with."""
        rank = inputs.spatial.dim()
        if rank not in self._found:
            self._found[rank] = find()
        return self._found[rank]

    def _spatial(self, name: str, t: Tensor, x: Tensor) -> Tensor:
        if self.reshape is not None:
            return self.reshape(t)
        converted = self._layout.spatial(t, tuple(x.shape[2:]), name)
        return t if converted is None else converted

    def _evidence(
        self,
        name: str,
        activations: Tensor,
        gradients: Tensor | None,
        targets: Tensor | None,
        logits: Tensor | None,
        scores: Tensor,
        model_rows: Inputs,
        scorer: Scorer,
        copies: int,
    ) -> Evidence:
        x = model_rows.spatial
        if name != INPUT:
            activations = self._spatial(name, activations, x)
        if gradients is not None and name != INPUT:
            flat = gradients.flatten(0, 1)
            gradients = self._spatial(name, flat, x).unflatten(0, gradients.shape[:2])
        if activations.dim() != x.dim():
            raise ValueError(
                f"layer {name!r} outputs shape {tuple(activations.shape)}, not (B, C, *spatial) "
                f"with the input's {x.dim() - 2} spatial dimension(s) {tuple(x.shape[2:])}: "
                "choose a layer with spatial output (layer=None picks the last one), or pass "
                "reshape= to turn its output into (B, C, *spatial)"
            )
        # Weigh in float32 at least: squares and cubes of half-precision gradients underflow.
        dtype = torch.promote_types(activations.dtype, torch.float32)
        return Evidence(
            layer=name,
            activations=activations.detach().to(dtype),
            gradients=None if gradients is None else gradients.to(dtype),
            targets=targets,
            logits=logits,
            scores=scores.detach().to(dtype),
            inputs=x,
            scorer=scorer,
            copies=copies,
            model_inputs=model_rows,
        )


def every_target(one: Tensor, evidence: Evidence) -> Tensor:
    """A class-agnostic (rows, *spatial) map, the same for each of the evidence's K targets:
    (rows, K, *spatial)."""
    assert evidence.scores is not None
    return one.unsqueeze(1).expand(-1, evidence.scores.shape[1], *one.shape[1:])


def channel_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """sum_k w_k^c A^k: (B, K, C) weights and (B, C, *spatial) activations -> (B, K, *spatial)."""
    return torch.einsum("bkc,bc...->bk...", weights, activations)
