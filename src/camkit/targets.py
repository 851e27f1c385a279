"""Step 2 of the pipeline: turn the model's output into the (B, K) scores to explain."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor


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


# f(outputs) or f(outputs, rows) -> (B,) or (B, K) scores (see `takes_rows`).
ScoreFunction = Callable[..., Tensor]
Targets = int | Sequence[int] | Tensor | TopK | ScoreFunction | None
OutputSelector = str | int | Callable[[Any], Tensor] | None
Score = Literal["logit", "softmax"]


def select_output(outputs: object, selector: OutputSelector = None) -> Tensor:
    """The tensor of class scores inside a model's output.

    `selector` is a key (dicts), an index (tuples) or a callable; None picks a plain tensor, the
    ``logits`` field or key (HuggingFace style), the ``"out"`` key (torchvision segmentation), or
    the first element of a tuple.

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
        chosen = outputs[0]
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

    def __call__(self, outputs: object, rows: Tensor) -> Tensor:
        """(M, K) scores from the outputs of M inputs, input i derived from row ``rows[i]``."""
        if self.function is not None:
            chosen = outputs if self.output is None else select_output(outputs, self.output)
            if self.score == "softmax":
                chosen = _probabilities(chosen)
            if takes_rows(self.function):
                scores = self.function(chosen, rows % self.batch)
            else:
                scores = self.function(chosen)
            return _checked_scores(scores, len(rows))
        assert self.indices is not None
        logits = select_output(outputs, self.output)
        if self.score == "softmax":
            logits = logits.softmax(dim=1)
        return logits.gather(1, self.indices[rows])


def score_targets(
    outputs: object,
    targets: Targets,
    *,
    score: Score = "logit",
    output: OutputSelector = None,
    batch_size: int,
    copies: int = 1,
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
    if callable(targets) and not isinstance(targets, (Tensor, TopK)):
        scorer = Scorer(targets, None, score, output, batch_size)
        return None, scorer(outputs, torch.arange(rows)), scorer
    logits = select_output(outputs, output)
    if logits.dim() != 2 or logits.shape[0] != rows:
        raise ValueError(
            f"class targets need the model's scores as (B, classes) = ({rows}, N), but the "
            f"output has shape {tuple(logits.shape)}; for segmentation or detection outputs pass "
            "targets=callable(outputs) -> (B, K) scores; a single input needs its batch "
            "dimension: x.unsqueeze(0)"
        )
    indices = _class_indices(targets, logits.detach().unflatten(0, (copies, batch_size)).mean(0))
    row_indices = indices.repeat(copies, 1)
    scorer = Scorer(None, row_indices, score, output, batch_size)
    return indices, scorer(outputs, torch.arange(rows, device=indices.device)), scorer
