"""Train the bundled shortcut ViT, after finding why a plain training stays at chance (seeded;
about 10 minutes on 2 CPU cores, 3 of them the diagnosis).

    python scripts/train_vit_shortcut.py [--epochs 4] [--train 6000] [--out FILE] [--no-diagnosis]

`ShapesViT` on the training split of `camkit.data.ShortcutShapes` (seed 3000), where only the
tag's colour predicts the class; reported on the conflict split (seed 4000). The output is
docs/training_log_vit_shortcut.txt.

The diagnosis first: do the labels follow the tag, where the tag falls on the 8 px token grid,
whether a linear probe finds the tag in the stem's tokens (the tag's own token, a token away from
it, the mean and the maximum over tokens), and three epochs at 48 px with the class token (as
initialised for the bundled ViT, and as ViTs usually are), the mean of the patch tokens, or the
strongest patch token as the readout. Then the training: `--epochs` at 48 px read out from the
strongest token (the blocks learn to mark the tag's tokens), then `--epochs` at 96 px read out
from the class token (its attention learns to collect them). The shipped model is a plain
`ShapesViT`, read from its class token like the bundled one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from training import TokenReadout, accuracy, arguments, evidence_said, fit, save_half

from camkit.data import ShortcutShapes
from camkit.data.shortcut import TAG_COLOURS, TAG_SIDE
from camkit.models.shortcut import VIT_WEIGHTS_FILE, evidence_check
from camkit.models.vit import ShapesViT, load_vit_model

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "camkit" / "models" / VIT_WEIGHTS_FILE
PATCH = 8  # pixels per token side
LEARNING_RATE = 1e-3


def split(count: int, name: str, seed: int, size: int) -> dict[str, Tensor]:
    data = ShortcutShapes(count, split=name, seed=seed, size=size).stack()
    if name == "train":  # stored as the pixels a photo would have
        data["image"] = (data["image"] * 255).round().to(torch.uint8)
    return data


def tag_corners(masks: Tensor) -> tuple[Tensor, Tensor]:
    """The top-left pixel (row, column) of each image's tag."""
    rows = masks.any(dim=2).float().argmax(dim=1)
    columns = masks.any(dim=1).float().argmax(dim=1)
    return rows, columns


def tag_colour_class(images: Tensor, masks: Tensor) -> Tensor:
    """The class whose tag colour is nearest the tag's inside (its black border left out)."""
    rows, columns = tag_corners(masks)
    inside = torch.stack(
        [
            image[:, top + 1 : top + TAG_SIDE - 1, left + 1 : left + TAG_SIDE - 1].mean(dim=(1, 2))
            for image, top, left in zip(images.float() / 255, rows, columns, strict=True)
        ]
    )
    return torch.cdist(inside.double(), TAG_COLOURS).argmin(dim=1)


