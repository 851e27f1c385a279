"""Train the bundled shortcut model (seeded; about 3 minutes on 2 CPU cores).

    python scripts/train_shortcut.py [--epochs 6] [--train 6000] [--out FILE]

`ShapesNet` on the training split of `camkit.data.ShortcutShapes` (seed 3000), where only the
tag's colour predicts the class. Prints, on the conflict split (seed 4000, tag and shape always
disagree): how often it follows the tag, and how often removing the tag or the shape changes
its prediction. Saves the weights as float16.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from train_shapes import accuracy, augment

from camkit.data import ShortcutShapes
from camkit.models.shapes import ShapesNet
from camkit.models.shortcut import WEIGHTS_FILE, evidence_check

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "camkit" / "models" / WEIGHTS_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    train = ShortcutShapes(args.train, split="train", seed=3000).stack()
    conflict = ShortcutShapes(1000, split="conflict", seed=4000).stack()
    images = (train["image"] * 255).round().to(torch.uint8)
    labels = train["label"]
    print(f"generated {args.train} + 1000 images in {time.perf_counter() - start:.0f} s",
          flush=True)  # fmt: skip
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
            loss = F.cross_entropy(model(augment(images[batch].float() / 255, g)), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
        follows = accuracy(model, conflict["image"], conflict["label"])
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / (args.train // args.batch):.4f}, "
              f"follows the tag on {follows:.4f} of the conflict split "
              f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    model.eval()
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    shipped = ShapesNet()
    shipped.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    )
    check = evidence_check(shipped.eval(), conflict)
    size = args.out.stat().st_size / 2**20
    print(f"shipped weights on the conflict split: follows the tag {check['follows_tag']:.4f}, "
          f"the shape {check['follows_shape']:.4f}; removing the tag changes the prediction "
          f"{check['tag_removed_changes']:.4f}, removing the shape "
          f"{check['shape_removed_changes']:.4f}; saved {args.out} ({size:.2f} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
