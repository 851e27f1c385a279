"""Faithfulness by random subsets: does a subset's share of the map predict what removing it
costs the model?

- Faithfulness correlation (Bhatt et al., 2020): for `runs` random subsets of `subset` pixels,
  the drop of the target's logit when the subset takes the `fill` value, against the map's sum
  over the subset; the figure is their Pearson correlation (1: the map's mass is exactly what
  the pixels are worth to the model).

Subsets are of pixels (every channel of a chosen pixel is filled), as in the paper; every run
of every input goes through the model in chunks of `rows_per_pass`. Batched on the inputs'
device.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camkit.metrics._common import Maps, ModelScores, as_maps, as_targets, pearson


def random_subsets(
    batch: int, pixels: int, runs: int, subset: int, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:  # fmt: skip
    """(batch, runs, subset) pixel indices, each row `subset` distinct pixels of `pixels`.

    Examples:
        >>> seeded = torch.Generator().manual_seed(0)
        >>> subsets = random_subsets(2, 10, runs=3, subset=4, generator=seeded)
        >>> subsets.shape, bool((subsets.sort(dim=2).values.diff(dim=2) > 0).all())
        (torch.Size([2, 3, 4]), True)
    """
    if not 1 <= subset <= pixels:
        raise ValueError(f"subset {subset}: give 1 to {pixels} pixels (the input's)")
    keys = torch.rand(batch, runs, pixels, generator=generator, device=device)
    return keys.topk(subset, dim=2).indices


def faithfulness_correlation(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    runs: int = 100,
    subset: int = 224,
    fill: float | Tensor = 0.0,
    subsets: Tensor | None = None,
    generator: torch.Generator | None = None,
    rows_per_pass: int = 256,
) -> Tensor:
    """(B,) Pearson correlation, over `runs` random subsets of `subset` pixels, between the map's
    sum over a subset and the drop of the target's logit when the subset takes `fill` (a
    number, or a (B, C) or (C,) value per channel). `subsets` (B, runs, k) gives the pixels
    instead of drawing them; a map constant over every subset gives 0.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> x = torch.rand(2, 1, 4, 4)
        >>> maps = net[1].weight[0].detach().clamp_min(0).view(1, 4, 4).expand(2, 4, 4)
        >>> r = faithfulness_correlation(net, x, maps, torch.zeros(2, dtype=torch.long), runs=20,
        ...                              subset=4, generator=torch.Generator().manual_seed(0))
        >>> r.shape
        torch.Size([2])
    """
    values = as_maps(maps, x.shape[2:]).flatten(1).float()  # (B, P)
    classes = as_targets(targets, maps, len(x))
    if classes is None:
        raise ValueError("faithfulness_correlation needs the targets (or an Explanation of them)")
    batch, pixels = values.shape
    runs = runs if subsets is None else subsets.shape[1]
    scores = ModelScores(model, score="logit", rows_per_pass=rows_per_pass)
    clean = scores(x).gather(1, classes[:, None])  # (B, 1)
    baseline = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    if baseline.dim() == 1:  # one value per channel, the same for every input
        baseline = baseline.expand(batch, -1)
    drops = torch.empty(batch, runs, device=x.device)
    sums = torch.empty(batch, runs, device=x.device)
    # One input's runs at a time: memory of `runs` inputs (and their draws), not B x runs.
    for image in range(batch):
        chosen = (random_subsets(1, pixels, runs, subset, generator, x.device)[0]
                  if subsets is None else subsets[image].to(x.device))  # fmt: skip
        holes = torch.zeros(runs, pixels, dtype=torch.bool, device=x.device)
        holes.scatter_(1, chosen, True)
        here = baseline if baseline.dim() == 0 else baseline[image].view(-1, *[1] * (x.dim() - 2))
        perturbed = torch.where(holes.view(runs, 1, *x.shape[2:]), here, x[image])
        drops[image] = clean[image] - scores(perturbed)[:, classes[image]]
        sums[image] = values[image][chosen].sum(dim=1)
    return pearson(sums, drops).float()
