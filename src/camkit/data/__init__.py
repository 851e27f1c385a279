"""Synthetic benchmark data with ground truth (`ShapesDataset`, `HardShapes`, `ShortcutShapes`),
the sample images that ship with camkit (`sample_images`), and two real photos for ImageNet
models (`sample_photos`)."""

from importlib import resources
from pathlib import Path

from camkit.data.hard import HardShapes
from camkit.data.shapes import CLASSES, ShapesDataset, render, shape_coverage
from camkit.data.shortcut import ShortcutShapes


def sample_images() -> list[Path]:
    """The sample images that ship with camkit: one per shape class.

    Examples:
        >>> [path.name for path in sample_images()][:2]
        ['cross.png', 'disc.png']
    """
    folder = resources.files("camkit.data").joinpath("samples")
    return sorted(Path(str(p)) for p in folder.iterdir() if Path(str(p)).suffix == ".png")


def sample_photos() -> list[Path]:
    """Two real photos that ship with camkit for ImageNet models: a cat (ImageNet's "tabby",
    "tiger cat" and "Egyptian cat") and an espresso, from scikit-image's data (both CC0).

    Examples:
        >>> [path.name for path in sample_photos()]
        ['chelsea.jpg', 'coffee.jpg']
    """
    folder = resources.files("camkit.data").joinpath("photos")
    return sorted(Path(str(p)) for p in folder.iterdir() if Path(str(p)).suffix == ".jpg")


__all__ = [
    "CLASSES",
    "HardShapes",
    "ShapesDataset",
    "ShortcutShapes",
    "render",
    "sample_images",
    "sample_photos",
    "shape_coverage",
]
