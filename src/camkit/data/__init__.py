"""Synthetic benchmark data with ground truth (`ShapesDataset`, `HardShapes`, `ShortcutShapes`),
and the sample images that ship with camkit (`sample_images`)."""

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


__all__ = [
    "CLASSES",
    "HardShapes",
    "ShapesDataset",
    "ShortcutShapes",
    "render",
    "sample_images",
    "shape_coverage",
]
