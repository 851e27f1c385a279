from __future__ import annotations

import pytest
import torch
from PIL import Image

import camkit
from camkit.overlay import colourise, grid, to_pil, to_tensor


def test_jet_goes_from_blue_to_red() -> None:
    rgb = colourise(torch.tensor([[0.0, 0.5, 1.0]]), "jet")[:, 0]
    assert rgb[:, 0].tolist() == [0.0, 0.0, 0.5]  # dark blue
    assert rgb[:, 1].tolist() == [0.5, 1.0, 0.5]  # green in the middle
    assert rgb[:, 2].tolist() == [0.5, 0.0, 0.0]  # dark red
    assert colourise(torch.tensor([[0.25]]), "gray")[:, 0, 0].tolist() == [0.25] * 3


def test_matplotlib_names_and_unknown_names() -> None:
    pytest.importorskip("matplotlib")
    assert colourise(torch.rand(4, 5), "viridis").shape == (3, 4, 5)
    with pytest.raises(ValueError, match="unknown colormap 'rainbowish'"):
        colourise(torch.rand(2, 2), "rainbowish")


def test_overlay_blends_and_resizes() -> None:
    image = torch.zeros(3, 8, 10)
    heat = torch.ones(4, 5)
    picture = camkit.overlay(image, heat, colormap="gray", alpha=0.25)
    assert picture.size == (10, 8)
    assert to_tensor(picture)[:, 3, 3].tolist() == pytest.approx([64 / 255] * 3)  # 0.25 * white
    same = camkit.overlay(to_pil(torch.full((3, 8, 10), 0.5)), torch.zeros(8, 10), alpha=0.0)
    assert to_tensor(same).sub(0.5).abs().amax() < 1 / 255
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        camkit.overlay(image, heat, alpha=1.5)
    with pytest.raises(ValueError, match=r"expected a map \(H, W\)"):
        camkit.overlay(image, torch.rand(2, 2, 2, 2))


def test_grid_layout() -> None:
    tiles = [[Image.new("RGB", (20, 10), "red"), Image.new("RGB", (10, 10), "blue")]]
    picture = camkit.grid(tiles, ["a", "b"], ["row"], tile=40)
    assert picture.size == (4 + 80 + 4 + 40 + 4, 18 + 14 + 40 + 4 + 4)
    assert picture.getpixel((10, 18 + 4 + 14 + 5)) == (255, 0, 0)
    assert grid([[Image.new("RGB", (5, 5))]]).size[1] == 160 + 8
