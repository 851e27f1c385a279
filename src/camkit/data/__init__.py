"""Synthetic benchmark data with ground truth (`ShapesDataset`)."""

from camkit.data.shapes import CLASSES, ShapesDataset, render, shape_coverage

__all__ = ["CLASSES", "ShapesDataset", "render", "shape_coverage"]
