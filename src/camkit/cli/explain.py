"""`camkit explain`: overlays, a grid and a JSON summary per image.

Failures are per input and per method: each is one line naming both, and everything else is
written. Outputs are written to a temporary name and renamed, so an interrupted run (Ctrl-C,
exit 130) leaves only complete files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image
from torch import Tensor

from camkit.cli.common import (
    BUNDLED,
    IMAGE_SUFFIXES,
    LoadedModel,
    Progress,
    UsageError,
    add_model_options,
    bundled_samples,
    check_options,
    load_model,
    make_output_folder,
    parse_layer,
    parse_methods,
)
from camkit.explanation import Explanation
from camkit.files import OutputError, shown, write_file, write_text
from camkit.images import MAX_SIDE, ImageReadError, read_image
from camkit.methods import METHODS, Explainer
from camkit.overlay import grid, overlay, to_pil
from camkit.targets import TopK, select_output


def _inputs(paths: Sequence[str]) -> Iterator[Path]:
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path  # missing or unreadable files are reported when read


def _targets(args: argparse.Namespace, loaded: LoadedModel) -> int | TopK | None:
    """The --target / --top choice, checked against the model's classes where they are known."""
    count = len(loaded.classes) if loaded.classes else None
    if args.top is not None:
        if count is not None and args.top > count:
            raise UsageError(f"--top {args.top}: the model has only {count} classes")
        return TopK(args.top)
    if args.target is None:
        return None
    if args.target.isdigit():
        index = int(args.target)
        if count is not None and index >= count:
            raise UsageError(
                f"unknown target class {index}: the model has {count} classes, 0 to {count - 1}"
            )
        return index
    if loaded.classes and args.target in loaded.classes:
        return list(loaded.classes).index(args.target)
    valid = ", ".join(loaded.classes) if loaded.classes else "class indices"
    raise UsageError(f"unknown target class {shown(args.target)!r}; valid: {valid}")


def _check_target_range(model: torch.nn.Module, x: Tensor, targets: int | TopK | None) -> None:
    """For a model without class names: the classes asked for exist (one forward of one input)."""
    if targets is None:
        return
    with torch.inference_mode():
        count = select_output(model(x[:1])).shape[-1]
    asked = targets.k if isinstance(targets, TopK) else targets + 1
    if asked > count:
        what = f"--top {asked}" if isinstance(targets, TopK) else f"target class {targets}"
        raise UsageError(f"{what}: the model has {count} classes (0 to {count - 1})")


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


@dataclass
class Run:
    """The state of one `camkit explain` run: what was written, what failed."""

    args: argparse.Namespace
    loaded: LoadedModel
    model: torch.nn.Module
    explainers: dict[str, Explainer]
    targets: int | TopK | None
    out: Path
    progress: Progress
    written: int = 0
    failures: int = 0
    done: int = 0
    checked: bool = False  # target classes checked against the model's outputs

    def fail(self, message: str) -> None:
        self.failures += 1
        if self.progress.shown and self.progress.done < self.progress.total:
            print(file=sys.stderr)
        print(f"camkit: error: {message}", file=sys.stderr)

    def read(self, paths: Sequence[Path], used: set[str]) -> list[Item]:
        items = []
        for path in paths:
            try:
                picture, model_input = self.loaded.prepare(read_image(path, self.args.max_size))
            except ImageReadError as error:
                self.fail(f"{shown(path)}: {error}")
            else:
                items.append(Item(path, _unique_stem(path, used), picture, model_input))
        return items

    def explain(self, group: list[Item]) -> list[dict[str, tuple[Explanation, int]]]:
        """Per item: method -> (explanation, row). A failure is retried input by input, so it
        is reported for the inputs that cause it and every other input is still explained."""
        x = torch.stack([item.model_input for item in group]).to(self.args.device)
        if not self.checked and self.loaded.classes is None:
            _check_target_range(self.model, x, self.targets)
            self.checked = True
        found: list[dict[str, tuple[Explanation, int]]] = [{} for _ in group]
        for method, explainer in self.explainers.items():
            try:
                result = explainer(x, self.targets)
            except Exception as error:  # a model can raise anything; reported per input below
                if len(group) == 1:
                    self.fail(f"{shown(group[0].path)}: {method}: {_reason(error)}")
                    continue
                for b in range(len(group)):
                    try:
                        found[b][method] = (explainer(x[b : b + 1], self.targets), 0)
                    except Exception as one_error:  # as above, one input at a time
                        self.fail(f"{shown(group[b].path)}: {method}: {_reason(one_error)}")
            else:
                for b in range(len(group)):
                    found[b][method] = (result, b)
        return found

    def write(self, item: Item, results: dict[str, tuple[Explanation, int]]) -> None:
        try:
            self.written += _write_item(item, results, self.loaded, self.out, self.args)
        except OutputError as error:
            self.fail(f"{shown(item.path)}: {error}")


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(error, (ValueError, TypeError)) and first:
        return first
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _png(picture: Image.Image) -> Callable[[BinaryIO], None]:
    return lambda handle: picture.save(handle, format="PNG")


