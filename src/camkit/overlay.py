"""Pictures of maps: colour maps, blending over the image, and labelled grids (needs Pillow)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from camkit.images import image_to_tensor


def _clip(t: Tensor) -> Tensor:
    return t.clamp(0.0, 1.0)


# Colour maps written as formulas of the value v in [0, 1]; any matplotlib name also works when
# matplotlib is installed.
_FORMULAS = {
    "jet": lambda v: torch.stack(
        [
            _clip(1.5 - (4 * v - 3).abs()),
            _clip(1.5 - (4 * v - 2).abs()),
            _clip(1.5 - (4 * v - 1).abs()),
        ]
    ),
    "hot": lambda v: torch.stack([_clip(3 * v), _clip(3 * v - 1), _clip(3 * v - 2)]),
    "gray": lambda v: torch.stack([v, v, v]),
}


def check_colormap(colormap: str) -> None:
    """Raise `ValueError` naming the choices unless `colormap` is a colour map camkit can draw.

    Examples:
        >>> check_colormap("viridis-ish")
        Traceback (most recent call last):
        ...
        ValueError: unknown colormap 'viridis-ish'; built in: jet, hot, gray, or a matplotlib name
    """
    if colormap in _FORMULAS:
        return
    try:
        import matplotlib
    except ImportError:
        raise ValueError(
            f"unknown colormap {colormap!r}: built in are {', '.join(_FORMULAS)}; install "
            "matplotlib for its colour maps"
        ) from None
    if colormap not in matplotlib.colormaps:
        raise ValueError(
            f"unknown colormap {colormap!r}; built in: {', '.join(_FORMULAS)}, or a matplotlib name"
        )


def colourise(values: Tensor, colormap: str = "jet") -> Tensor:
    """(H, W) values in [0, 1] -> (3, H, W) RGB in [0, 1].

    Examples:
        >>> colourise(torch.tensor([[0.0, 1.0]]), "hot")[:, 0, 1].tolist()
        [1.0, 1.0, 1.0]
    """
    values = values.float().clamp(0, 1)
    if colormap in _FORMULAS:
        return _FORMULAS[colormap](values)
    check_colormap(colormap)
    import matplotlib

    table = torch.tensor(matplotlib.colormaps[colormap].resampled(256)(range(256)))[:, :3]
    indices = (values * 255).round().long()
    return table.to(values)[indices].permute(2, 0, 1)


def to_tensor(image: Image.Image | Tensor) -> Tensor:
    """A PIL image or a (C, H, W) / (H, W) tensor as float (3, H, W) in [0, 1].

    PIL images of any mode and bit depth are mapped as `camkit.images` describes.
    """
    if isinstance(image, Image.Image):
        return image_to_tensor(image)
    tensor = image.detach().float()
    if tensor.dim() == 2:
        tensor = tensor[None]
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(
            f"expected an image (3, H, W), (1, H, W) or (H, W), got {tuple(image.shape)}"
        )
    return tensor.expand(3, -1, -1).clamp(0, 1)


def to_pil(image: Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> PIL RGB image."""
    data = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
    # One copy of the bytes (numpy's buffer), not bytes(tensor), which loops over every element.
    return Image.fromarray(data.cpu().contiguous().numpy())


def overlay(
    image: Image.Image | Tensor, heat: Tensor, colormap: str = "jet", alpha: float = 0.5
) -> Image.Image:
    """Blend a map over its image: ``(1 - alpha) * image + alpha * colour(heat)``.

    `heat` is the map, (H, W) or (1, H, W) in [0, 1], resized (bilinear) to the image if
    needed.

    Examples:
        >>> import torch
        >>> picture = overlay(torch.rand(3, 32, 40), torch.rand(8, 10), alpha=0.4)
        >>> picture.size, picture.mode
        ((40, 32), 'RGB')
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    base = to_tensor(image)
    values = heat.detach().float().cpu()
    values = values.reshape(values.shape[-2:]) if values.dim() == 3 else values
    if values.dim() != 2:
        raise ValueError(f"expected a map (H, W) or (1, H, W), got {tuple(heat.shape)}")
    if values.shape != base.shape[1:]:
        values = F.interpolate(
            values[None, None], size=base.shape[1:], mode="bilinear", align_corners=False
        )[0, 0]
    return to_pil((1 - alpha) * base.cpu() + alpha * colourise(values, colormap))


def grid(
    rows: Sequence[Sequence[Image.Image]],
    column_titles: Sequence[str] = (),
    row_titles: Sequence[str] = (),
    tile: int = 160,
) -> Image.Image:
    """Pictures in rows, each scaled to `tile` pixels high, with a title per column and row.

    Examples:
        >>> from PIL import Image
        >>> pictures = [[Image.new("RGB", (96, 96))] * 3] * 2
        >>> grid(pictures, ["image", "gradcam", "cam"], ["star 9.1", "disc 2.0"]).size
        (496, 378)
    """
    font = ImageFont.load_default()
    scaled = [
        [p if p.height == tile else p.resize((round(p.width * tile / p.height), tile)) for p in row]
        for row in rows
    ]
    widths = [
        max(row[c].width for row in scaled if c < len(row)) for c in range(max(map(len, scaled)))
    ]
    pad, line = 4, 14
    head = line + pad if column_titles else 0
    row_height = tile + (line if row_titles else 0) + pad
    canvas = Image.new(
        "RGB",
        (sum(widths) + pad * (len(widths) + 1), head + row_height * len(scaled) + pad),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(column_titles):
        draw.text((pad + sum(widths[:c]) + pad * c, pad), title, fill="black", font=font)
    for r, row in enumerate(scaled):
        top = head + pad + r * row_height
        if r < len(row_titles):
            draw.text((pad, top), row_titles[r], fill="black", font=font)
            top += line
        for c, picture in enumerate(row):
            canvas.paste(picture, (pad + sum(widths[:c]) + pad * c, top))
    return canvas
