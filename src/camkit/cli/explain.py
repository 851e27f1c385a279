"""`camkit explain`: overlays, a grid and a JSON summary per image."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from camkit.cli.common import (
    BUNDLED,
    IMAGE_SUFFIXES,
    LoadedModel,
    Progress,
    UsageError,
    add_model_options,
    bundled_samples,
    check_device,
    load_model,
    parse_layer,
    parse_methods,
)
from camkit.explanation import Explanation
from camkit.methods import METHODS
from camkit.overlay import grid, overlay, to_pil
from camkit.targets import TopK


def _inputs(paths: Sequence[str]) -> Iterator[Path]:
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path  # missing or unreadable files are reported when read


def _targets(args: argparse.Namespace, loaded: LoadedModel) -> int | TopK | None:
    if args.top is not None:
        return TopK(args.top)
    if args.target is None:
        return None
    if args.target.isdigit():
        return int(args.target)
    if loaded.classes and args.target in loaded.classes:
        return list(loaded.classes).index(args.target)
    valid = ", ".join(loaded.classes) if loaded.classes else "class indices"
    raise UsageError(f"unknown target class {args.target!r}; valid: {valid}")


@dataclass
class Item:
    path: Path
    stem: str
    picture: Tensor
    model_input: Tensor


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 2
    while stem in used:
        stem, n = f"{path.stem}-{n}", n + 1
    used.add(stem)
    return stem


def _write(
    items: list[Item],
    results: dict[str, Explanation],
    loaded: LoadedModel,
    out: Path,
    colormap: str,
    alpha: float,
) -> list[Path]:
    written: list[Path] = []
    first = next(iter(results.values()))
    logits = first.outputs if isinstance(first.outputs, Tensor) else None
    for b, item in enumerate(items):
        k_count = first.maps.shape[1]
        files: dict[str, list[str]] = {}
        rows = [[to_pil(item.picture)] for _ in range(k_count)]
        for method, result in results.items():
            for k in range(k_count):
                picture = overlay(item.picture, result.maps[b, k], colormap=colormap, alpha=alpha)
                suffix = "" if k_count == 1 else f"_{k + 1}"
                path = out / f"{item.stem}_{method}{suffix}.png"
                picture.save(path)
                files.setdefault(method, []).append(path.name)
                written.append(path)
                rows[k].append(picture)
        targets = [
            {
                "class": int(first.targets[b, k]) if first.targets is not None else None,
                "name": loaded.class_name(int(first.targets[b, k]))
                if first.targets is not None
                else None,
                "score": float(first.scores[b, k]),
            }
            for k in range(k_count)
        ]
        row_titles = [f"{t['name']}  score {t['score']:.2f}" for t in targets]
        grid_path = out / f"{item.stem}_grid.png"
        grid(rows, ["image", *results], row_titles).save(grid_path)
        written.append(grid_path)
        summary = {
            "image": str(item.path),
            "model": loaded.name,
            "input_size": list(item.picture.shape[1:]),
            "layers": list(first.layers),
            "predictions": _predictions(logits[b], loaded) if logits is not None else [],
            "targets": targets,
            "methods": list(results),
            "files": {"overlays": files, "grid": grid_path.name},
        }
        json_path = out / f"{item.stem}.json"
        json_path.write_text(json.dumps(summary, indent=2) + "\n")
        written.append(json_path)
    return written


def _predictions(logits: Tensor, loaded: LoadedModel, top: int = 5) -> list[dict[str, object]]:
    probabilities = logits.float().softmax(dim=0)
    best = logits.topk(min(top, logits.numel()))
    return [
        {
            "class": int(i),
            "name": loaded.class_name(int(i)),
            "score": float(s),
            "probability": float(probabilities[i]),
        }
        for s, i in zip(best.values, best.indices, strict=True)
    ]


def explain_command(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    check_device(args.device)
    loaded = load_model(args.model, args.weights)
    if args.size is not None:
        loaded.size = args.size or None
    if args.mean is not None or args.std is not None:
        loaded.mean, loaded.std = tuple(args.mean or (0.0,) * 3), tuple(args.std or (1.0,) * 3)
    model = loaded.model.to(args.device).eval()
    if methods is None:
        methods = ["gradcam", "gradcam++"] + (["cam"] if loaded.name == BUNDLED else [])
    layer = parse_layer(args, model)
    targets = _targets(args, loaded)
    explainers: dict[str, Callable[..., Explanation]] = {
        m: METHODS[m](model, layer=layer) for m in methods
    }

    paths = list(_inputs(args.inputs)) if args.inputs else bundled_samples()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures, written, used = 0, 0, set()
    broken: set[str] = set()
    progress = Progress(len(paths))

    def fail(message: str) -> None:
        nonlocal failures
        failures += 1
        if progress.shown and progress.done < progress.total:
            print(file=sys.stderr)
        print(f"camkit: error: {message}", file=sys.stderr)

    for start in range(0, len(paths), args.batch_size):
        items: list[Item] = []
        for path in paths[start : start + args.batch_size]:
            try:
                with Image.open(path) as image:
                    picture, model_input = loaded.prepare(image)
            except FileNotFoundError:
                fail(f"{path}: no such file")
            except (UnidentifiedImageError, OSError) as error:
                fail(f"{path}: not a readable image ({type(error).__name__})")
            else:
                items.append(Item(path, _unique_stem(path, used), picture, model_input))
        groups: dict[tuple[int, ...], list[Item]] = {}
        for item in items:  # one batch per input size
            groups.setdefault(tuple(item.model_input.shape), []).append(item)
        for group in groups.values():
            x = torch.stack([item.model_input for item in group]).to(args.device)
            results = {}
            for method, explainer in explainers.items():
                if method in broken:
                    continue
                try:
                    results[method] = explainer(x, targets)
                except (ValueError, TypeError, RuntimeError) as error:
                    broken.add(method)  # the same model fails the same way for every batch
                    fail(f"{method}: {str(error).splitlines()[0]}")
            if results:
                written += len(_write(group, results, loaded, out, args.colormap, args.alpha))
        progress.advance(min(args.batch_size, len(paths) - start))
    print(f"camkit: wrote {written} files for {len(paths)} input(s) to {out}/")
    return 1 if failures else 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the command and its options."""
    parser = commands.add_parser(
        "explain",
        help="explain images: overlays, a grid and a JSON summary per image",
        description="Explain images (files or folders; none: the bundled samples) with a model.",
    )
    parser.add_argument("inputs", nargs="*", help="image files or folders (default: samples)")
    add_model_options(parser)
    parser.add_argument(
        "--methods",
        help=f"comma-separated, from: {', '.join(METHODS)} (default: gradcam,gradcam++"
        ", and cam for the bundled model)",
    )
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--target", help="class index or name to explain (default: predicted)")
    chosen.add_argument("--top", type=int, help="explain each image's K best classes")
    parser.add_argument("--out", default="camkit-out", help="output folder (default: camkit-out)")
    parser.add_argument("--colormap", default="jet", help="jet, hot, gray, or a matplotlib name")
    parser.add_argument("--alpha", type=float, default=0.5, help="heat-map opacity in [0, 1]")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--size",
        type=int,
        help="resize the shorter side to N pixels (0: keep; default: the "
        "weights' preprocessing for torchvision models, the image's size otherwise)",
    )
    parser.add_argument("--mean", type=float, nargs=3, help="normalisation mean (R G B)")
    parser.add_argument("--std", type=float, nargs=3, help="normalisation std (R G B)")
    parser.set_defaults(run=explain_command)