def _write_item(
    item: Item,
    results: dict[str, tuple[Explanation, int]],
    loaded: LoadedModel,
    out: Path,
    args: argparse.Namespace,
) -> int:
    """Overlays, grid and JSON summary of one input; returns how many files were written."""
    first, row = next(iter(results.values()))
    k_count = first.maps.shape[1]
    written = 0
    files: dict[str, list[str]] = {}
    rows = [[to_pil(item.picture)] for _ in range(k_count)]
    for method, (result, b) in results.items():
        for k in range(k_count):
            picture = overlay(item.picture, result.maps[b, k], args.colormap, args.alpha)
            suffix = "" if k_count == 1 else f"_{k + 1}"
            path = out / f"{item.stem}_{method}{suffix}.png"
            write_file(path, _png(picture))
            written += 1
            files.setdefault(method, []).append(path.name)
            rows[k].append(picture)
    targets = [
        {
            "class": None if first.targets is None else int(first.targets[row, k]),
            "name": None
            if first.targets is None
            else loaded.class_name(int(first.targets[row, k])),
            "score": float(first.scores[row, k]),
        }
        for k in range(k_count)
    ]
    row_titles = [f"{t['name']}  score {t['score']:.2f}" for t in targets]
    grid_path = out / f"{item.stem}_grid.png"
    write_file(grid_path, _png(grid(rows, ["image", *results], row_titles)))
    logits = first.outputs if isinstance(first.outputs, Tensor) else None
    summary = {
        "image": str(item.path),
        "model": loaded.name,
        "input_size": list(item.picture.shape[1:]),
        "layers": list(first.layers),
        "predictions": _predictions(logits[row], loaded) if logits is not None else [],
        "targets": targets,
        "methods": list(results),
        "files": {"overlays": files, "grid": grid_path.name},
    }
    write_text(out / f"{item.stem}.json", json.dumps(summary, indent=2) + "\n")
    return written + 2


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
    check_options(args)
    loaded = load_model(args.model, args.weights, args.trust_model)
    if args.size is not None:
        loaded.size = args.size or None
    if args.mean is not None or args.std is not None:
        loaded.mean, loaded.std = tuple(args.mean or (0.0,) * 3), tuple(args.std or (1.0,) * 3)
    model = loaded.model.to(args.device).eval()
    if methods is None:
        methods = ["gradcam", "gradcam++"] + (["cam"] if loaded.name == BUNDLED else [])
    layer = parse_layer(args, model)
    targets = _targets(args, loaded)
    explainers = {m: METHODS[m](model, layer=layer) for m in methods}
    paths = list(_inputs(args.inputs)) if args.inputs else bundled_samples()
    out = Path(args.out)
    make_output_folder(out)
    run = Run(args, loaded, model, explainers, targets, out, Progress(len(paths)))
    used: set[str] = set()
    try:
        for start in range(0, len(paths), args.batch_size):
            chunk = paths[start : start + args.batch_size]
            groups: dict[tuple[int, ...], list[Item]] = {}
            for item in run.read(chunk, used):  # one batch per input size
                groups.setdefault(tuple(item.model_input.shape), []).append(item)
            for group in groups.values():
                for item, results in zip(group, run.explain(group), strict=True):
                    if results:
                        run.write(item, results)
            run.done += len(chunk)
            run.progress.advance(len(chunk))
    except KeyboardInterrupt:
        print(
            f"\ncamkit: interrupted after {run.done} of {len(paths)} input(s); wrote "
            f"{run.written} complete files to {shown(out)}/",
            file=sys.stderr,
        )
        return 130
    print(f"camkit: wrote {run.written} files for {len(paths)} input(s) to {shown(out)}/")
    return 1 if run.failures else 0


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
    parser.add_argument(
        "--max-size",
        type=int,
        default=MAX_SIDE,
        help=f"scale images whose longer side is over N pixels down to N before anything else "
        f"(default {MAX_SIDE}; 0: full size, memory grows with the image)",
    )
    parser.add_argument("--mean", type=float, nargs=3, help="normalisation mean (R G B)")
    parser.add_argument("--std", type=float, nargs=3, help="normalisation std (R G B)")
    parser.set_defaults(run=explain_command)
