"""Train the bundled shapes model from scratch (seeded; about 10 minutes on 2 CPU cores).

    python scripts/train_shapes.py [--epochs 10] [--train 16000] [--out FILE]

Generates the single-object split of `camkit.data.ShapesDataset` (seed 1000), trains
`ShapesNet` with AdamW and a one-cycle schedule, prints held-out accuracy (seed 2000) after
every epoch, and saves the weights as float16 (well under 2 MiB).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from camkit.data import ShapesDataset
from camkit.models.shapes import WEIGHTS_FILE, ShapesNet

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "camkit" / "models" / WEIGHTS_FILE


def accuracy(model: ShapesNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in images.split(256)])
    return float((predicted == labels).float().mean())


def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Flips and quarter turns: the classes are invariant to both."""
    if bool(torch.rand(1, generator=g) < 0.5):
        images = images.flip(3)
    return torch.rot90(images, int(torch.randint(0, 4, (1,), generator=g)), dims=(2, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train", type=int, default=16000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    start = time.perf_counter()
    train = ShapesDataset(args.train, seed=1000).stack()
    held_out = ShapesDataset(1000, seed=2000).stack()
    images = (train["image"] * 255).round().to(torch.uint8)  # 4x less memory while training
    labels = train["label"]
    print(
        f"generated {args.train} + 1000 images in {time.perf_counter() - start:.0f} s", flush=True
    )

    model = ShapesNet()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    steps = args.epochs * (args.train // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(args.train, generator=g)
        total = 0.0
        for step in range(args.train // args.batch):
            batch = order[step * args.batch : (step + 1) * args.batch]
            x = augment(images[batch].float() / 255, g)
            loss = F.cross_entropy(model(x), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
        held = accuracy(model, held_out["image"], held_out["label"])
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {total / (args.train // args.batch):.4f}, "
            f"held-out accuracy {held:.4f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    model.eval()
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    # Report the accuracy of the weights exactly as shipped (float16, loaded back as float32).
    shipped = ShapesNet()
    shipped.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    )
    final = accuracy(shipped, held_out["image"], held_out["label"])
    size = args.out.stat().st_size / 2**20
    print(f"final held-out accuracy {final:.4f}; saved {args.out} ({size:.2f} MiB)")


if __name__ == "__main__":
    main()
