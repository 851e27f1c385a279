"""Pointing games and box localisation: hand-made maps with known answers."""

from __future__ import annotations

from collections import deque

import pytest
import torch

import camkit
from camkit.data import ShapesDataset
from camkit.metrics import (
    BoxAccuracy,
    box_accuracy,
    box_iou,
    boxes_to_masks,
    default_thresholds,
    energy_pointing_game,
    largest_component,
    map_boxes,
    masks_to_boxes,
    pointing_game,
)
from camkit.models import load_shapes_model


def _components_by_search(mask: torch.Tensor) -> torch.Tensor:
    """The largest 8-connected component by breadth-first search (ties: the later pixel's)."""
    height, width = mask.shape
    seen = torch.zeros_like(mask)
    best: list[tuple[int, int]] = []
    best_key = (-1, -1)
    for start in range(height * width):
        y0, x0 = divmod(start, width)
        if not mask[y0, x0] or seen[y0, x0]:
            continue
        queue, pixels = deque([(y0, x0)]), []
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            pixels.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        key = (len(pixels), max(y * width + x for y, x in pixels))
        if key > best_key:
            best_key, best = key, pixels
    result = torch.zeros_like(mask)
    for y, x in best:
        result[y, x] = True
    return result


def test_largest_component_matches_a_breadth_first_search() -> None:
    generator = torch.Generator().manual_seed(0)
    masks = (
        torch.rand(40, 13, 17, generator=generator) < torch.linspace(0.3, 0.7, 40)[:, None, None]
    )
    found = largest_component(masks)
    for mask, component in zip(masks, found, strict=True):
        assert torch.equal(component, _components_by_search(mask))


def test_diagonal_pixels_connect_and_a_spiral_is_one_component() -> None:
    diagonal = torch.eye(5, dtype=torch.bool)[None]
    assert torch.equal(largest_component(diagonal), diagonal)
    spiral = torch.zeros(1, 9, 9, dtype=torch.bool)
    spiral[0, 0, :] = spiral[0, :, 8] = spiral[0, 8, :] = True
    spiral[0, 2:, 0] = spiral[0, 2, :7] = spiral[0, 2:7, 6] = True
    assert torch.equal(largest_component(spiral), spiral)
    assert not largest_component(torch.zeros(1, 3, 3, dtype=torch.bool)).any()


def test_boxes_and_masks_by_hand() -> None:
    masks = boxes_to_masks(torch.tensor([[1, 0, 3, 2], [0, 1, 1, 2]]), (3, 4))
    assert masks.int().tolist() == [
        [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]],
        [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]],
    ]
    assert masks_to_boxes(masks).tolist() == [[1, 0, 3, 2], [0, 1, 1, 2]]
    assert masks_to_boxes(torch.zeros(1, 2, 2, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]]
    iou = box_iou(
        torch.tensor([[0, 0, 4, 4], [0, 0, 2, 2], [0, 0, 1, 1]]),
        torch.tensor([[2, 2, 6, 6], [0, 0, 2, 2], [5, 5, 6, 6]]),
    )
    assert iou.tolist() == pytest.approx([4 / 28, 1.0, 0.0])


def test_pointing_game_tolerance_is_inclusive() -> None:
    maps = torch.zeros(1, 10, 10)
    maps[0, 3, 4] = 1.0  # 5 pixels from (0, 0): a 3-4-5 triangle
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 0, 0] = True
    assert pointing_game(maps, mask, tolerance=5).hits.tolist() == [True]
    assert pointing_game(maps, mask, tolerance=4.9).hits.tolist() == [False]
    assert pointing_game(maps, torch.tensor([[4, 3, 5, 4]]), tolerance=0).hits.tolist() == [True]


def test_pointing_game_averages_over_classes() -> None:
    maps = torch.zeros(3, 8, 8)
    maps[0, 1, 1] = maps[1, 7, 7] = maps[2, 1, 1] = 1.0
    boxes = torch.tensor([[0, 0, 3, 3]] * 3)
    result = pointing_game(maps, boxes, classes=[0, 0, 1], tolerance=0)
    assert result.hits.tolist() == [True, False, True]
    assert result.per_class == {0: 0.5, 1: 1.0}
    assert result.accuracy == 0.75  # not 2/3: each class counts once
    assert pointing_game(maps, boxes, tolerance=0).accuracy == pytest.approx(2 / 3)


