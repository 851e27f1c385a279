"""Bundled models."""

from camkit.models.shapes import ShapesNet, load_shapes_model

__all__ = ["ShapesNet", "load_shapes_model"]
