"""Train the bundled vision transformer (seeded; about 35 minutes on 2 CPU cores).

    python scripts/train_vit.py [--epochs 40] [--train 16000] [--out FILE]

`ShapesViT` on the single-object split of `camkit.data.ShapesDataset` (seed 1000; held-out
accuracy on seed 2000 after every epoch). Saves the weights as float16. The shortcut ViT has its
own script, ``scripts/train_vit_shortcut.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from training import accuracy, arguments, fit, save_half

from camkit.data import ShapesDataset
from camkit.models.vit import WEIGHTS_FILE, ShapesViT

MODELS = Path(__file__).resolve().parents[1] / "src" / "camkit" / "models"


def main() -> None:
    args = arguments(__doc__ or "", epochs=40, train=16000, out=MODELS / WEIGHTS_FILE)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    train = ShapesDataset(args.train, seed=1000).stack()
    held_out = ShapesDataset(1000, seed=2000).stack()
    images = (train["image"] * 255).round().to(torch.uint8)
    print(
        f"generated {args.train} + 1000 images in {time.perf_counter() - start:.0f} s", flush=True
    )
    model = ShapesViT()
    said = "held-out accuracy"

    def report(epoch: int, loss: float) -> str:
        held = accuracy(model, held_out["image"], held_out["label"])
        return f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, {said} {held:.4f}"

    fit(
        model,
        images,
        train["label"],
        epochs=args.epochs,
        batch=args.batch,
        g=g,
        after_epoch=report,
        lr=3e-3,
        weight_decay=0.05,
    )
    shipped = save_half(model, args.out, ShapesViT())
    size = args.out.stat().st_size / 2**20
    final = accuracy(shipped, held_out["image"], held_out["label"])
    print(f"shipped weights: {said} {final:.4f}; saved {args.out} ({size:.2f} MiB)")


if __name__ == "__main__":
    main()