def test_energy_pointing_game_by_hand() -> None:
    maps = torch.tensor([[[1.0, 3.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    boxes = torch.tensor([[1, 0, 2, 2], [0, 0, 2, 2]])
    assert energy_pointing_game(maps, boxes).tolist() == pytest.approx([7 / 8, 0.0])
    mask = torch.tensor([[[True, False], [False, False]]] * 2)
    assert energy_pointing_game(maps, mask).tolist() == pytest.approx([1 / 8, 0.0])


def test_box_from_the_largest_component_above_the_threshold() -> None:
    maps = torch.zeros(1, 10, 10)
    maps[0, 1:4, 1:4] = 1.0  # 9 pixels at the top
    maps[0, 5:9, 5:10] = 0.5  # 20 pixels at half the maximum
    assert map_boxes(maps, 0.6).tolist() == [[1, 1, 4, 4]]  # only the bright blob
    assert map_boxes(maps, 0.4).tolist() == [[5, 5, 10, 9]]  # the larger, dimmer blob


def test_box_accuracy_and_max_box_accuracy_by_hand() -> None:
    maps = torch.zeros(2, 10, 10)
    maps[:, 1:4, 1:4] = 1.0
    maps[:, 5:9, 5:10] = 0.5
    truth = torch.tensor([[1, 1, 4, 4], [5, 5, 10, 9]])
    result = box_accuracy(maps, truth, [0.2, 0.4, 0.6, 0.8])
    assert result.accuracy.tolist() == [0.5, 0.5, 0.5, 0.5]  # each threshold suits one image
    single = box_accuracy(maps[:1], truth[:1], [0.4, 0.6])
    assert single.accuracy.tolist() == [0.0, 1.0]
    assert single.max_box_accuracy == 1.0
    assert single.best_threshold == pytest.approx(0.6)
    assert result.hits.tolist() == [[False, False, True, True], [True, True, False, False]]
    hits = torch.tensor([[True], [False], [False], [True]])
    assert BoxAccuracy(torch.tensor([0.1]), hits, 0.5).max_box_accuracy == 0.5
    assert default_thresholds(0.05).shape == (19,)


def test_takes_explanations_and_rejects_misfits() -> None:
    data = ShapesDataset(4, size=64, seed=5).stack()
    explainer = camkit.CAM(load_shapes_model())
    explanation = explainer(data["image"], targets=data["label"])
    result = pointing_game(explanation, data["mask"])
    assert result.classes.tolist() == data["label"].tolist()
    assert energy_pointing_game(explanation, data["box"]).shape == (4,)
    with pytest.raises(ValueError, match="does not fit maps of spatial size"):
        energy_pointing_game(explanation, torch.zeros(4, 20, 20, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"boxes must be \(B, 4\)"):
        box_accuracy(explanation, torch.zeros(3, 4))


def test_relevance_mass_rank_top_k_and_roc_auc_worked_by_hand() -> None:
    from camkit.metrics.localisation import (
        relevance_mass,
        relevance_rank,
        roc_auc,
        top_k_intersection,
    )

    maps = torch.tensor([[[0.9, 0.5, 0.5], [0.5, 0.2, 0.0]]])
    mask = torch.tensor([[[True, True, False], [False, False, False]]])
    # mass: (0.9 + 0.5) / 2.6; rank: the 2 highest are 0.9 and one of three 0.5s, one of which
    # is inside: 1 + 1/3 expected of 2; top-1: 0.9, inside; AUC: the inside pixels outscore
    # the 4 outside ones in 4 + 4 pairs, less a half for each tie with an outside 0.5 (2 ties)
    assert relevance_mass(maps, mask)[0] == pytest.approx(1.4 / 2.6)
    assert relevance_rank(maps, mask)[0] == pytest.approx((1 + 1 / 3) / 2)
    assert top_k_intersection(maps, mask, k=1).tolist() == [1.0]
    assert top_k_intersection(maps, mask, k=100)[0] == pytest.approx(2 / 6)  # all pixels
    assert roc_auc(maps, mask)[0] == pytest.approx((8 - 2 * 0.5) / 8)
    empty = torch.zeros_like(mask)
    assert relevance_rank(maps, empty).tolist() == [0.0]
    assert roc_auc(maps, empty).tolist() == [0.5]


def test_ties_count_at_their_expected_share_whatever_the_sort_does() -> None:
    from camkit.metrics.localisation import relevance_rank

    torch.manual_seed(0)
    maps = torch.randint(0, 3, (6, 8, 8)).float()  # many ties
    masks = torch.rand(6, 8, 8) > 0.6
    expected = relevance_rank(maps, masks)
    order = torch.randperm(64)  # the same pixels in another order: the same figure
    again = relevance_rank(
        maps.flatten(1)[:, order].view(6, 8, 8), masks.flatten(1)[:, order].view(6, 8, 8)
    )
    assert torch.allclose(expected, again)
    # and the mean over random tie-breaks converges to it
    k = masks.flatten(1).sum(1)
    draws = []
    for _ in range(400):
        jitter = maps.flatten(1) + 1e-3 * torch.rand(6, 64)
        top = jitter.argsort(dim=1, descending=True)
        hit = masks.flatten(1).gather(1, top).float()
        draws.append(torch.stack([hit[i, : k[i]].mean() for i in range(6)]))
    assert torch.allclose(torch.stack(draws).mean(0), expected, atol=0.03)


def test_roc_auc_equals_scikit_learns_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from camkit.metrics.localisation import roc_auc

    torch.manual_seed(1)
    maps = torch.randint(0, 5, (4, 10, 10)).float()
    masks = torch.rand(4, 10, 10) > 0.7
    ours = roc_auc(maps, masks)
    for i in range(4):
        reference = roc_auc_score(masks[i].flatten().numpy(), maps[i].flatten().numpy())
        assert ours[i].item() == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize(
    ("ours", "name"),
    [
        ("relevance_mass", "RelevanceMassAccuracy"),
        ("relevance_mass", "AttributionLocalisation"),
        ("relevance_rank", "RelevanceRankAccuracy"),
        ("top_k_intersection", "TopKIntersection"),
        ("roc_auc", "AUC"),
    ],
)
def test_equal_to_quantus_on_grad_cam_maps_of_the_bundled_model(ours: str, name: str) -> None:
    import quantus

    from camkit.metrics import localisation
    from helpers.quantus_case import case, compared, quantus_scores

    c = case()
    mine = getattr(localisation, ours)(c["maps"], c["masks"])
    reference = quantus_scores(getattr(quantus, name)(disable_warnings=True), masks=True)
    assert compared(name, mine, reference) < 1e-6


def test_the_pointing_game_at_tolerance_0_is_quantus_pointing_game() -> None:
    import quantus

    from helpers.quantus_case import case, compared, quantus_scores

    c = case()
    hits = pointing_game(c["maps"], c["masks"], tolerance=0).hits.double()
    reference = quantus_scores(quantus.PointingGame(disable_warnings=True), masks=True)
    assert compared("PointingGame", hits, reference) == 0
    # Quantus' hits are a bool array: an empty mask's NaN becomes True, a hit (camkit: a miss)
    empty = torch.zeros_like(c["masks"][:2])
    maps = c["maps"][:2]
    theirs = quantus.PointingGame(disable_warnings=True)(
        model=c["model"],
        x_batch=c["x"][:2].numpy(),
        y_batch=c["labels"][:2].numpy(),
        a_batch=maps[:, None].double().numpy(),
        s_batch=empty[:, None].double().numpy(),
    )
    assert list(theirs) == [True, True]
    assert pointing_game(maps, empty, tolerance=0).hits.tolist() == [False, False]


def test_mosaics_hold_two_inputs_of_the_class_where_the_quadrants_say() -> None:
    from camkit.metrics.localisation import mosaics

    x = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 2, 2).contiguous()  # input i is all i
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    tiles, quadrants = mosaics(x, labels, torch.Generator().manual_seed(1))
    assert tiles.shape == (6, 1, 4, 4)
    corners = tiles[:, 0, ::2, ::2].flatten(1).long()  # the input in each quadrant
    assert corners[:, :][quadrants].view(6, 2).sort(dim=1).values.tolist() == [
        [0, 1],
        [0, 1],
        [2, 3],
        [2, 3],
        [4, 5],
        [4, 5],
    ]
    assert (labels[corners[~quadrants].view(6, 2)] != labels[:, None]).all()
    with pytest.raises(ValueError, match="at least two classes"):
        mosaics(x, torch.zeros(6, dtype=torch.long))


def test_focus_by_hand_and_against_quantus() -> None:
    import numpy as np
    import quantus

    from camkit.metrics.localisation import focus, mosaics
    from helpers.quantus_case import case, compared

    maps = torch.zeros(2, 4, 4)
    maps[0, :2, :2] = 1.0
    maps[1] = 1.0  # even: half its mass on any two quadrants
    quadrants = torch.tensor([[True, False, True, False], [False, True, True, False]])
    assert focus(maps, quadrants).tolist() == pytest.approx([1.0, 0.5])

    c = case()
    tiles, quadrants = mosaics(c["x"], c["labels"], torch.Generator().manual_seed(0))
    mosaic_maps = camkit.GradCAM(c["model"])(tiles, c["labels"]).maps[:, 0]
    ours = focus(mosaic_maps, quadrants)
    metric = quantus.Focus(normalise=False, disable_warnings=True)
    theirs = metric(
        model=c["model"],
        x_batch=tiles.numpy(),
        y_batch=c["labels"].numpy(),
        a_batch=mosaic_maps[:, None].double().numpy(),
        custom_batch=quadrants.int().tolist(),
    )
    assert compared("Focus", ours, torch.tensor(np.asarray(theirs, np.float64))) < 1e-6
    assert float(ours.mean()) > 0.5  # the bundled model's Grad-CAM finds its class (can fail)
