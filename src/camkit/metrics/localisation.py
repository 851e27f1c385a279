"""Does the map point at the object? Pointing game, energy pointing game, box localisation.

- Pointing game (Zhang et al., 2016): a hit when the map's maximum lies within `tolerance`
  pixels of the object; accuracy = hits / all, averaged over classes.
- Energy pointing game (Wang et al., Score-CAM, 2020): the share of the map's mass in the box.
- Weakly supervised localisation (Zhou et al., CAM, 2016): keep the pixels above a share of the
  map's maximum, box the largest connected component (8-connected), correct when its IoU with the
  ground-truth box is at least 0.5. MaxBoxAcc (Choe et al., 2020) is the best accuracy over a
  sweep of thresholds.

Boxes are (x0, y0, x1, y1) in pixels, the ends exclusive. Everything runs batched on the maps'
device: connected components by label propagation along whole rows and columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from camkit.boxes import box_iou
from camkit.metrics._common import Maps, as_maps


def boxes_to_masks(boxes: Tensor, size: Sequence[int]) -> Tensor:
    """(B, H, W) bool masks of (B, 4) boxes (x0, y0, x1, y1; ends exclusive).

    Examples:
        >>> import torch
        >>> boxes_to_masks(torch.tensor([[1, 0, 3, 1]]), (2, 4)).int().tolist()
        [[[0, 1, 1, 0], [0, 0, 0, 0]]]
    """
    height, width = size
    ys = torch.arange(height, device=boxes.device)[None, :, None]
    xs = torch.arange(width, device=boxes.device)[None, None, :]
    x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """(B, 4) tight boxes around (B, H, W) bool masks; an empty mask gives (0, 0, 0, 0).

    Examples:
        >>> import torch
        >>> mask = torch.zeros(1, 4, 5, dtype=torch.bool)
        >>> mask[0, 1:3, 2:4] = True
        >>> masks_to_boxes(mask).tolist()
        [[2, 1, 4, 3]]
    """
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (B, H), (B, W)

    def span(present: Tensor) -> tuple[Tensor, Tensor]:
        index = torch.arange(present.shape[1], device=present.device).expand_as(present)
        first = torch.where(present, index, present.shape[1]).amin(dim=1)
        last = torch.where(present, index + 1, 0).amax(dim=1)
        empty = ~present.any(dim=1)
        return first.masked_fill(empty, 0), last

    x0, x1 = span(cols)
    y0, y1 = span(rows)
    return torch.stack([x0, y0, x1, y1], dim=1)


def _run_max(labels: Tensor, foreground: Tensor) -> Tensor:
    """Each foreground pixel takes the largest label of its run along the last axis."""
    starts = foreground.clone()
    starts[..., 1:] &= ~foreground[..., :-1]
    runs = starts.flatten().cumsum(0, dtype=torch.int32).view_as(labels).long() * foreground
    best = torch.zeros(int(runs.max()) + 1, dtype=labels.dtype, device=labels.device)
    best.scatter_reduce_(0, runs.flatten(), labels.flatten(), "amax")
    return best[runs]  # run 0 is the background: its labels are 0


def _max3x3(v: Tensor) -> Tensor:
    """The maximum over each 3 x 3 neighbourhood of (B, H, W) labels >= 0 (0 outside): along
    the rows, then the columns, in place; on a CPU 18x faster than `max_pool2d`."""
    rows = v.clone()
    torch.maximum(rows[..., 1:], v[..., :-1], out=rows[..., 1:])
    torch.maximum(rows[..., :-1], v[..., 1:], out=rows[..., :-1])
    both = rows.clone()
    torch.maximum(both[..., 1:, :], rows[..., :-1, :], out=both[..., 1:, :])
    torch.maximum(both[..., :-1, :], rows[..., 1:, :], out=both[..., :-1, :])
    return both


def _spread(labels: Tensor, foreground: Tensor) -> Tensor:
    """One round of label propagation: whole rows and columns at once, then the diagonals, then
    a jump to the label held by the pixel a label is named after (pointer jumping)."""
    spread = _run_max(labels, foreground)
    across = _run_max(spread.transpose(1, 2).contiguous(), foreground.transpose(1, 2).contiguous())
    spread = _max3x3(across.transpose(1, 2))
    spread = torch.where(foreground, spread, 0.0)
    flat = spread.flatten(1)
    jumped = flat.gather(1, (flat.long() - 1).clamp_min(0)).view_as(spread)
    return torch.where(foreground, torch.maximum(spread, jumped), 0.0)


def largest_component(foreground: Tensor) -> Tensor:
    """(B, H, W) bool: the largest 8-connected component of each foreground mask.

    Every component ends up labelled with the largest pixel index it holds; ties in size go to
    the component holding the later pixel in row-major order.

    Examples:
        >>> import torch
        >>> mask = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 1]]], dtype=torch.bool)
        >>> largest_component(mask).int().tolist()
        [[[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]]
    """
    batch, height, width = foreground.shape
    pixels = height * width
    dtype = torch.float32 if pixels < 2**24 else torch.float64  # labels must be exact
    index = torch.arange(1, pixels + 1, device=foreground.device, dtype=dtype)
    labels = torch.where(foreground, index.view(1, height, width), 0.0)
    active = torch.arange(batch, device=foreground.device)
    while active.numel():  # only the masks whose labels still change
        current = labels[active]
        spread = _spread(current, foreground[active])
        labels[active] = spread
        active = active[(spread != current).flatten(1).any(dim=1)]
    flat = labels.flatten(1).long()
    sizes = torch.zeros(batch, pixels + 1, device=flat.device, dtype=torch.long)
    sizes.scatter_add_(1, flat, torch.ones_like(flat))
    sizes[:, 0] = 0
    best = pixels - sizes.flip(1).argmax(dim=1)  # the largest label among equal sizes
    return (flat == best[:, None]).view(batch, height, width) & foreground


def _regions(regions: Tensor, size: Sequence[int]) -> Tensor:
    """Masks from (B, H, W) masks or (B, 4) boxes."""
    if regions.dim() == 2 and regions.shape[1] == 4 and tuple(size) != (4,):
        return boxes_to_masks(regions, size)
    if tuple(regions.shape[1:]) != tuple(size):
        raise ValueError(
            f"ground truth of shape {tuple(regions.shape)} does not fit maps of spatial size "
            f"{tuple(size)}: give (B, *spatial) masks or (B, 4) boxes"
        )
    return regions.bool()


@dataclass(frozen=True)
class Pointing:
    """Hits (B,) of the pointing game and the classes (B,) they count towards.

    Examples:
        >>> import torch
        >>> result = Pointing(torch.tensor([True, False, True]), torch.tensor([0, 0, 1]))
        >>> result.accuracy, result.per_class
        (0.75, {0: 0.5, 1: 1.0})
    """

    hits: Tensor
    classes: Tensor

    @property
    def per_class(self) -> dict[int, float]:
        """Hits per class: class -> share of its inputs whose peak is on the object."""
        return {
            int(c): float(self.hits[self.classes == c].float().mean())
            for c in self.classes.unique()
        }

    @property
    def accuracy(self) -> float:
        """hits / (hits + misses) per class, averaged over the classes present."""
        per_class = self.per_class
        return sum(per_class.values()) / len(per_class)


def pointing_game(
    maps: Maps,
    regions: Tensor,
    classes: Tensor | Sequence[int] | None = None,
    *,
    tolerance: float = 15.0,
) -> Pointing:
    """Pointing game: is each map's maximum within `tolerance` pixels of its object?

    Args:
        maps: (B, H, W) maps, or an Explanation with one target per input.
        regions: (B, H, W) object masks or (B, 4) boxes.
        classes: (B,) the class of each input, for the per-class average (default: the
            explanation's targets, else one class).
        tolerance: in pixels (15 in Zhang et al. on 224-pixel images).

    Examples:
        >>> import torch
        >>> maps = torch.zeros(2, 8, 8)
        >>> maps[0, 1, 1] = maps[1, 7, 7] = 1.0
        >>> boxes = torch.tensor([[0, 0, 3, 3], [0, 0, 3, 3]])
        >>> pointing_game(maps, boxes, tolerance=2).hits.tolist()
        [True, False]
    """
    values = as_maps(maps)
    if values.dim() != 3:
        raise ValueError(f"the pointing game takes (B, H, W) maps, not shape {tuple(values.shape)}")
    masks = _regions(regions.to(values.device), values.shape[1:])
    width = values.shape[2]
    peak = values.flatten(1).argmax(dim=1)
    py, px = peak // width, peak % width
    ys, xs = torch.meshgrid(
        torch.arange(values.shape[1], device=values.device),
        torch.arange(width, device=values.device),
        indexing="ij",
    )
    distance2 = (ys[None] - py[:, None, None]) ** 2 + (xs[None] - px[:, None, None]) ** 2
    nearest = torch.where(masks, distance2, torch.iinfo(distance2.dtype).max).flatten(1).amin(1)
    hits = nearest <= tolerance**2
    if classes is None and not isinstance(maps, Tensor) and maps.targets is not None:
        classes = maps.targets[:, 0]
    chosen = torch.zeros_like(peak) if classes is None else torch.as_tensor(classes).to(peak)
    return Pointing(hits, chosen)


def energy_pointing_game(maps: Maps, regions: Tensor) -> Tensor:
    """(B,) share of each map's mass inside its box (or mask); 0 for an all-zero map.

    Examples:
        >>> import torch
        >>> maps = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])
        >>> energy_pointing_game(maps, torch.tensor([[1, 0, 2, 2]])).tolist()
        [0.75]
    """
    values = as_maps(maps)
    masks = _regions(regions.to(values.device), values.shape[1:])
    total = values.flatten(1).sum(dim=1)
    inside = (values * masks).flatten(1).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), 0.0)


def map_boxes(maps: Maps, threshold: float) -> Tensor:
    """(B, 4) box around the largest component of pixels >= `threshold` x the map's maximum.

    Examples:
        >>> import torch
        >>> maps = torch.tensor([[[0.1, 0.9, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.0]]])
        >>> map_boxes(maps, 0.2).tolist()
        [[0, 0, 2, 3]]
    """
    values = as_maps(maps)
    peak = values.flatten(1).amax(dim=1).view(-1, *[1] * (values.dim() - 1))
    return masks_to_boxes(largest_component(values >= threshold * peak))


@dataclass(frozen=True)
class BoxAccuracy:
    """Hits (B, T): IoU >= `iou` for each map at each threshold (T,).

    Examples:
        >>> import torch
        >>> hits = torch.tensor([[True, True], [False, True], [False, False]])
        >>> result = BoxAccuracy(torch.tensor([0.1, 0.5]), hits, 0.5)
        >>> result.accuracy.tolist(), result.max_box_accuracy, result.best_threshold
        ([0.3333333432674408, 0.6666666865348816], 0.6666666865348816, 0.5)
    """

    thresholds: Tensor
    hits: Tensor
    iou: float

    @property
    def accuracy(self) -> Tensor:
        """(T,) share of maps localised at each threshold."""
        return self.hits.float().mean(dim=0)

    @property
    def max_box_accuracy(self) -> float:
        """MaxBoxAcc: the best accuracy over the thresholds."""
        return float(self.accuracy.max())

    @property
    def best_threshold(self) -> float:
        """The threshold with the best box accuracy."""
        return float(self.thresholds[self.accuracy.argmax()])


def box_accuracy(
    maps: Maps,
    boxes: Tensor,
    thresholds: float | Sequence[float] | Tensor = 0.2,
    *,
    iou: float = 0.5,
) -> BoxAccuracy:
    """Which maps' boxes (largest component above a threshold) have IoU >= `iou` with `boxes`.

    One threshold gives the CAM paper's protocol (0.2 of the maximum; Grad-CAM used 0.15); a
    sweep gives MaxBoxAcc (`default_thresholds()`).

    Examples:
        >>> import torch
        >>> maps = torch.zeros(2, 8, 8)
        >>> maps[:, 2:5, 2:5] = 1.0
        >>> truth = torch.tensor([[2, 2, 5, 5], [0, 0, 8, 8]])
        >>> box_accuracy(maps, truth).accuracy.tolist()
        [0.5]
    """
    values = as_maps(maps)
    sweep = torch.as_tensor(thresholds, dtype=values.dtype, device=values.device).reshape(-1)
    truth = boxes.to(values.device)
    if truth.shape != (values.shape[0], 4):
        raise ValueError(f"boxes must be (B, 4) = ({values.shape[0]}, 4), not {tuple(truth.shape)}")
    hits = [box_iou(map_boxes(values, float(t)), truth) >= iou for t in sweep]
    return BoxAccuracy(sweep, torch.stack(hits, dim=1), iou)


def default_thresholds(step: float = 0.05) -> Tensor:
    """Thresholds step, 2 step, ... < 1 for MaxBoxAcc (Choe et al. sweep 0.01 steps).

    Examples:
        >>> default_thresholds(0.25).tolist()
        [0.25, 0.5, 0.75]
    """
    count = round(1 / step)
    return torch.arange(1, count) / count


def relevance_mass(maps: Maps, masks: Tensor) -> Tensor:
    """(B,) relevance mass accuracy (Arras et al., 2022): the share of each map's sum inside
    its object mask; 0 for an all-zero map. For the non-negative maps camkit makes it is also
    attribution localisation (Kohlbrenner et al., 2020), which keeps the positive values.

    Examples:
        >>> import torch
        >>> maps = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])
        >>> relevance_mass(maps, torch.tensor([[[False, True], [True, True]]])).tolist()
        [0.75]
    """
    return energy_pointing_game(maps, masks)


def _share_in_top(values: Tensor, inside: Tensor, k: Tensor) -> Tensor:
    """(B,) the share of each row's k largest values that lie inside, with ties at the k-th
    value counted at their expected share (any order among equal values is as likely): the
    figure does not depend on how a sort breaks ties."""
    ordered = values.sort(dim=1, descending=True).values
    kth = ordered.gather(1, (k - 1).clamp_min(0)[:, None])  # (B, 1)
    above, level = values > kth, values == kth
    taken = (k - above.sum(dim=1)).float()  # of the values equal to the k-th
    count = (above & inside).sum(dim=1) + taken * (level & inside).sum(dim=1) / level.sum(dim=1)
    return torch.where(k > 0, count / k.clamp_min(1), 0.0)


def relevance_rank(maps: Maps, masks: Tensor) -> Tensor:
    """(B,) relevance rank accuracy (Arras et al., 2022): of the K highest pixels of each map,
    K the size of its object mask, the share inside the mask (0 for an empty mask). Ties at
    the K-th value count at their expected share.

    Examples:
        >>> import torch
        >>> maps = torch.tensor([[[0.9, 0.8], [0.1, 0.0]]])
        >>> relevance_rank(maps, torch.tensor([[[True, False], [True, False]]])).tolist()
        [0.5]
    """
    values = as_maps(maps).flatten(1).float()
    inside = masks.to(values.device).flatten(1).bool()
    return _share_in_top(values, inside, inside.sum(dim=1))


def top_k_intersection(maps: Maps, masks: Tensor, k: int = 1000) -> Tensor:
    """(B,) top-k intersection (Theiner et al., 2022): of each map's `k` highest pixels (all,
    for a smaller map), the share inside its object mask. Ties at the k-th value count at
    their expected share.

    Examples:
        >>> import torch
        >>> maps = torch.tensor([[[0.9, 0.8], [0.1, 0.0]]])
        >>> top_k_intersection(maps, torch.tensor([[[True, False], [True, False]]]), k=1).tolist()
        [1.0]
    """
    values = as_maps(maps).flatten(1).float()
    inside = masks.to(values.device).flatten(1).bool()
    chosen = torch.full((len(values),), min(k, values.shape[1]), device=values.device)
    return _share_in_top(values, inside, chosen)


def roc_auc(maps: Maps, masks: Tensor) -> Tensor:
    """(B,) the area under the ROC curve of each map's values as a score for "inside the
    object mask" (Fawcett, 2006): the chance that a pixel inside outscores one outside, ties
    counting half (average ranks, as scikit-learn's ``roc_auc_score``); 0.5 for a mask that
    is empty or everything.

    Examples:
        >>> import torch
        >>> maps = torch.tensor([[[0.9, 0.5], [0.5, 0.0]]])
        >>> roc_auc(maps, torch.tensor([[[True, True], [False, False]]])).tolist()
        [0.875]
    """
    values = as_maps(maps).flatten(1).float()
    inside = masks.to(values.device).flatten(1).bool()
    rows, n = values.shape
    ordered, order = values.sort(dim=1)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.cumsum(dim=1) - 1  # each position's run of equal values
    position = torch.arange(n, device=values.device).expand(rows, n)
    first = torch.full_like(position, n).scatter_reduce(1, group, position, "amin")
    last = torch.zeros_like(position).scatter_reduce(1, group, position, "amax")
    average = (first.gather(1, group) + last.gather(1, group)).double() / 2 + 1  # ranks 1..n
    ranks = torch.empty_like(average).scatter_(1, order, average)
    positives = inside.sum(dim=1).double()
    negatives = n - positives
    above = (ranks * inside).sum(dim=1) - positives * (positives + 1) / 2
    auc = above / (positives * negatives).clamp_min(1)
    return torch.where((positives > 0) & (negatives > 0), auc, 0.5).float()


def mosaics(
    x: Tensor, labels: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Focus' mosaics (Arias-Duart et al., 2022): for each input, a 2 x 2 mosaic (2H x 2W) of
    it, another input of its class and two inputs of other classes, in random quadrants, and
    (B, 4) which quadrants hold its class (top-left, top-right, bottom-left, bottom-right).
    The partner of its class is drawn from the batch (the input itself where it is the only
    one); an input whose class is the batch's only one has no mosaic: `ValueError`.

    Examples:
        >>> import torch
        >>> x, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 0, 1, 1])
        >>> tiles, quadrants = mosaics(x, labels, torch.Generator().manual_seed(0))
        >>> tiles.shape, quadrants.sum(dim=1).tolist()
        (torch.Size([4, 3, 16, 16]), [2, 2, 2, 2])
    """
    batch = len(x)
    same = labels[None] == labels[:, None]
    if bool(same.all()):
        raise ValueError("focus needs inputs of at least two classes in a batch for its mosaics")
    keys = torch.rand(batch, batch, generator=generator, device=x.device)
    # the partner: a random other input of the class (itself where there is none)
    others = same & ~torch.eye(batch, dtype=torch.bool, device=x.device)
    partner = torch.where(others, keys, -1.0).argmax(dim=1)
    partner = torch.where(others.any(dim=1), partner, torch.arange(batch, device=x.device))
    # two inputs of other classes (the same one twice where there is only one)
    strangers = torch.where(~same, keys, -1.0).topk(min(2, batch), dim=1).indices
    second = torch.where((~same).sum(dim=1) > 1, strangers[:, -1], strangers[:, 0])
    chosen = torch.stack(
        [torch.arange(batch, device=x.device), partner, strangers[:, 0], second], dim=1
    )
    places = torch.rand(batch, 4, generator=generator, device=x.device).argsort(dim=1)
    tiles = chosen.gather(1, places)  # tile k of mosaic b shows input tiles[b, k]
    top = torch.cat([x[tiles[:, 0]], x[tiles[:, 1]]], dim=-1)
    bottom = torch.cat([x[tiles[:, 2]], x[tiles[:, 3]]], dim=-1)
    return torch.cat([top, bottom], dim=-2), places < 2


def focus(maps: Maps, quadrants: Tensor) -> Tensor:
    """(B,) focus: the share of each mosaic map's positive mass in the quadrants (B, 4; top
    left, top right, bottom left, bottom right) that hold the explained class; 0.5 for a map
    even over the mosaic with two such quadrants.

    Examples:
        >>> import torch
        >>> maps = torch.zeros(1, 4, 4)
        >>> maps[0, :2, :2] = 3.0  # all in the top-left quadrant
        >>> maps[0, 2:, 2:] = 1.0
        >>> focus(maps, torch.tensor([[True, False, False, True]])).tolist()
        [1.0]
    """
    values = as_maps(maps).float().clamp_min(0)
    if values.dim() != 3:
        raise ValueError(f"focus takes (B, H, W) mosaic maps, not shape {tuple(values.shape)}")
    half_h, half_w = values.shape[1] // 2, values.shape[2] // 2
    weights = torch.zeros_like(values)
    top, bottom = slice(None, half_h), slice(half_h, None)
    left, right = slice(None, half_w), slice(half_w, None)
    for k, (rows, columns) in enumerate(
        ((top, left), (top, right), (bottom, left), (bottom, right))
    ):
        weights[:, rows, columns] = quadrants[:, k, None, None].to(values)
    total = values.flatten(1).sum(dim=1)
    return (values * weights).flatten(1).sum(dim=1) / (total + 1e-9)
