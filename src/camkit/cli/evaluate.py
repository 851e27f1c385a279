"""`camkit evaluate`: every metric for every method on a dataset; table, files and plots."""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Union

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from camkit.cli.common import (
    BUNDLED,
    IMAGE_SUFFIXES,
    SHORTCUT,
    LoadedModel,
    UsageError,
    add_model_options,
    add_ray_options,
    check_memory,
    check_options,
    default_workers,
    load_model,
    make_output_folder,
    parse_layer,
    parse_methods,
    progress_bar,
)
from camkit.errors import CamkitWarning
from camkit.evaluation import (
    METRICS,
    Batch,
    Evaluation,
    Report,
    Settings,
    needs_regions,
)
from camkit.files import OutputError, OutputFolder, shown
from camkit.images import MAX_SIDE, ImageReadError, read_image
from camkit.methods import METHODS
from camkit.plot import line_chart
from camkit.registry import lookup
from camkit.stream import Unreadable, read_chunks
from camkit.targets import select_output

SHAPES_SEED = 31337  # the held-out split of the bundled benchmark (training used other seeds)
SHORTCUT_SEED = 4000  # the conflict split the shortcut model's training script reports on
HARD = "hard"  # the deeper model's harder split
HARD_SEED = 6000  # its held-out images (training used seed 5000)
MASK_SUFFIX = ".mask.png"


