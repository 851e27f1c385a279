"""Train the deeper bundled model (seeded; about 10 minutes on 2 CPU cores).

    python scripts/train_deep.py [--epochs 8] [--train 10000] [--out FILE]

`DeepShapesNet` on `camkit.data.HardShapes` (seed 5000), held-out accuracy on seed 6000 after
every epoch; saves the weights as float16.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from train_shapes import accuracy, augment

from camkit.data import HardShapes
from camkit.models.deep import WEIGHTS_FILE, DeepShapesNet

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "camkit" / "models" / WEIGHTS_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    train = HardShapes(args.train, seed=5000).stack()
    held_out = HardShapes(1000, seed=6000).stack()
    images = (train["image"] * 255).round().to(torch.uint8)
    labels = train["label"]
    print(f"generated {args.train} + 1000 images in {time.perf_counter() - start:.0f} s",
          flush=True)  # fmt: skip
    model = DeepShapesNet()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    steps = args.epochs * (args.train // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(args.train, generator=g)
        total = 0.0
        for step in range(args.train // args.batch):
            batch = order[step * args.batch : (step + 1) * args.batch]
            loss = F.cross_entropy(model(augment(images[batch].float() / 255, g)), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
        held = accuracy(model, held_out["image"], held_out["label"])
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / (args.train // args.batch):.4f}, "
              f"held-out accuracy {held:.4f} ({time.perf_counter() - start:.0f} s)",
              flush=True)  # fmt: skip
    model.eval()
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    shipped = DeepShapesNet()
    shipped.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in state.items()})  # fmt: skip
    final = accuracy(shipped, held_out["image"], held_out["label"])
    size = args.out.stat().st_size / 2**20
    print(f"final held-out accuracy {final:.4f}; saved {args.out} ({size:.2f} MiB)")


if __name__ == "__main__":
    main()
