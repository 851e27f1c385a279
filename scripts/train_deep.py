"""Train the deeper bundled model (seeded; about 10 minutes on 2 CPU cores).

    python scripts/train_deep.py [--epochs 8] [--train 10000] [--out FILE]

`DeepShapesNet` on `camkit.data.HardShapes` (seed 5000), held-out accuracy on seed 6000 after
every epoch; saves the weights as float16.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from training import accuracy, arguments, fit, save_half

from camkit.data import HardShapes
from camkit.models.deep import WEIGHTS_FILE, DeepShapesNet

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "camkit" / "models" / WEIGHTS_FILE


def main() -> None:
    args = arguments(__doc__ or "", epochs=8, train=10000, out=DEFAULT_OUT)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    train = HardShapes(args.train, seed=5000).stack()
    held_out = HardShapes(1000, seed=6000).stack()
    images = (train["image"] * 255).round().to(torch.uint8)
    labels = train["label"]
    print(
        f"generated {args.train} + 1000 images in {time.perf_counter() - start:.0f} s", flush=True
    )
    model = DeepShapesNet()

    def report(epoch: int, loss: float) -> str:
        held = accuracy(model, held_out["image"], held_out["label"])
        return f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, held-out accuracy {held:.4f}"

    fit(model, images, labels, epochs=args.epochs, batch=args.batch, g=g, after_epoch=report)
    shipped = save_half(model, args.out, DeepShapesNet())
    final = accuracy(shipped, held_out["image"], held_out["label"])
    size = args.out.stat().st_size / 2**20
    print(f"final held-out accuracy {final:.4f}; saved {args.out} ({size:.2f} MiB)")


if __name__ == "__main__":
    main()