def probe(features: Tensor, labels: Tensor, train: int) -> float:
    """Held-out accuracy of a linear classifier (L-BFGS, light L2) fit on the first `train`."""
    mean, std = features[:train].mean(0), features[:train].std(0) + 1e-6
    features = (features - mean) / std
    weight = torch.zeros(features.shape[1], 6, requires_grad=True)
    bias = torch.zeros(6, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> Tensor:
        optimiser.zero_grad()
        value = F.cross_entropy(features[:train] @ weight + bias, labels[:train])
        value = value + 1e-3 * weight.square().sum()
        value.backward()
        return value

    optimiser.step(loss)  # type: ignore[arg-type]
    with torch.no_grad():
        predicted = (features[train:] @ weight + bias).argmax(1)
    return float((predicted == labels[train:]).float().mean())


def diagnose(
    train96: dict[str, Tensor],
    train48: dict[str, Tensor],
    conflict48: dict[str, Tensor],
    epochs: int,
) -> None:
    labels = train96["label"]
    follows = float(
        (tag_colour_class(train96["image"], train96["tag_mask"]) == labels).float().mean()
    )
    same = float((train96["shape"] == labels).float().mean())
    print(
        f"labels: the tag's colour gives the label on {follows:.4f} of the training split; the "
        f"shape agrees with it on {same:.4f} (chance 1/6 = 0.1667)"
    )
    rows, columns = tag_corners(train96["tag_mask"])
    spans = ((rows + TAG_SIDE - 1) // PATCH - rows // PATCH + 1) * (
        (columns + TAG_SIDE - 1) // PATCH - columns // PATCH + 1
    )
    shares = ", ".join(f"{k} tokens {float((spans == k).float().mean()):.3f}" for k in (1, 2, 4))
    print(f"grid: a {TAG_SIDE} px tag on the {PATCH} px token grid lies in {shares}")
    held = len(labels) * 2 // 3
    centre_row = ((rows + TAG_SIDE // 2) // PATCH).clamp(max=11)
    centre_column = ((columns + TAG_SIDE // 2) // PATCH).clamp(max=11)
    everyone = torch.arange(len(labels))
    images = train96["image"].float() / 255
    for name, vit in (("random", ShapesViT().eval()), ("shapes-ViT", load_vit_model())):
        with torch.no_grad():
            tokens = vit.patch_embed((images - vit.mean) / vit.std)  # (N, 64, 12, 12)
        probes = {
            "the tag's token": tokens[everyone, :, centre_row, centre_column],
            "a token 6 away": tokens[everyone, :, (centre_row + 6) % 12, (centre_column + 6) % 12],
            "the mean of the tokens": tokens.mean(dim=(2, 3)),
            "the maximum over the tokens": tokens.amax(dim=(2, 3)),
        }
        said = ", ".join(f"{k} {probe(v, labels, held):.3f}" for k, v in probes.items())
        print(f"linear probe for the tag's class on the {name} stem's tokens: {said}")
    readouts: dict[str, nn.Module] = {}
    for name in ("class token", "class token, ViT init", "mean of tokens", "strongest token"):
        torch.manual_seed(0)
        vit = ShapesViT()
        if name == "class token, ViT init":  # as timm initialises a ViT's class token and head
            nn.init.normal_(vit.cls_token, std=0.02)
            nn.init.zeros_(vit.head.weight)
            nn.init.zeros_(vit.head.bias)
        pool = {"mean of tokens": "mean", "strongest token": "max"}.get(name)
        readouts[name] = TokenReadout(vit, pool) if pool else vit
    for name, model in readouts.items():
        print(f"readout trial, {epochs} epochs at 48 px, read out from the {name}:", flush=True)

        def report(epoch: int, loss: float, model: nn.Module = model) -> str:
            held = accuracy(model, conflict48["image"], conflict48["label"])
            said = f"follows the tag on {held:.4f} of the conflict split"
            return f"  epoch {epoch + 1}: loss {loss:.4f}, {said}"

        fit(
            model,
            train48["image"],
            train48["label"],
            epochs=epochs,
            batch=64,
            g=torch.Generator().manual_seed(0),
            after_epoch=report,
            lr=LEARNING_RATE,
            weight_decay=0.05,
        )


def main() -> None:
    diagnosis = "--no-diagnosis" not in sys.argv
    if not diagnosis:
        sys.argv.remove("--no-diagnosis")
    args = arguments(__doc__ or "", epochs=4, train=6000, out=DEFAULT_OUT)
    start = time.perf_counter()
    train96, conflict96 = split(args.train, "train", 3000, 96), split(1000, "conflict", 4000, 96)
    train48, conflict48 = split(args.train, "train", 3000, 48), split(1000, "conflict", 4000, 48)
    print(
        f"generated {args.train} + 1000 images at 96 and 48 px in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    if diagnosis:
        diagnose(train96, train48, conflict48, epochs=3)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = ShapesViT()
    print(f"stage 1: {args.epochs} epochs at 48 px, read out from the strongest token", flush=True)

    def report(epoch: int, loss: float, conflict: dict[str, Tensor] = conflict48) -> str:
        held = accuracy(model, conflict["image"], conflict["label"])
        said = f"the class token follows the tag on {held:.4f} of the conflict split"
        return f"  epoch {epoch + 1}: loss {loss:.4f}, {said}"

    strongest = TokenReadout(model, "max")
    conflict_pair = (conflict48["image"], conflict48["label"])
    fit(
        strongest,
        train48["image"],
        train48["label"],
        epochs=args.epochs,
        batch=args.batch,
        g=g,
        after_epoch=lambda e, loss: (
            report(e, loss) + f" (strongest token {accuracy(strongest, *conflict_pair):.4f})"
        ),
        lr=LEARNING_RATE,
        weight_decay=0.05,
    )
    print(f"stage 2: {args.epochs} epochs at 96 px, read out from the class token", flush=True)
    fit(
        model,
        train96["image"],
        train96["label"],
        epochs=args.epochs,
        batch=args.batch,
        g=g,
        after_epoch=lambda e, loss: report(e, loss, conflict96),
        lr=LEARNING_RATE,
        weight_decay=0.05,
    )
    shipped = save_half(model, args.out, ShapesViT())
    print(evidence_said(evidence_check(shipped, conflict96), args.out))


if __name__ == "__main__":
    main()
