"""Train the bundled shortcut model (seeded; about 3 minutes on 2 CPU cores).

    python scripts/train_shortcut.py [--epochs 6] [--train 6000] [--out FILE]

`ShapesNet` on the training split of `camkit.data.ShortcutShapes` (seed 3000), where only the
tag's colour predicts the class. Prints, on the conflict split (seed 4000, tag and shape always
disagree): how often it follows the tag, and how often removing the tag or the shape changes
its prediction. Saves the weights as float16.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from training import accuracy, arguments, evidence_said, fit, save_half

from camkit.data import ShortcutShapes
from camkit.models.shapes import ShapesNet
from camkit.models.shortcut import WEIGHTS_FILE, evidence_check

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "camkit" / "models" / WEIGHTS_FILE


def main() -> None:
    args = arguments(__doc__ or "", epochs=6, train=6000, out=DEFAULT_OUT)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    train = ShortcutShapes(args.train, split="train", seed=3000).stack()
    conflict = ShortcutShapes(1000, split="conflict", seed=4000).stack()
    images = (train["image"] * 255).round().to(torch.uint8)
    labels = train["label"]
    print(
        f"generated {args.train} + 1000 images in {time.perf_counter() - start:.0f} s", flush=True
    )
    model = ShapesNet()

    def report(epoch: int, loss: float) -> str:
        follows = accuracy(model, conflict["image"], conflict["label"])
        return (
            f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, follows the tag on "
            f"{follows:.4f} of the conflict split"
        )

    fit(model, images, labels, epochs=args.epochs, batch=args.batch, g=g, after_epoch=report)
    shipped = save_half(model, args.out, ShapesNet())
    print(evidence_said(evidence_check(shipped, conflict), args.out))


if __name__ == "__main__":
    main()
