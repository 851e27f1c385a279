"""What the training scripts share: the seeded loop, and float16 weights saved and read back."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def arguments(doc: str, *, epochs: int, train: int, out: Path) -> argparse.Namespace:
    """The options every training script takes, with its own defaults."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--train", type=int, default=train)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=out)
    return parser.parse_args()


def augment(images: Tensor, g: torch.Generator) -> Tensor:
    """Flips and quarter turns: the classes (and the shortcut's tag colours) are invariant."""
    if bool(torch.rand(1, generator=g) < 0.5):
        images = images.flip(3)
    return torch.rot90(images, int(torch.randint(0, 4, (1,), generator=g)), dims=(2, 3))


def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in images.split(256)])
    return float((predicted == labels).float().mean())


def fit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    batch: int,
    g: torch.Generator,
    after_epoch: Callable[[int, float], str],
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
) -> None:
    """AdamW with a one-cycle schedule over uint8 `images`, augmented; after each epoch prints
    ``after_epoch(epoch, mean loss)`` and the seconds since the start."""
    start = time.perf_counter()
    count = len(images)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * (count // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(count, generator=g)
        total = 0.0
        for step in range(count // batch):
            chosen = order[step * batch : (step + 1) * batch]
            loss = F.cross_entropy(model(augment(images[chosen].float() / 255, g)), labels[chosen])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
        said = after_epoch(epoch, total / (count // batch))
        print(f"{said} ({time.perf_counter() - start:.0f} s)", flush=True)


def evidence_said(check: dict[str, float], out: Path) -> str:
    """The shipped shortcut model's evidence (`camkit.models.shortcut.evidence_check`), said."""
    size = out.stat().st_size / 2**20
    return (
        f"shipped weights on the conflict split: follows the tag {check['follows_tag']:.4f}, "
        f"the shape {check['follows_shape']:.4f}; removing the tag changes the prediction "
        f"{check['tag_removed_changes']:.4f}, removing the shape "
        f"{check['shape_removed_changes']:.4f}; saved {out.name} ({size:.2f} MiB)"
    )


def save_half(model: nn.Module, out: Path, fresh: nn.Module) -> nn.Module:
    """Save the weights as float16 to `out`; return `fresh` with them loaded back as float32,
    the weights exactly as shipped."""
    model.eval()
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    fresh.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return fresh.eval()


def _patch_tokens(vit: nn.Module, x: Tensor) -> Tensor:
    """A `ShapesViT`'s patch tokens after its last block and final norm (class token left out)."""
    patches = vit.patch_embed((x - vit.mean) / vit.std)
    tokens = patches.flatten(2).transpose(1, 2)
    tokens = torch.cat([vit.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
    tokens = vit.blocks(tokens + vit._positions((patches.shape[2], patches.shape[3])))
    out: Tensor = vit.norm(tokens)[:, 1:]
    return out


class TokenReadout(nn.Module):
    """A `ShapesViT` read out from its patch tokens instead of its class token: ``"max"``, the
    head applied to every token and the largest logit per class kept; ``"mean"``, the head on
    the tokens' mean (what a fresh class token, attending evenly, sees). A training aid and a
    diagnosis only: the shipped model reads its class token."""

    def __init__(self, vit: nn.Module, pool: str) -> None:
        super().__init__()
        self.vit, self.pool = vit, pool

    def forward(self, x: Tensor) -> Tensor:
        tokens = _patch_tokens(self.vit, x)
        if self.pool == "max":
            strongest: Tensor = self.vit.head(tokens).amax(dim=1)
            return strongest
        mean: Tensor = self.vit.head(tokens.mean(dim=1))
        return mean
