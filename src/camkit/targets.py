"""Step 2 of the pipeline: turn the model's output into the (B, K) scores to explain."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from typing_extensions import override

from camkit.detections import TopDetections, detection_style
from camkit.errors import whole_number


@dataclasses.dataclass(frozen=True)
class TopK:
    """Explain each image's `k` highest-scoring classes, best first.

    Examples:
        >>> import torch, camkit
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                           torch.nn.Linear(8, 10)).eval()
        >>> camkit.GradCAM(net)(torch.rand(2, 3, 16, 16), targets=camkit.TopK(3)).maps.shape
        torch.Size([2, 3, 16, 16])
    """

    k: int

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"TopK needs a positive whole number of classes, got {self.k!r}")


@dataclasses.dataclass(frozen=True)
class Contrast:
    """Why `target` rather than `foil`: explains the score difference ``S_target - S_foil``.

    Each is a class index for every input, or one index per input. Use it as ``targets=``;
    ``output=`` of the method picks the class scores from structured outputs first.

    Examples:
        >>> import torch
        >>> Contrast(2, [0, 1])(torch.tensor([[1.0, 0.0, 5.0], [0.0, 3.0, 4.0]])).tolist()
        [[4.0], [1.0]]
    """

    target: int | Sequence[int] | Tensor
    foil: int | Sequence[int] | Tensor

    def __call__(self, outputs: object) -> Tensor:
        """The class scores in `outputs`."""
        logits = select_output(outputs)

        def pick(classes: int | Sequence[int] | Tensor) -> Tensor:
            return logits.gather(1, _class_indices(classes, logits))

        return pick(self.target) - pick(self.foil)


class ClassScore:
    """A score built on class indices: which classes are explained, and how each is scored.

    A subclass keeps the explained classes (`classes`: None for the predicted class, an int, one
    per input, a (B, K) tensor or `TopK`) and replaces the plain logit with its own `rule`, so
    the explanation still reports the class indices and every method (also the forward-only
    ones, which score masked or ablated copies) uses the same score. `partners` picks, once from
    the explained input's scores, the other classes a rule compares with (Finer-CAM's most
    similar classes); copies are scored against those same classes.

    Examples:
        >>> import torch, camkit
        >>> class Margin(camkit.targets.ClassScore):
        ...     def rule(self, logits, indices, partners):
        ...         return logits.gather(1, indices) - logits.mean(dim=1, keepdim=True)
        >>> net = camkit.models.example_net()
        >>> camkit.GradCAM(net)(torch.rand(1, 3, 16, 16), targets=Margin()).targets.shape
        torch.Size([1, 1])
    """

    classes: Targets = None

    def indices(self, logits: Tensor) -> Tensor:
        """The (B, K) explained classes of the (B, classes) scores."""
        return _class_indices(self.classes, logits)

    def partners(self, logits: Tensor, indices: Tensor) -> Tensor:
        """(B, K, J) classes each explained class is compared with; none by default."""
        return indices.new_zeros(*indices.shape, 0)

    def rule(self, logits: Tensor, indices: Tensor, partners: Tensor) -> Tensor:
        """(rows, K) scores of classes `indices` (rows, K) given the rows' (rows, classes)
        scores and `partners` (rows, K, J)."""
        return logits.gather(1, indices)


@dataclasses.dataclass(frozen=True)
class ReST(ClassScore):
    """The ReST target (Cai 2025, ShapleyCAM): ``S_c - CrossEntropy(S, c) = S_c + log p_c``.

    Mixes the logit with the softmax probability: the logit alone ignores the other classes,
    the probability saturates. Equals pytorch-grad-cam's ``ClassifierOutputReST``.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0]])
        >>> round(ReST().rule(logits, torch.tensor([[0]]), None).item(), 4)
        1.8731
    """

    classes: Targets = None

    @override
    def rule(self, logits: Tensor, indices: Tensor, partners: Tensor | None) -> Tensor:
        return logits.gather(1, indices) + logits.log_softmax(dim=1).gather(1, indices)


@dataclasses.dataclass(frozen=True)
class Binary(ClassScore):
    """A classifier with one logit: class 1 is the logit, class 0 its negative.

    `classes` None explains the predicted class (1 where the logit is positive). The model's
    output must be (B, 1). Equals pytorch-grad-cam's ``BinaryClassifierOutputTarget``.

    Examples:
        >>> import torch
        >>> target = Binary()
        >>> logits = torch.tensor([[2.0], [-1.0]])
        >>> indices = target.indices(logits)
        >>> indices.tolist(), target.rule(logits, indices, None).tolist()
        ([[1], [0]], [[2.0], [1.0]])
    """

    classes: Targets = None

    @override
    def indices(self, logits: Tensor) -> Tensor:
        if logits.shape[1] != 1:
            raise ValueError(
                f"Binary explains a model with one logit, output (B, 1); this one has "
                f"{logits.shape[1]} scores: use class indices (or Contrast) instead"
            )
        if self.classes is None:
            return (logits.detach() > 0).long()
        doubled = torch.cat([-logits, logits], dim=1)  # validates 0 / 1 like two classes
        return _class_indices(self.classes, doubled)

    @override
    def rule(self, logits: Tensor, indices: Tensor, partners: Tensor | None) -> Tensor:
        return torch.where(indices == 1, logits[:, :1], -logits[:, :1])


@dataclasses.dataclass(frozen=True)
class Finer(ClassScore):
    """Finer-CAM's score (Zhang et al. CVPR 2025): the class against its most similar classes.

    ``S_c - alpha * mean_j S_j`` over the `compare` classes whose scores are closest to S_c
    (chosen once from the explained input's scores), so the map shows what tells c apart from
    the classes it is confused with. ``weighting="softmax"`` is pytorch-grad-cam's variant:
    ``sum_j p_j (S_c - alpha S_j) / sum_j p_j`` with p the softmax probabilities.

    Examples:
        >>> import torch
        >>> target = Finer(compare=1, alpha=1.0)
        >>> logits = torch.tensor([[5.0, 4.0, 0.0]])
        >>> target.rule(logits, torch.tensor([[0]]), target.partners(logits, torch.tensor([[0]])))
        tensor([[1.]])
    """

    classes: Targets = None
    compare: int = 3
    alpha: float = 0.6
    weighting: Literal["mean", "softmax"] = "mean"

    def __post_init__(self) -> None:
        whole_number("compare", self.compare, 1000, "classes compared with each target")
        if self.alpha < 0:
            raise ValueError(f"alpha must be at least 0, got {self.alpha}")
        if self.weighting not in ("mean", "softmax"):
            raise ValueError(f"weighting must be 'mean' or 'softmax', got {self.weighting!r}")

    @override
    def partners(self, logits: Tensor, indices: Tensor) -> Tensor:
        classes = logits.shape[1]
        if classes < 2:
            raise ValueError("Finer-CAM compares classes: the model has only one score")
        distance = (logits.detach()[:, None, :] - logits.gather(1, indices)[:, :, None]).abs()
        distance.scatter_(2, indices[:, :, None], torch.inf)  # never the class itself
        return distance.topk(min(self.compare, classes - 1), dim=2, largest=False).indices

    @override
    def rule(self, logits: Tensor, indices: Tensor, partners: Tensor) -> Tensor:
        own = logits.gather(1, indices)  # (rows, K)
        others = logits.gather(1, partners.flatten(1)).unflatten(1, partners.shape[1:])
        if self.weighting == "mean":
            contrast: Tensor = own - self.alpha * others.mean(dim=2)
            return contrast
        p = logits.softmax(dim=1).gather(1, partners.flatten(1)).unflatten(1, partners.shape[1:])
        weighted = (p * (own[:, :, None] - self.alpha * others)).sum(dim=2)
        averaged: Tensor = weighted / (p.sum(dim=2) + 1e-9)
        return averaged


@dataclasses.dataclass(frozen=True)
class Similarity:
    """Explain an embedding model: cosine similarity of its output to a reference embedding.

    `reference` is one (D,) vector for every input, or (B, D), one per input (another image's
    embedding, ``model(other)``, for re-identification and retrieval). Use it as ``targets=``;
    the output (selected with ``output=``) is flattened per input.

    Examples:
        >>> import torch
        >>> Similarity(torch.tensor([1.0, 0.0]))(torch.tensor([[2.0, 0.0], [0.0, 3.0]])).tolist()
        [[1.0], [0.0]]
    """

    reference: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.reference, Tensor) or self.reference.dim() not in (1, 2):
            raise TypeError("reference must be a (D,) or (B, D) tensor of an embedding")

    def __call__(self, outputs: object, rows: Tensor | None = None) -> Tensor:
        """(rows, 1) cosine similarities of the output rows to the reference."""
        embedding = select_output(outputs).flatten(1)
        reference = self.reference.detach().to(embedding.device, embedding.dtype)
        if reference.dim() == 2:
            if rows is None:
                rows = torch.arange(embedding.shape[0], device=embedding.device)
            if reference.shape[0] <= int(rows.max()):
                raise ValueError(
                    f"{reference.shape[0]} reference embeddings for a batch of "
                    f"{int(rows.max()) + 1} inputs: give one (D,) or one per input (B, D)"
                )
            reference = reference[rows.to(reference.device)]
        if reference.shape[-1] != embedding.shape[1]:
            raise ValueError(
                f"the reference has {reference.shape[-1]} values but the model's output has "
                f"{embedding.shape[1]} per input: compare embeddings of one model"
            )
        return torch.nn.functional.cosine_similarity(embedding, reference.expand_as(embedding))[
            :, None
        ]


# f(outputs) or f(outputs, rows) -> (B,) or (B, K) scores (see `takes_rows`).
ScoreFunction = Callable[..., Tensor]
Targets = int | Sequence[int] | Tensor | TopK | TopDetections | ClassScore | ScoreFunction | None
OutputSelector = str | int | Callable[[Any], Tensor] | None
Score = Literal["logit", "softmax"]


def select_output(outputs: object, selector: OutputSelector = None) -> Tensor:
    """The tensor of class scores inside a model's output.

    `selector` is a key (dicts), an index (tuples) or a callable; None picks a plain tensor, the
    ``logits`` field or key (HuggingFace style), the ``"out"`` key (torchvision segmentation), or
    the first element of a tuple (the first of a nested tuple; the second element where the
    first is its softmax: a ``(probabilities, logits)`` pair gives the logits).

    Examples:
        >>> import torch
        >>> select_output({"logits": torch.zeros(2, 5), "aux": 0}).shape
        torch.Size([2, 5])
    """
    if callable(selector):
        chosen = selector(outputs)
    elif selector is not None:
        chosen = outputs[selector]  # type: ignore[index]  # a mapping or sequence, by the selector
    elif isinstance(outputs, Tensor):
        chosen = outputs
    elif isinstance(outputs, Mapping):
        key = next((k for k in ("logits", "out") if k in outputs), None)
        if key is None:
            raise TypeError(
                f"the model returns a mapping with keys {list(outputs)}; say which holds the class "
                "scores with output='key' (or output=callable)"
            )
        chosen = outputs[key]
    elif isinstance(getattr(outputs, "logits", None), Tensor):
        chosen = getattr(outputs, "logits")  # noqa: B009 - an attribute of any output class
    elif isinstance(outputs, (tuple, list)) and outputs:
        chosen = _first(outputs)
    else:
        raise TypeError(
            f"cannot find the class scores in a model output of type {type(outputs).__name__}; "
            "pass output=callable that returns the (B, classes) tensor"
        )
    if not isinstance(chosen, Tensor):
        raise TypeError(
            f"the selected model output is {type(chosen).__name__}, not a tensor of class scores; "
            "pass output=... to pick the (B, classes) tensor"
        )
    return chosen


def _first(outputs: Sequence[Any]) -> Any:  # noqa: ANN401 - an element of the model's output
    """The first element of a tuple output (the first of a nested one, as ultralytics' segment
    head returns ``((boxes, protos), extras)``), or the logits where the first element is
    their softmax (``(probabilities, logits)``, as ultralytics' classifiers return)."""
    first = outputs[0]
    while isinstance(first, (tuple, list)) and first:
        first = first[0]
    second = outputs[1] if len(outputs) > 1 else None
    if isinstance(first, Tensor) and isinstance(second, Tensor) and _is_softmax(first, second):
        return second
    return first


def _is_softmax(probabilities: Tensor, logits: Tensor) -> bool:
    if probabilities.shape != logits.shape or logits.dim() < 2 or logits.shape[1] < 2:
        return False
    if not (probabilities.is_floating_point() and logits.is_floating_point()):
        return False
    expected = logits.detach().float().softmax(dim=1)
    return bool(torch.allclose(probabilities.detach().float(), expected, atol=1e-4, rtol=1e-3))


def _class_indices(targets: Targets, logits: Tensor) -> Tensor:
    """(B, K) long tensor of class indices on the logits' device, validated."""
    batch, classes = logits.shape
    if isinstance(targets, TopK):
        if targets.k > classes:
            raise ValueError(
                f"TopK({targets.k}) asks for more classes than the {classes} there are"
            )
        return logits.detach().topk(targets.k, dim=1).indices
    if targets is None:
        return logits.detach().argmax(dim=1, keepdim=True)
    if isinstance(targets, bool):
        raise TypeError("targets=True/False is ambiguous: give a class index")
    if isinstance(targets, int):
        indices = torch.full((batch, 1), targets, dtype=torch.long, device=logits.device)
    else:
        indices = _as_index_tensor(targets, logits.device)
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise TypeError(
                f"class targets must be whole numbers, got a {indices.dtype} tensor; "
                "use a LongTensor of class indices"
            )
        if indices.dim() == 1:
            indices = indices[:, None]
        if indices.dim() != 2 or indices.shape[0] != batch:
            raise ValueError(
                f"got targets of shape {tuple(indices.shape)} for a batch of {batch} input(s): "
                f"give one class per input ({batch} ints), a single int for all, a ({batch}, K) "
                "tensor for K classes per input, or camkit.TopK(k)"
            )
        indices = indices.long()
    bad = (indices < 0) | (indices >= classes)
    if bool(bad.any()):
        raise ValueError(
            f"target class {int(indices[bad][0])} is out of range: the model has {classes} "
            f"classes, so valid targets are 0 to {classes - 1}"
        )
    return indices


def _as_index_tensor(targets: object, device: torch.device) -> Tensor:
    forms = (
        "None, an int, one int per input, a (B, K) LongTensor, camkit.TopK(k), or a function "
        "of the outputs"
    )
    if not isinstance(targets, (Tensor, Sequence)) or isinstance(targets, (str, bytes)):
        raise TypeError(f"targets must be {forms}; got {type(targets).__name__}")
    try:
        return torch.as_tensor(targets, device=device)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise TypeError(f"targets must be {forms}; got {targets!r:.80}") from None


def _checked_scores(scores: object, rows: int) -> Tensor:
    if not isinstance(scores, Tensor):
        raise TypeError(f"the target function returned {type(scores).__name__}, not a tensor")
    if scores.dim() == 1:
        scores = scores[:, None]
    if scores.dim() != 2 or scores.shape[0] != rows:
        raise ValueError(
            f"the target function returned shape {tuple(scores.shape)}; expected "
            f"({rows},) or ({rows}, K): one score (or K scores) per input"
        )
    return scores


def _probabilities(outputs: object) -> Tensor:
    """Softmax over the class axis (1) of tensor outputs, for ``score="softmax"`` with a target
    function: ``Contrast(a, b)`` then explains ``p_a - p_b``, a region function per-pixel
    probabilities. Structured outputs have no class axis to normalise: that is an error, not a
    silent logit."""
    if not isinstance(outputs, Tensor) or outputs.dim() < 2:
        got = f"shape {tuple(outputs.shape)}" if isinstance(outputs, Tensor) else "a "
        got += "" if isinstance(outputs, Tensor) else type(outputs).__name__
        raise ValueError(
            "score='softmax' with a target function needs tensor outputs with classes on axis 1 "
            f"(got {got}); pick the tensor with output=..., or apply the softmax inside the "
            "target function"
        )
    return outputs.softmax(dim=1)


def takes_rows(function: Callable[..., Any]) -> bool:
    """Whether a target function takes a second argument, the image index of each output row.

    Examples:
        >>> takes_rows(lambda outputs: outputs), takes_rows(lambda outputs, rows: outputs)
        (False, True)
    """
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: one argument
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def takes_size(function: Callable[..., Any]) -> bool:
    """Whether a target function takes the keyword ``size``: the explained input's spatial
    size, for outputs relative to it (DETR's boxes).

    Examples:
        >>> takes_size(lambda outputs, rows, *, size=None: outputs), takes_size(len)
        (True, False)
    """
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    found = parameters.get("size")
    return found is not None and found.kind in (found.KEYWORD_ONLY, found.POSITIONAL_OR_KEYWORD)


@dataclasses.dataclass(frozen=True)
class Scorer:
    """Scores the explained targets on the outputs of any batch built from the explained rows.

    Forward-only methods (Score-CAM, Ablation-CAM) and noise smoothing run the model on masked,
    ablated or noisy copies of the rows and score each copy for its own image's targets with
    this. A target function that takes two arguments, ``f(outputs, rows)``, gets `rows`: the
    image (0 to B-1) each output row belongs to, so per-image targets (a mask or boxes per
    image) follow the copies.
    """

    function: ScoreFunction | None
    indices: Tensor | None  # (rows, K) class indices of each explained row
    score: Score
    output: OutputSelector
    batch: int  # the number of images; explained row r belongs to image r % batch
    rule: ClassScore | None = None  # how class indices are scored (None: the logit)
    partners: Tensor | None = None  # (rows, K, J) classes the rule compares with
    size: tuple[int, ...] | None = None  # the input's spatial size, for `takes_size` functions

    def __call__(self, outputs: object, rows: Tensor) -> Tensor:
        """(M, K) scores from the outputs of M inputs, input i derived from row ``rows[i]``."""
        if self.function is not None:
            chosen = outputs if self.output is None else select_output(outputs, self.output)
            if self.score == "softmax":
                chosen = _probabilities(chosen)
            extra = {"size": self.size} if takes_size(self.function) else {}
            if takes_rows(self.function):
                scores = self.function(chosen, rows % self.batch, **extra)
            else:
                scores = self.function(chosen, **extra)
            return _checked_scores(scores, len(rows))
        assert self.indices is not None
        logits = select_output(outputs, self.output)
        if self.score == "softmax":
            logits = logits.softmax(dim=1)
        if self.rule is None:
            return logits.gather(1, self.indices[rows])
        assert self.partners is not None
        return self.rule.rule(logits, self.indices[rows], self.partners[rows])


def score_targets(
    outputs: object,
    targets: Targets,
    *,
    score: Score = "logit",
    output: OutputSelector = None,
    batch_size: int,
    copies: int = 1,
    size: Sequence[int] | None = None,
) -> tuple[Tensor | None, Tensor, Scorer]:
    """Class indices (B, K) (None for a score function), scores (copies * B, K), and a `Scorer`.

    With ``copies > 1`` the outputs are those of `copies` stacked copies of the batch (noisy
    copies, for smoothing); predicted and top-k classes come from the copies' mean scores, so every
    copy explains the same classes. Scores keep their graph so they can be differentiated.

    Examples:
        >>> import torch
        >>> indices, scores, _ = score_targets(torch.tensor([[0.0, 2.0, 1.0]]), None, batch_size=1)
        >>> indices.tolist(), scores.tolist()
        ([[1]], [[2.0]])
    """
    if score not in ("logit", "softmax"):
        raise ValueError(f"score must be 'logit' or 'softmax', got {score!r}")
    rows = batch_size * copies
    if targets is None and output is None and detection_style(outputs) is not None:
        targets = TopDetections()  # a detector's "predicted class": its top detection
    if isinstance(targets, TopDetections):  # chosen once, on the first copy's outputs
        targets = targets.choose(outputs, batch_size, size)
    if callable(targets) and not isinstance(targets, (Tensor, TopK)):
        spatial = None if size is None else tuple(size)
        scorer = Scorer(targets, None, score, output, batch_size, size=spatial)
        return None, scorer(outputs, torch.arange(rows)), scorer
    if output is None and (style := detection_style(outputs)) is not None:
        raise ValueError(
            f"the model is a detector (its output reads as {style} detections), so there are no "
            "class scores to explain: explain a detection with targets=camkit.Box(boxes, "
            "labels) or camkit.TopDetections(k), or pass targets=f(outputs) -> (B, K) scores"
        )
    logits = select_output(outputs, output)
    if logits.dim() != 2 or logits.shape[0] != rows:
        raise ValueError(
            f"class targets need the model's scores as (B, classes) = ({rows}, N), but the "
            f"output has shape {tuple(logits.shape)}; for segmentation or detection outputs pass "
            "targets=callable(outputs) -> (B, K) scores; a single input needs its batch "
            "dimension: x.unsqueeze(0)"
        )
    mean_logits = logits.detach().unflatten(0, (copies, batch_size)).mean(0)
    rule = targets if isinstance(targets, ClassScore) else None
    indices = _class_indices(targets, mean_logits) if rule is None else rule.indices(mean_logits)
    row_indices = indices.repeat(copies, 1)
    partners = None if rule is None else rule.partners(mean_logits, indices).repeat(copies, 1, 1)
    scorer = Scorer(None, row_indices, score, output, batch_size, rule, partners)
    return indices, scorer(outputs, torch.arange(rows, device=indices.device)), scorer
