"""Bundled models: the shapes model with its ground truth, and the examples' tiny network."""

from camkit.models.example import example_net
from camkit.models.shapes import ShapesNet, load_shapes_model

__all__ = ["ShapesNet", "example_net", "load_shapes_model"]
