"""The work `camkit explain` cannot avoid, as one plain script: decode every image, resize and
normalise it as the command does, and run a forward pass plus the backward pass to the layer,
batch by batch. `bench_explain.py` runs it as its own process and compares the command to it.

Usage: python benchmarks/explain_work.py FOLDER MODEL BATCH  (MODEL: resnet50 or shapes)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image


def main() -> None:
    started = time.perf_counter()
    folder, name, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if name == "shapes":
        from camkit.models import load_shapes_model

        model, size, mean, std, layer = load_shapes_model(), None, None, None, "features"
    else:
        import torchvision

        model = torchvision.models.get_model(name).eval()
        transform = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        size, mean, std, layer = transform.resize_size[0], transform.mean, transform.std, "layer4"
    module = model.get_submodule(layer)
    kept: dict[str, torch.Tensor] = {}
    module.register_forward_hook(lambda m, i, o: kept.__setitem__("A", o))
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))
    for start in range(0, len(paths), batch):
        pictures = []
        for path in paths[start : start + batch]:
            with Image.open(path) as image:
                data = torch.frombuffer(
                    bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8
                )
                picture = data.view(image.height, image.width, 3).permute(2, 0, 1).float() / 255
            if size:
                h, w = picture.shape[1:]
                scale = size / min(h, w)
                picture = F.interpolate(
                    picture[None],
                    size=(round(h * scale), round(w * scale)),
                    mode="bilinear",
                    antialias=True,
                )[0]
            if mean:
                picture = (picture - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
                    :, None, None
                ]
            pictures.append(picture)
        x = torch.stack(pictures)
        logits = model(x)
        score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        torch.autograd.grad(score, kept["A"])
    print(f"{time.perf_counter() - started:.3f}")


if __name__ == "__main__":
    main()
