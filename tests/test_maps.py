from __future__ import annotations

import pytest
import torch

import camkit
from camkit.maps import fuse, normalise, rectify, upsample, warn_constant


def test_normalise_is_min_max_per_map() -> None:
    maps = torch.tensor([[[[2.0, 4.0], [6.0, 10.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # (1, 2, 2, 2)
    out = normalise(maps)
    assert out[0, 0].tolist() == [[0.0, 0.25], [0.5, 1.0]]
    assert out[0, 1].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert normalise(torch.full((1, 1, 3), 2.5)).tolist() == [[[1.0, 1.0, 1.0]]]


@pytest.mark.parametrize(("size", "mode"), [((7,), "linear"), ((5, 9), "bilinear")])
def test_upsample_matches_interpolate(size, mode) -> None:
    maps = torch.rand(2, 3, *[2] * len(size))
    expected = torch.nn.functional.interpolate(maps, size=size, mode=mode, align_corners=False)
    torch.testing.assert_close(upsample(maps, size), expected)
    assert upsample(maps, maps.shape[2:]) is maps
    assert upsample(torch.rand(1, 1, 2, 2, 2), (4, 6, 8)).shape == (1, 1, 4, 6, 8)


def test_fuse() -> None:
    a = torch.tensor([[[0.0, 0.5, 1.0]]])
    b = torch.tensor([[[1.0, 0.5, 0.0]]])
    assert fuse([a, a], "mean").tolist() == a.tolist()
    assert fuse([a, b], "max").tolist() == [[[1.0, 0.0, 1.0]]]  # (1, 0.5, 1) renormalised
    assert fuse([a, b], "product").tolist() == [[[0.0, 1.0, 0.0]]]
    with pytest.raises(ValueError, match="'mean', 'max' or 'product'"):
        fuse([a, b], "median")  # type: ignore[arg-type]


def test_rectify_clamps_and_replaces_non_finite_with_a_warning() -> None:
    assert rectify(torch.tensor([-1.0, 0.5]), "x").tolist() == [0.0, 0.5]
    with pytest.warns(camkit.CamkitWarning, match="non-finite values in the map of layer 'x'"):
        out = rectify(torch.tensor([float("nan"), float("inf"), 2.0]), "x")
    assert out.tolist() == [0.0, 0.0, 2.0]


def test_warn_constant_counts_the_constant_maps() -> None:
    maps = torch.stack([torch.zeros(4, 4), torch.eye(4)])[None]
    with pytest.warns(camkit.CamkitWarning, match="1 of 2 gradcam maps are constant"):
        warn_constant(maps, "gradcam")
