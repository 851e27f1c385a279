"""What every metric needs: maps and targets from an `Explanation` or tensors, batched scoring."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from camkit import seeds
from camkit.explanation import Explanation
from camkit.targets import OutputSelector, Score, select_output

Maps = Tensor | Explanation


def as_maps(maps: Maps, spatial: Sequence[int] | None = None) -> Tensor:
    """(B, *spatial) float maps from an Explanation (one target) or a tensor.

    A tensor may carry a singleton target axis, (B, 1, *spatial); `spatial`, when known (the
    input's), is checked so a map of the wrong size is an error, never a silent resize.
    """
    if isinstance(maps, Explanation):
        if maps.maps.shape[1] != 1:
            raise ValueError(
                f"the explanation has {maps.maps.shape[1]} targets per input; metrics take one: "
                "pass explanation.maps[:, k] for target k"
            )
        maps = maps.maps[:, 0]
    if not isinstance(maps, Tensor):
        raise TypeError(f"maps must be a tensor or an Explanation, not {type(maps).__name__}")
    if spatial is not None:
        spatial = tuple(spatial)
        if maps.dim() == len(spatial) + 2 and maps.shape[1] == 1:
            maps = maps[:, 0]
        if tuple(maps.shape[1:]) != spatial:
            raise ValueError(
                f"maps of shape {tuple(maps.shape)} do not match the inputs' spatial size "
                f"{spatial}: give (B, {', '.join(map(str, spatial))}) maps at the input's size "
                "(Explanation.maps are)"
            )
    if not maps.is_floating_point():
        maps = maps.float()
    return maps


def as_targets(
    targets: Tensor | Sequence[int] | int | None, maps: Maps, rows: int
) -> Tensor | None:
    """(B,) class indices: given, else the explanation's, else None (the caller decides)."""
    if targets is None and isinstance(maps, Explanation) and maps.targets is not None:
        return maps.targets[:, 0]
    if targets is None:
        return None
    device = maps.maps.device if isinstance(maps, Explanation) else maps.device
    chosen = torch.as_tensor(targets, dtype=torch.long, device=device).reshape(-1)
    if chosen.numel() == 1:
        chosen = chosen.expand(rows)
    if chosen.numel() != rows:
        raise ValueError(f"{chosen.numel()} targets for {rows} inputs: give one class per input")
    return chosen


CPU_VALUES = 2_000_000
"""Input values per forward pass on a CPU (64 images of 3 x 96 x 96): larger passes leave the
cache and run slower per image (measured on the bundled model, 2 cores: 3.0 ms an image at
64, 4.4 ms at 256)."""


def rows_per_call(inputs: Tensor, wanted: int) -> int:
    """How many inputs like `inputs[0]` to send through a model at once: `wanted`, and on a
    CPU no more than `CPU_VALUES` input values (explanations too run slower per input past
    that: Grad-CAM on the bundled model, 5.3 ms an image at 64, 6.4 ms at 256).

    Examples:
        >>> import torch
        >>> rows_per_call(torch.zeros(1, 3, 96, 96), 256)
        72
    """
    if inputs.device.type != "cpu":
        return max(1, wanted)
    return max(1, min(wanted, CPU_VALUES // max(1, inputs[0].numel())))


class ModelScores:
    """Class scores of a model for batches of inputs, in chunks, without recording a graph.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> ModelScores(net, rows_per_pass=2)(torch.rand(5, 1, 2, 2)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        model: nn.Module | Callable[[Tensor], object],
        *,
        score: Score = "softmax",
        output: OutputSelector = None,
        rows_per_pass: int = 256,
    ) -> None:
        if score not in ("softmax", "logit"):
            raise ValueError(f"score must be 'softmax' or 'logit', not {score!r}")
        if rows_per_pass < 1:
            raise ValueError(f"rows_per_pass must be at least 1, not {rows_per_pass}")
        self.model, self.score, self.output = model, score, output
        self.rows_per_pass = rows_per_pass
        self.channels_last = True  # until the model refuses it (a .view() of a conv's output)

    def __call__(self, inputs: Tensor) -> Tensor:
        """(N, classes) probabilities (or logits) for (N, C, *spatial) inputs."""
        return torch.cat(
            [self.chunk(inputs[i : i + self.rows_per_pass]) for i in self.starts(inputs)]
        )

    def starts(self, inputs: Tensor) -> range:
        return range(0, inputs.shape[0], self.rows_per_pass)

    @torch.no_grad()
    def chunk(self, inputs: Tensor) -> Tensor:
        """(N, classes) scores of one chunk of inputs.

        On a CPU the model sees at most `CPU_VALUES` input values at a time, and images in
        channels-last: the convolutions then take oneDNN's fast path, with their activations
        near the cache (the bundled model's passes 2x faster than 256 images in the default
        layout; the same scores within float32 rounding). A model that refuses that layout
        gets its inputs as they were."""
        if inputs.device.type != "cpu":
            return self._scores(inputs)
        rows = max(1, CPU_VALUES // max(1, inputs[0].numel()))
        return torch.cat([self._on_cpu(inputs[i : i + rows]) for i in range(0, len(inputs), rows)])

    def _on_cpu(self, inputs: Tensor) -> Tensor:
        if self.channels_last and inputs.dim() == 4:
            try:
                return self._scores(inputs.contiguous(memory_format=torch.channels_last))
            except RuntimeError:
                self.channels_last = False  # then the error, if any, comes from the model
        return self._scores(inputs)

    def _scores(self, inputs: Tensor) -> Tensor:
        logits = select_output(self.model(inputs), self.output).detach()
        if logits.dim() != 2:
            raise ValueError(
                f"the model's class scores have shape {tuple(logits.shape)}; metrics need "
                "(B, classes): pass output=callable to pick them"
            )
        return logits.float().softmax(dim=1) if self.score == "softmax" else logits.float()


def like_input(value: float | Tensor, x: Tensor) -> Tensor:
    """A scalar, a (C,) per-channel value or a tensor, shaped to broadcast against x.

    Examples:
        >>> import torch
        >>> like_input(torch.tensor([0.1, 0.2, 0.3]), torch.zeros(2, 3, 4, 4)).shape
        torch.Size([1, 3, 1, 1])
    """
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if value.dim() == 1 and x.dim() > 2:
        if value.numel() != x.shape[1]:
            raise ValueError(
                f"a per-channel value has {value.numel()} entries for inputs with {x.shape[1]} "
                "channels"
            )
        value = value.view(1, -1, *[1] * (x.dim() - 2))
    return value


def pick(scores: Tensor, targets: Tensor) -> Tensor:
    """scores[i, targets[i]] for every row."""
    return scores.gather(1, targets.to(scores.device)[:, None])[:, 0]


def relevance_ranks(maps: Tensor, seed: int | None = 0) -> Tensor:
    """(B, P) rank of each pixel by relevance, 0 = most relevant.

    Equal values (the zeros a ReLU leaves, or flat regions) are ordered by a seeded random
    permutation, so removing "the least relevant pixels" does not cut away the top rows of the
    image first; ``seed=None`` keeps pixel order instead.

    Examples:
        >>> import torch
        >>> relevance_ranks(torch.tensor([[0.2, 0.9, 0.5]])).tolist()
        [[2, 0, 1]]
    """
    flat = maps.flatten(1)
    if seed is None:
        order = flat.argsort(dim=1, descending=True, stable=True)
    else:
        generator = seeds.generator(seed, flat.device)
        shuffle = torch.randperm(flat.shape[1], generator=generator, device=flat.device)
        order = shuffle[flat[:, shuffle].argsort(dim=1, descending=True, stable=True)]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of (B, n) `a` and `b` (in float64); 0 where either row is
    constant (it has no variation to share).

    Examples:
        >>> import torch
        >>> pearson(torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]),
        ...         torch.tensor([[2.0, 4.0, 7.0], [3.0, 1.0, 2.0]])).tolist()
        [0.9933992677987828, 0.0]
    """
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    spread = (a.square().sum(dim=1) * b.square().sum(dim=1)).sqrt()
    r = (a * b).sum(dim=1) / spread.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(spread > 0, r, 0.0)