def _square(picture: Tensor, side: int, nearest: bool = False) -> Tensor:
    """Resize the shorter side of (C, H, W) to `side` and crop the centre square."""
    height, width = picture.shape[1:]
    scale = side / min(height, width)
    size = (max(side, round(height * scale)), max(side, round(width * scale)))
    if nearest:
        picture = F.interpolate(picture[None], size=size, mode="nearest")[0]
    else:
        picture = F.interpolate(
            picture[None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0].clamp(0, 1)
    top, left = (size[0] - side) // 2, (size[1] - side) // 2
    return picture[:, top : top + side, left : left + side]


def _folder_dataset(folder: Path, loaded: LoadedModel) -> list[tuple[Path, int]]:
    """(image, class) pairs of a class-per-subfolder tree.

    When the model names its classes, every folder must be one of those names (an unknown
    folder is a usage error: numbering them instead would silently relabel every class); a tree
    that uses none of the names is numbered in sorted order (ImageFolder), with a warning.
    """
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise UsageError(
            f"{shown(folder)} has no class subfolders: expected {shown(folder)}/<class>/<image>"
        )
    known = list(loaded.classes or [])
    unknown = [name for name in classes if name not in known]
    by_name = bool(known) and not unknown
    if known and unknown and len(unknown) < len(classes):
        raise UsageError(
            f"class folder(s) {', '.join(shown(u) for u in unknown)} of {shown(folder)} are not "
            f"classes of the model; valid: {', '.join(known)}"
        )
    if known and not by_name:
        warnings.warn(
            f"no folder of {shown(folder)} is named after a class of the model: folders are "
            f"numbered in sorted order ({shown(classes[0])} = class 0 = {known[0]}, ...)",
            CamkitWarning,
            stacklevel=2,
        )
    items = []
    for number, name in enumerate(classes):
        label = known.index(name) if by_name else number
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.endswith(MASK_SUFFIX):
                items.append((path, label))
    if not items:
        raise UsageError(f"no images in the class subfolders of {shown(folder)}")
    return items


def _first_readable(items: list[tuple[Path, int]], max_side: int) -> Tensor:
    for path, _ in items:
        try:
            return read_image(path, max_side)
        except ImageReadError:
            continue  # reported when the batches read it
    raise UsageError("none of the images is readable")


def mask_path(image: Path) -> Path:
    """Where an image's optional object mask is: beside it, named <image stem>.mask.png."""
    return image.with_name(image.stem + MASK_SUFFIX)


Item = tuple[Tensor, int, "Tensor | None", str]
"""A dataset item: (model input, label, object mask or None, "" or why a mask was refused)."""


class FolderImages(Dataset[Item | Unreadable]):
    """A class-per-folder dataset read in worker processes: (model input, label, mask or None,
    problem), or `Unreadable` for an image that cannot be read. A mask that cannot be used (not
    readable, or not of its image's size) is left out with a line saying why; the image is
    still evaluated with the metrics that need no mask."""

    def __init__(self, items: list[tuple[Path, int]], side: int, loaded: LoadedModel) -> None:
        self.items, self.side, self.loaded = items, side, loaded
        # Images with a mask file (known before reading, to choose the metrics).
        self.masked = sum(_exists(mask_path(path)) for path, _ in items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Item | Unreadable:
        path, label = self.items[index]
        try:
            picture = read_image(path, MAX_SIDE)
        except ImageReadError as error:
            return Unreadable(path, str(error))
        mask, problem = self._mask(path, picture.shape[1:])
        square = _square(picture, self.side)
        return self.loaded.normalise(square), label, mask, problem

    def _mask(self, path: Path, size: tuple[int, ...]) -> tuple[Tensor | None, str]:
        """The image's mask at the input's size, or (None, why it is left out)."""
        where = mask_path(path)
        if not _exists(where):
            return None, ""
        left_out = f"{shown(path)} is evaluated without a mask"
        try:
            mask = read_image(where, MAX_SIDE)
        except ImageReadError as error:
            return None, f"{shown(where)}: {error}; {left_out}"
        if mask.shape[1:] != size:
            (mh, mw), (h, w) = mask.shape[1:], size
            return None, (f"{shown(where)} is {mw} x {mh} pixels but its image {w} x {h}: a mask "
                          f"must have its image's size; {left_out}")  # fmt: skip
        return _square(mask, self.side, nearest=True)[0] > 0.5, ""


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


class GeneratedImages(Dataset[Item]):
    """A generated benchmark as (model input, label, mask) items; `mask` names the sample's
    ground truth: the object (``"mask"``) or, for the shortcut benchmark, the tag
    (``"tag_mask"``: the localisation metrics then say how often a map points at the tag, the
    shortcut model's real evidence)."""

    def __init__(self, data: Any, mask: str = "mask") -> None:
        self.data, self.mask = data, mask
        self.masked = len(data)  # every generated image has its ground truth

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Item:
        sample = self.data[index]
        return sample["image"], int(sample["label"]), sample[self.mask], ""


Items = Union["FolderImages", GeneratedImages]


def _generated(name: str, count: int, side: int) -> GeneratedImages:
    """The held-out images of a bundled benchmark: shapes, shortcut (conflict split) or hard."""
    from camkit.data import HardShapes, ShapesDataset, ShortcutShapes

    if name == SHORTCUT:
        conflict = ShortcutShapes(count, split="conflict", size=side, seed=SHORTCUT_SEED)
        return GeneratedImages(conflict, "tag_mask")
    if name == HARD:
        return GeneratedImages(HardShapes(count, size=side, seed=HARD_SEED))
    return GeneratedImages(ShapesDataset(count, size=side, seed=SHAPES_SEED))


def _source(args: argparse.Namespace, loaded: LoadedModel) -> tuple[Items, int]:
    """The images to evaluate, as a dataset of (input, label, mask) items, and the highest label."""
    if args.data in (BUNDLED, SHORTCUT, HARD):
        from camkit.data import CLASSES

        count = args.limit if args.limit is not None else 200
        side = _checked_side(args, args.size or 96)
        return _generated(args.data, count, side), len(CLASSES) - 1
    if not Path(args.data).is_dir():
        raise UsageError(
            f"--data {shown(args.data)!r}: use 'shapes', 'shortcut' or 'hard' (bundled) or a "
            "folder of class subfolders"
        )
    items = _folder_dataset(Path(args.data), loaded)[: args.limit]
    side = args.size or loaded.size or min(_first_readable(items, MAX_SIDE).shape[1:])
    return FolderImages(items, _checked_side(args, side), loaded), max(label for _, label in items)


def _checked_side(args: argparse.Namespace, side: int) -> int:
    """The input side, once a batch of that size is known to fit in memory."""
    check_memory(f"--batch-size {args.batch_size} at {side} x {side} pixels", args.batch_size, side)
    return side


def to_batch(chunk: list[Any], device: str, fail: Callable[[str], None]) -> Batch | None:
    """One batch of read items (None if none was readable); unreadable images and refused
    masks are reported. Images without a mask get a blank one, marked in `Batch.masked`."""
    for unreadable in (c for c in chunk if isinstance(c, Unreadable)):
        fail(f"{shown(unreadable.item)}: {unreadable.reason}")
    read = [c for c in chunk if not isinstance(c, Unreadable)]
    for problem in (item[3] for item in read if item[3]):
        fail(problem)
    if not read:
        return None
    inputs = torch.stack([x for x, _, _, _ in read]).to(device)
    labels = torch.tensor([label for _, label, _, _ in read], device=device)
    has = [mask is not None for _, _, mask, _ in read]
    if not any(has):
        return Batch(inputs, labels)
    blank = torch.zeros(inputs.shape[2:], dtype=torch.bool)
    masks = torch.stack([blank if m is None else m for _, _, m, _ in read]).to(device)
    masked = None if all(has) else torch.tensor(has, device=device)
    return Batch(inputs, labels, masks, masked)


def _local_batches(
    data: Items, args: argparse.Namespace, fail: Callable[[str], None]
) -> Iterator[tuple[int, Batch]]:
    """(position, batch) for chunks of `--batch-size` items, read by `--workers` processes
    while the model works on the previous batch."""
    for number, chunk in enumerate(read_chunks(data, args.batch_size, args.workers)):
        batch = to_batch(chunk, args.device, fail)
        if batch is not None:
            yield number * args.batch_size, batch


def _first_batch(data: Items, args: argparse.Namespace) -> tuple[int, Batch] | None:
    """The first readable chunk, read here to check the model and methods (its unreadable
    images are reported when the workers read them)."""
    for position in range(0, len(data), args.batch_size):
        end = min(len(data), position + args.batch_size)
        batch = to_batch([data[i] for i in range(position, end)], args.device, lambda _: None)
        if batch is not None:
            return position, batch
    return None


def _write_plots(report: Report, out: OutputFolder) -> list[str]:
    written = []
    charts = []
    for name, what in (("deletion", "deleted"), ("insertion", "inserted")):
        series = {m: c[name] for m, c in report.curves.items() if name in c}
        if series:
            steps = len(next(iter(series.values()))) - 1
            xs = [i / steps for i in range(steps + 1)]
            title = f"{name.capitalize()} curves (mean over {report.info['images']} images)"
            charts.append((name, series, xs, title, f"share of pixels {what}", "probability"))
    for order in ("morf", "lerf"):
        series = {m: c[f"road_{order}"] for m, c in report.curves.items() if f"road_{order}" in c}
        if series:
            title = f"ROAD {order.upper()}: accuracy after removing pixels"
            xs = [float(p) for p in report.info["road_percentages"]]
            charts.append((f"road_{order}", series, xs, title, "% of pixels removed", "accuracy"))
    for key, label in (("spearman", "Spearman rank correlation"), ("ssim", "SSIM")):
        series = {m: s[key] for m, s in report.sanity.items()}
        if series:
            steps = len(next(iter(series.values())))
            title = f"Sanity check: {label} with the original map (1 = unchanged)"
            xlabel = "layers randomised, from the output down"
            charts.append(
                (f"sanity_{key}", series, list(range(1, steps + 1)), title, xlabel, label)
            )
    for name, series, xs, title, xlabel, ylabel in charts:
        chart = line_chart(series, xs, title=title, xlabel=xlabel, ylabel=ylabel)
        out.write(f"{name}.png", functools.partial(_save_png, chart))
        written.append(f"{name}.png")
    return written


def _save_png(picture: Image.Image, handle: BinaryIO) -> None:
    picture.save(handle, format="PNG")


def _applicable(
    methods: list[str],
    model: torch.nn.Module,
    layer: list[str] | None,
    first: Batch,
    fail: Callable[..., None],
) -> list[str]:
    """The methods that work on this model, tried on one image; the others are reported."""
    usable = []
    for method in methods:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CamkitWarning)  # the real run warns
                METHODS[method](model, layer=layer)(first.inputs[:1], first.labels[:1])
        except (ValueError, TypeError, RuntimeError) as error:
            fail(f"{method}: {str(error).splitlines()[0]}", skipped=0)
        else:
            usable.append(method)
    return usable


def _fill(text: str, inputs: Tensor) -> float | Tensor:
    """--fill: "mean" (per channel, of the first batch: RISE's choice) or a number."""
    if text == "mean":
        return inputs.mean(dim=(0, 2, 3))
    try:
        return float(text)
    except ValueError:
        raise UsageError(
            f"--fill {text!r}: give 'mean' or a number (in the model's input space)"
        ) from None


def _check_metrics(text: str | None) -> list[str] | None:
    """Metric names from "a,b"; None (all the data allows) when not given or empty."""
    if text is None or not text.strip():
        return None
    chosen = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not chosen:
        raise UsageError(f"--metrics {text!r} names no metric; valid: {', '.join(METRICS)}")
    for metric in chosen:
        try:
            lookup(METRICS, "metric", metric)
        except ValueError as error:
            raise UsageError(str(error)) from None
    return chosen


def _with_masks_or_not(chosen: list[str] | None, data: Items, name: str) -> list[str]:
    """The metrics to run: those chosen, or all that the data allows (the localisation ones
    when at least one image has a mask). Chosen localisation metrics with no mask at all are
    left out with a warning that says why."""
    regions = needs_regions()
    if chosen is None:
        return [m for m in METRICS if data.masked or m not in regions]
    missing = [m for m in chosen if m in regions]
    if missing and not data.masked:
        warnings.warn(
            f"{', '.join(missing)}: no image of {shown(name)} has an object mask (<image stem>"
            f"{MASK_SUFFIX} beside the image), so these columns are left out",
            CamkitWarning,
            stacklevel=2,
        )
    return chosen


REPORT_FILES = ("results.md", "results.csv", "results.json")
PLOTS = ("deletion", "insertion", "road_morf", "road_lerf", "sanity_spearman", "sanity_ssim")


def _check_free(out: Path) -> None:
    """Before any work: the report's names in `out` are free, or camkit's own."""
    try:
        taken = OutputFolder(out).taken([*REPORT_FILES, *(f"{p}.png" for p in PLOTS)])
    except OutputError as error:
        raise UsageError(f"--out {shown(out)}: {error}") from None
    if taken:
        raise UsageError(
            f"--out {shown(out)}: {', '.join(taken)} there were not written by camkit and are "
            "not replaced: move them, or choose another output folder"
        )


def _write_report(report: Report, out: Path) -> int:
    """results.md/.csv/.json and the plots, each written whole, never over a file camkit did
    not write; returns the plot count."""
    folder = OutputFolder(out)
    folder.write_text("results.md", report.to_markdown())
    folder.write_text("results.csv", report.to_csv())
    folder.write_text("results.json", report.to_json())
    return len(_write_plots(report, folder))


def evaluate_command(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods) or list(METHODS)
    chosen = _check_metrics(args.metrics)
    check_options(args)
    _check_free(Path(args.out))
    if args.fill != "mean":
        _fill(args.fill, torch.zeros(1, 3, 1, 1))  # a usage error now, not after loading
    loaded = load_model(args.model, args.weights, args.trust_model)
    model = loaded.model.to(args.device).eval()
    layer = parse_layer(args, model)
    failures = 0
    progress = progress_bar(0, "evaluating")

    def fail(message: str, *, skipped: int = 1) -> None:
        nonlocal failures
        failures += 1
        progress.clear()
        print(f"camkit: error: {message}", file=sys.stderr)
        progress.update(skipped)  # the bar still ends at the total

    data, highest = _source(args, loaded)
    count = len(data)
    if args.ray is not None:
        first = _first_batch(data, args)
    else:
        batches = _local_batches(data, args, fail)
        first = next(batches, None)
    if first is None:
        raise UsageError("no readable images to evaluate")
    with torch.no_grad():
        classes = select_output(model(first[1].inputs[:1])).shape[-1]
    if highest >= classes:
        raise UsageError(
            f"class {highest} of the data does not exist in a model with {classes} outputs: name "
            "the subfolders after the model's classes, or match its class order"
        )
    methods = _applicable(methods, model, layer, first[1], fail)
    if not methods:
        return 1
    chosen = _with_masks_or_not(chosen, data, args.data)
    settings = Settings(
        steps=args.steps,
        fill=_fill(args.fill, first[1].inputs),
        tolerance=args.tolerance,
        sanity_images=args.sanity_images,
        seed=args.seed,
    )
    progress.close()
    progress = progress_bar(count, "evaluating")
    out = Path(args.out)
    make_output_folder(out)
    started = time.perf_counter()
    evaluation = Evaluation(model, methods, chosen, settings=settings, layer=layer)
    interrupted = False
    try:
        if args.ray is not None:
            from camkit.cli.on_ray import evaluate_on_ray

            results = evaluate_on_ray(args, model, data, evaluation, fail)
        else:
            results = (evaluation.measure(batch, position)
                       for position, batch in itertools.chain([first], batches))  # fmt: skip
        for result in results:
            evaluation.add(result)
            progress.update(result.images)
        report = evaluation.report()
    except KeyboardInterrupt:
        report, interrupted = evaluation.report(finish=False), True
        report.info["interrupted"] = True
    except (ValueError, TypeError, RuntimeError) as error:
        fail(str(error).splitlines()[0])
        return 1
    finally:
        progress.close()
    report.info.update(
        model=loaded.name,
        data=args.data,
        methods=methods,
        seconds=round(time.perf_counter() - started, 1),
        command="camkit " + " ".join(args.argv),
    )
    if interrupted and not report.info["images"]:
        print("\ncamkit: interrupted before the first batch was done", file=sys.stderr)
        return 130
    if not interrupted:
        print(report.to_markdown(), end="")
    try:
        plots = _write_report(report, out)
    except OutputError as error:
        fail(str(error))
        return 1
    if interrupted:
        print(
            f"\ncamkit: interrupted; wrote the results of the {report.info['images']} images "
            f"finished (of {count}) to {shown(out)}/",
            file=sys.stderr,
        )
        return 130
    print(
        f"camkit: evaluated {report.info['images']} images x {len(methods)} methods in "
        f"{report.info['seconds']} s; wrote results.md/.csv/.json and {plots} plots to "
        f"{shown(out)}/"
    )
    return 1 if failures else 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the command and its options."""
    parser = commands.add_parser(
        "evaluate",
        help="score methods with faithfulness, localisation and sanity metrics",
        description="Evaluate CAM methods on a dataset: a table (terminal, Markdown, CSV, JSON) "
        "and plots. No arguments: every method on the bundled model and benchmark.",
    )
    add_model_options(parser)
    parser.add_argument(
        "--data",
        default=BUNDLED,
        help="'shapes' (the bundled benchmark, with masks), 'shortcut' (the shortcut benchmark's "
        "conflict split, the tag as the mask; with --model shortcut), 'hard' (the harder "
        "split, for --model deep --layer features.6.0) or a folder of class subfolders; "
        f"an optional mask next to an image is named <image stem>{MASK_SUFFIX}",
    )
    parser.add_argument("--methods", help="comma-separated, or 'all' (default: all)")
    parser.add_argument(
        "--metrics",
        help=f"comma-separated, from: {', '.join(METRICS)} (default: all the data allows)",
    )
    parser.add_argument(
        "--limit", type=int, help="evaluate the first N images (default: 200 for shapes, all)"
    )
    parser.add_argument("--out", default="camkit-eval", help="output folder")
    parser.add_argument("--batch-size", type=int, default=50, help="images per batch")
    parser.add_argument(
        "--size",
        type=int,
        help="square input side (default: 96 for the benchmark; for a folder the model's "
        "preprocessing, else the first image's shorter side)",
    )
    parser.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    parser.add_argument(
        "--fill",
        default="mean",
        help="value of deleted pixels and of Average Drop's masked-out pixels, in the model's "
        "input space: 'mean' (per channel, measured on the first batch; default) or a number",
    )
    parser.add_argument(
        "--tolerance", type=float, help="pointing game, pixels (default: 15 at 224, scaled)"
    )
    parser.add_argument(
        "--sanity-images", type=int, default=16, help="images for the randomisation check"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds ROAD noise, randomisation")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help=f"processes that read and decode a folder's images (default: {default_workers()} "
        "here; 0: read in the main process)",
    )
    add_ray_options(parser)
    parser.set_defaults(run=evaluate_command)
