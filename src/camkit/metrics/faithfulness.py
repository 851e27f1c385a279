"""Faithfulness by random subsets: does a subset's share of the map predict what removing it
costs the model?

- Faithfulness correlation (Bhatt et al., 2020): for `runs` random subsets of `subset` pixels,
  the drop of the target's logit when the subset takes the `fill` value, against the map's sum
  over the subset; the figure is their Pearson correlation (1: the map's mass is exactly what
  the pixels are worth to the model).

- Sensitivity-N (Ancona et al., 2018): the same correlation for several subset sizes n; a
  map that sums like the model's output keeps it near 1 for every n.
- Infidelity (Yeh et al., 2019): the mean squared error between the map's product with a random
  perturbation I and the drop ``f(x) - f(x - I)`` it causes; with ``normalise`` (the paper's
  experiments) the map is first scaled by the factor that fits best, so a map's scale, which
  CAM methods set as they like, does not count.
- Sufficiency (Dasgupta et al., 2022): among the inputs of a batch whose maps lie close, the
  share predicted the same class.

Subsets are of pixels (every channel of a chosen pixel is filled), as in the paper; every run
of every input goes through the model in chunks of `rows_per_pass`. Batched on the inputs'
device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from camkit.metrics._common import Maps, ModelScores, as_maps, as_targets, pearson


def random_subsets(
    batch: int,
    pixels: int,
    runs: int,
    subset: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
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
    # A few inputs' runs at a time (about 1,024 perturbed inputs): memory of those, not of
    # B x runs, and passes as full as ModelScores makes them.
    group = max(1, 1024 // runs)
    for first in range(0, batch, group):
        images = range(first, min(batch, first + group))
        chosen = torch.stack(
            [
                random_subsets(1, pixels, runs, subset, generator, x.device)[0]
                if subsets is None
                else subsets[image].to(x.device)
                for image in images
            ]
        )
        holes = torch.zeros(len(images), runs, pixels, dtype=torch.bool, device=x.device)
        holes.scatter_(2, chosen, True)
        here = x[first : first + len(images)]
        if baseline.dim() == 0:
            fill_ = baseline
        else:
            fill_ = baseline[first : first + len(images)].view(
                len(images), 1, -1, *[1] * (x.dim() - 2)
            )
        perturbed = torch.where(
            holes.view(len(images), runs, 1, *x.shape[2:]), fill_, here[:, None]
        )
        classes_ = classes[first : first + len(images)]
        out = scores(perturbed.flatten(0, 1)).view(len(images), runs, -1)
        drops[first : first + len(images)] = (
            clean[first : first + len(images)]
            - out.gather(2, classes_.view(-1, 1, 1).expand(-1, runs, 1))[..., 0]
        )
        sums[first : first + len(images)] = (
            values[first : first + len(images)]
            .gather(1, chosen.flatten(1))
            .view(len(images), runs, -1)
            .sum(dim=2)
        )
    return pearson(sums, drops).float()


def subset_sizes(pixels: int, count: int = 5, largest: float = 0.8) -> list[int]:
    """`count` subset sizes, log-spaced from 1% of `pixels` (at least 1) to `largest` of
    them, as Ancona et al. sample n (distinct sizes, ascending).

    Examples:
        >>> subset_sizes(9216)
        [92, 275, 824, 2464, 7373]
    """
    if count < 1 or not 0 < largest <= 1:
        raise ValueError(f"count {count} and largest {largest}: give at least 1 and (0, 1]")
    low, high = max(1, round(0.01 * pixels)), max(1, round(largest * pixels))
    spaced = torch.logspace(math.log10(low), math.log10(high), count, dtype=torch.float64)
    return sorted({round(float(n)) for n in spaced})


def sensitivity_n(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    sizes: Sequence[int] = (),
    runs: int = 20,
    fill: float | Tensor = 0.0,
    generator: torch.Generator | None = None,
    rows_per_pass: int = 256,
) -> Tensor:
    """(B, len(sizes)) Sensitivity-N: for each subset size n in `sizes` (default
    `subset_sizes`), the faithfulness correlation over `runs` random subsets of n pixels.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> maps = net[1].weight[0].detach().view(1, 4, 4).expand(2, 4, 4)
        >>> r = sensitivity_n(net, torch.ones(2, 1, 4, 4), maps, torch.zeros(2, dtype=torch.long),
        ...                   sizes=(2, 8), runs=30)
        >>> [round(v, 4) for v in r.flatten().tolist()]  # maps equal to each pixel's worth
        [1.0, 1.0, 1.0, 1.0]
    """
    chosen = list(sizes) or subset_sizes(as_maps(maps, x.shape[2:])[0].numel())
    columns = [
        faithfulness_correlation(
            model,
            x,
            maps,
            targets,
            runs=runs,
            subset=n,
            fill=fill,
            generator=generator,
            rows_per_pass=rows_per_pass,
        )
        for n in chosen
    ]
    return torch.stack(columns, dim=1)


def infidelity(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    samples: int = 10,
    std: float = 0.1,
    noise: Tensor | None = None,
    normalise: bool = True,
    generator: torch.Generator | None = None,
    rows_per_pass: int = 256,
) -> Tensor:
    """(B,) infidelity: ``mean over I of (sum(a * I) - (f(x) - f(x - I)))^2`` with `samples`
    Gaussian perturbations I of `std` on every value (`noise` (samples, B, C, *spatial) gives
    them), f the target's logit and the map a broadcast over channels; `normalise` first
    scales each map by ``beta = mean(sum(a * I) * drop) / mean(sum(a * I)^2)``. Lower is better.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> maps = net[1].weight[0].detach().view(1, 4, 4)  # a linear model's exact worth
        >>> infidelity(net, torch.rand(1, 1, 4, 4), maps, 0, normalise=False).tolist() < [1e-10]
        True
    """
    values = as_maps(maps, x.shape[2:]).float()
    classes = as_targets(targets, maps, len(x))
    if classes is None:
        raise ValueError("infidelity needs the targets (or an Explanation of them)")
    if noise is None:
        if samples < 1:
            raise ValueError(f"samples {samples}: give at least 1")
        noise = std * torch.randn((samples, *x.shape), generator=generator, device=x.device)
    samples = noise.shape[0]
    noise = noise.to(x)
    scores = ModelScores(model, score="logit", rows_per_pass=rows_per_pass)
    clean = scores(x).gather(1, classes[:, None])[:, 0]
    perturbed = scores((x[None] - noise).flatten(0, 1)).view(samples, len(x), -1)
    drops = clean[None] - perturbed.gather(2, classes.expand(samples, -1)[..., None])[..., 0]
    products = (noise * values[None, :, None]).flatten(2).sum(dim=2)  # (samples, B)
    drops, products = drops.double().T, products.double().T  # (B, samples)
    if normalise:
        beta = (products * drops).mean(dim=1) / products.square().mean(dim=1).clamp_min(1e-300)
        products = products * beta[:, None]
    return (products - drops).square().mean(dim=1).float()


def sufficiency(maps: Maps, predicted: Tensor, *, threshold: float = 0.6) -> Tensor:
    """(B,) sufficiency, within a batch: each input's share of the others whose maps lie
    within `threshold` of its own that are predicted its class (0 where none lies that
    close). Distances are standardised Euclidean (each pixel scaled by its variance over the
    batch; a pixel that never varies counts 0), divided by the largest.

    Examples:
        >>> import torch
        >>> maps = torch.tensor([[0.0, 1.0], [0.1, 0.9], [1.0, 0.0], [0.9, 0.2]])
        >>> sufficiency(maps, torch.tensor([0, 0, 1, 0]), threshold=0.3).tolist()
        [1.0, 1.0, 0.0, 0.0]
    """
    flat = as_maps(maps).flatten(1).double()
    if len(flat) < 2:
        return torch.zeros(len(flat), device=flat.device)
    spread = flat.var(dim=0)
    scaled = torch.where(spread > 0, flat / spread.clamp_min(1e-300).sqrt(), 0.0)
    distances = torch.cdist(scaled, scaled)
    distances = distances / distances.amax().clamp_min(1e-300)
    close = (distances <= threshold) & ~torch.eye(len(flat), dtype=torch.bool, device=flat.device)
    same = predicted.to(flat.device)[None] == predicted.to(flat.device)[:, None]
    count = close.sum(dim=1)
    agree = (close & same).sum(dim=1)
    return torch.where(count > 0, agree / count.clamp_min(1), 0.0).float()
