"""Synthetic benchmark data with ground truth (`ShapesDataset`, `HardShapes`, `ShortcutShapes`)."""

from camkit.data.hard import HardShapes
from camkit.data.shapes import CLASSES, ShapesDataset, render, shape_coverage
from camkit.data.shortcut import ShortcutShapes

__all__ = ["CLASSES", "HardShapes", "ShapesDataset", "ShortcutShapes", "render", "shape_coverage"]
