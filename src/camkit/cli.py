"""The `camkit` command: explain image files with any model, write overlays, grids and JSON.

Exit codes: 0 everything was written; 1 some inputs or methods failed (the rest was written);
2 the command itself is wrong (unknown model, method, layer or option): nothing was written.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import pickle
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from camkit.errors import CamkitWarning
from camkit.evaluation import METRICS, NEEDS_REGIONS, Batch, Report, Settings, evaluate
from camkit.explanation import Explanation
from camkit.layers import resolve_layers
from camkit.methods import METHODS
from camkit.overlay import grid, overlay, to_pil, to_tensor
from camkit.plot import line_chart
from camkit.targets import TopK, select_output

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
BUNDLED = "shapes"


class UsageError(Exception):
    """The command line asks for something that does not exist: exit code 2, nothing written."""


@dataclass
class LoadedModel:
    """A model ready to explain, with how to prepare its input and name its classes."""

    name: str
    model: nn.Module
    size: int | None  # shorter side of the input, None = keep the image's size
    mean: tuple[float, ...] | None  # normalisation applied after resizing, None = none
    std: tuple[float, ...] | None
    classes: Sequence[str] | None

    def prepare(self, image: Image.Image) -> tuple[Tensor, Tensor]:
        """(picture shown in [0, 1], model input), both (3, H, W), from a PIL image."""
        picture = to_tensor(image)
        if self.size:
            height, width = picture.shape[1:]
            scale = self.size / min(height, width)
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            picture = F.interpolate(
                picture[None], size=size, mode="bilinear", align_corners=False, antialias=True
            )[0].clamp(0, 1)
        return picture, self.normalise(picture)

    def normalise(self, picture: Tensor) -> Tensor:
        """The model's input for a (3, H, W) picture in [0, 1]."""
        if self.mean is None or self.std is None:
            return picture
        mean = torch.tensor(self.mean)[:, None, None]
        return (picture - mean) / torch.tensor(self.std)[:, None, None]

    def class_name(self, index: int) -> str:
        return self.classes[index] if self.classes and index < len(self.classes) else str(index)


def _load_state(path: Path) -> dict[str, Tensor]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise UsageError(f"{path} is not a readable PyTorch checkpoint ({error})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict):
        raise UsageError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def _load_into(model: nn.Module, state: dict[str, Tensor], source: str, target: str) -> None:
    """Load a state dict; a mismatch is a usage error naming the first problem."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UsageError(f"{source} does not fit {target}: {first}") from None


def _torchvision_model(name: str, weights: str | None) -> LoadedModel:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(
            f"unknown model {name!r}{hint}: use 'shapes' (bundled), a torchvision classification "
            "model name (torchvision.models.list_models()), or a torch.export .pt2 file"
        )
    known = torchvision.models.get_model_weights(name)
    default = known.DEFAULT
    transform = default.transforms()  # preprocessing is code, known without any download
    classes: Sequence[str] | None = default.meta.get("categories")
    if weights is None:
        model = torchvision.models.get_model(name)
        warnings.warn(
            f"{name} has random weights (pass --weights): its maps show no learned evidence",
            CamkitWarning,
            stacklevel=2,
        )
    elif Path(weights).is_file():
        state = _load_state(Path(weights))
        model = torchvision.models.get_model(name)
        mismatched = {
            k: v.shape[0]
            for k, v in state.items()
            if k in model.state_dict() and model.state_dict()[k].shape != v.shape
        }
        if mismatched and len(set(mismatched.values())) == 1:  # a fine-tuned head
            classes = None
            model = torchvision.models.get_model(name, num_classes=next(iter(mismatched.values())))
        _load_into(model, state, weights, name)
    else:
        try:
            chosen = known[weights] if weights != "DEFAULT" else default
        except KeyError:
            raise UsageError(
                f"--weights {weights!r} is neither a file nor one of {name}'s weights: DEFAULT, "
                + ", ".join(w.name for w in known)
            ) from None
        model = torchvision.models.get_model(name, weights=chosen)  # downloads once, then cached
    return LoadedModel(
        name=name,
        model=model,
        size=transform.resize_size[0],
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        classes=classes,
    )


def _exported_model(path: Path) -> LoadedModel:
    names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
    if any(n.endswith("archive_format") for n in names):
        program = torch.export.load(path)
        return LoadedModel(path.stem, torch.export.unflatten(program), None, None, None, None)
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise UsageError(
            f"{path} is a TorchScript model, which cannot be explained: PyTorch runs no hooks on "
            "ScriptModules. Save the eager model with torch.export instead: "
            "torch.export.save(torch.export.export(model, (x,)), 'model.pt2')"
        )
    raise UsageError(
        f"{path} is not a torch.export program; a state dict goes with a torchvision name: "
        "--model resnet50 --weights FILE"
    )


def load_model(name: str, weights: str | None) -> LoadedModel:
    """The bundled model, a torchvision model by name, or a torch.export file."""
    if name == BUNDLED:
        from camkit.models import load_shapes_model

        model = load_shapes_model(pretrained=weights != "random")
        if weights not in (None, "DEFAULT", "random"):
            if not Path(weights).is_file():
                raise UsageError(
                    f"--weights {weights!r} for the bundled model: give a state-dict file, "
                    "DEFAULT (the shipped weights) or random (untrained)"
                )
            _load_into(model, _load_state(Path(weights)), weights, "the bundled model")
        return LoadedModel(BUNDLED, model, None, None, None, model.classes)
    if Path(name).suffix in (".pt", ".pt2", ".pth", ".ts") or Path(name).is_file():
        if not Path(name).is_file():
            raise UsageError(f"model file {name} does not exist")
        return _exported_model(Path(name))
    return _torchvision_model(name, weights)


def bundled_samples() -> list[Path]:
    """The sample images that ship with camkit (one per shape class)."""
    folder = resources.files("camkit.data").joinpath("samples")
    return sorted(Path(str(p)) for p in folder.iterdir() if Path(str(p)).suffix == ".png")


def _inputs(paths: Sequence[str]) -> Iterator[Path]:
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path  # missing or unreadable files are reported when read


class Progress:
    """A one-line progress bar on stderr, shown only for more than one item."""

    def __init__(self, total: int, label: str = "explaining") -> None:
        self.total, self.done, self.label = total, 0, label
        self.shown = total > 1

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.shown:
            filled = round(30 * self.done / self.total)
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r{self.label} [{bar}] {self.done}/{self.total}", end="", file=sys.stderr)
            if self.done >= self.total:
                print(file=sys.stderr)


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


def _methods(text: str | None) -> list[str] | None:
    """Method names from "a,b"; None when not given ("all" gives every method)."""
    if not text:
        return None
    if text.strip() == "all":
        return list(METHODS)
    methods = [m.strip() for m in text.split(",") if m.strip()]
    for method in methods:
        if method not in METHODS:
            raise UsageError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    return methods


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")


def _layer(args: argparse.Namespace, model: nn.Module) -> list[str] | None:
    if not args.layer:
        return None
    try:
        return [name for name, _ in resolve_layers(model, args.layer.split(","))]
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def explain_command(args: argparse.Namespace) -> int:
    methods = _methods(args.methods)
    _check_device(args.device)
    loaded = load_model(args.model, args.weights)
    if args.size is not None:
        loaded.size = args.size or None
    if args.mean is not None or args.std is not None:
        loaded.mean, loaded.std = tuple(args.mean or (0.0,) * 3), tuple(args.std or (1.0,) * 3)
    model = loaded.model.to(args.device).eval()
    if methods is None:
        methods = ["gradcam", "gradcam++"] + (["cam"] if loaded.name == BUNDLED else [])
    layer = _layer(args, model)
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


SHAPES_SEED = 31337  # the held-out split of the bundled benchmark (training used other seeds)
MASK_SUFFIX = ".mask.png"


def _square(loaded: LoadedModel, image: Image.Image, side: int, nearest: bool = False) -> Tensor:
    """Resize the shorter side to `side` and crop the centre square: (C, side, side) in [0, 1]."""
    picture = to_tensor(image)
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
    """(image, class) pairs of a class-per-subfolder tree; classes match the model's names
    when they all appear among them, else they are numbered in sorted order (ImageFolder)."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise UsageError(f"{folder} has no class subfolders: expected {folder}/<class>/<image>")
    known = list(loaded.classes or [])
    by_name = all(name in known for name in classes)
    items = []
    for number, name in enumerate(classes):
        label = known.index(name) if by_name else number
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.endswith(MASK_SUFFIX):
                items.append((path, label))
    if not items:
        raise UsageError(f"no images in the class subfolders of {folder}")
    return items


def _shorter_side(path: Path) -> int:
    try:
        with Image.open(path) as image:
            return min(image.size)
    except (UnidentifiedImageError, OSError):
        raise UsageError(
            f"{path} is not a readable image; give the input size with --size"
        ) from None


def _folder_batches(
    args: argparse.Namespace, loaded: LoadedModel, fail: Callable[[str], None]
) -> tuple[int, Iterator[Batch]]:
    items = _folder_dataset(Path(args.data), loaded)[: args.limit]
    side = args.size or loaded.size or _shorter_side(items[0][0])

    def batches() -> Iterator[Batch]:
        for start in range(0, len(items), args.batch_size):
            inputs, labels, masks = [], [], []
            for path, label in items[start : start + args.batch_size]:
                try:
                    with Image.open(path) as image:
                        picture = _square(loaded, image.convert("RGB"), side)
                    mask_path = path.with_name(path.stem + MASK_SUFFIX)
                    mask = None
                    if mask_path.is_file():
                        with Image.open(mask_path) as image:
                            mask = _square(loaded, image.convert("L"), side, nearest=True)[0] > 0.5
                except (UnidentifiedImageError, OSError) as error:
                    fail(f"{path}: not a readable image ({type(error).__name__})")
                    continue
                inputs.append(loaded.normalise(picture))
                labels.append(label)
                masks.append(mask)
            if not inputs:
                continue
            have_masks = all(m is not None for m in masks)
            yield Batch(
                torch.stack(inputs).to(args.device),
                torch.tensor(labels, device=args.device),
                torch.stack(masks).to(args.device) if have_masks else None,  # type: ignore[arg-type]
            )

    return len(items), batches()


def _shapes_batches(args: argparse.Namespace) -> tuple[int, Iterator[Batch]]:
    from camkit.data import ShapesDataset

    count = args.limit if args.limit is not None else 200
    data = ShapesDataset(count, size=args.size or 96, seed=SHAPES_SEED)

    def batches() -> Iterator[Batch]:
        for start in range(0, count, args.batch_size):
            part = data.stack(start, min(count, start + args.batch_size))
            yield Batch(
                part["image"].to(args.device),
                part["label"].to(args.device),
                part["mask"].to(args.device),
            )

    return count, batches()


def _write_plots(report: Report, out: Path) -> list[Path]:
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
        path = out / f"{name}.png"
        line_chart(series, xs, title=title, xlabel=xlabel, ylabel=ylabel).save(path)
        written.append(path)
    return written


def evaluate_command(args: argparse.Namespace) -> int:
    methods = _methods(args.methods) or list(METHODS)
    chosen = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    for metric in chosen or []:
        if metric not in METRICS:
            raise UsageError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    _check_device(args.device)
    loaded = load_model(args.model, args.weights)
    model = loaded.model.to(args.device).eval()
    layer = _layer(args, model)
    failures = 0

    def fail(message: str) -> None:
        nonlocal failures
        failures += 1
        print(f"\ncamkit: error: {message}", file=sys.stderr)

    if args.data == BUNDLED:
        count, batches = _shapes_batches(args)
    elif Path(args.data).is_dir():
        count, batches = _folder_batches(args, loaded, fail)
    else:
        raise UsageError(
            f"--data {args.data!r}: use 'shapes' (bundled) or a folder of class subfolders"
        )
    first = next(batches, None)
    if first is None:
        raise UsageError("no readable images to evaluate")
    with torch.no_grad():
        classes = select_output(model(first.inputs[:1])).shape[-1]
    if int(first.labels.max()) >= classes:
        raise UsageError(
            f"class {int(first.labels.max())} of the data does not exist in a model with {classes} "
            "outputs: name the subfolders after the model's classes, or match its class order"
        )
    if chosen is None:
        chosen = [m for m in METRICS if first.masks is not None or m not in NEEDS_REGIONS]
    settings = Settings(
        steps=args.steps,
        fill=first.inputs.mean(dim=(0, 2, 3)),  # the data mean, as RISE fills deleted pixels
        tolerance=args.tolerance,
        sanity_images=args.sanity_images,
        seed=args.seed,
    )
    progress = Progress(count, "evaluating")
    started = time.perf_counter()
    try:
        report = evaluate(
            model,
            itertools.chain([first], batches),
            methods,
            chosen,
            settings=settings,
            layer=layer,
            advance=progress.advance,
        )
    except (ValueError, TypeError, RuntimeError) as error:
        fail(str(error).splitlines()[0])
        return 1
    report.info.update(
        model=loaded.name,
        data=args.data,
        methods=methods,
        seconds=round(time.perf_counter() - started, 1),
        command="camkit " + " ".join(args.argv),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = report.to_markdown()
    print(table, end="")
    (out / "results.md").write_text(table)
    (out / "results.csv").write_text(report.to_csv())
    (out / "results.json").write_text(report.to_json())
    plots = _write_plots(report, out)
    print(
        f"camkit: evaluated {report.info['images']} images x {len(methods)} methods in "
        f"{report.info['seconds']} s; wrote results.md/.csv/.json and {len(plots)} plots to {out}/"
    )
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camkit", description="Class activation maps for PyTorch classifiers."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser(
        "explain",
        help="explain images: overlays, a grid and a JSON summary per image",
        description="Explain images (files or folders; none: the bundled samples) with a model.",
    )
    explain.add_argument("inputs", nargs="*", help="image files or folders (default: samples)")
    explain.add_argument(
        "--model",
        default=BUNDLED,
        help="'shapes' (bundled, default), a torchvision classification model name, or a "
        "torch.export .pt2 file",
    )
    explain.add_argument(
        "--weights",
        help="torchvision models: a state-dict/checkpoint file (offline), DEFAULT or a weights "
        "name (downloads); none = random weights. Bundled model: DEFAULT (shipped), a file, or "
        "'random' (untrained)",
    )
    explain.add_argument(
        "--methods",
        help=f"comma-separated, from: {', '.join(METHODS)} (default: gradcam,gradcam++"
        ", and cam for the bundled model)",
    )
    explain.add_argument("--layer", help="dotted layer name(s), comma-separated (default: found)")
    chosen = explain.add_mutually_exclusive_group()
    chosen.add_argument("--target", help="class index or name to explain (default: predicted)")
    chosen.add_argument("--top", type=int, help="explain each image's K best classes")
    explain.add_argument("--out", default="camkit-out", help="output folder (default: camkit-out)")
    explain.add_argument("--colormap", default="jet", help="jet, hot, gray, or a matplotlib name")
    explain.add_argument("--alpha", type=float, default=0.5, help="heat-map opacity in [0, 1]")
    explain.add_argument("--batch-size", type=int, default=8)
    explain.add_argument("--device", default="cpu", help="cpu or cuda")
    explain.add_argument(
        "--size",
        type=int,
        help="resize the shorter side to N pixels (0: keep; default: the "
        "weights' preprocessing for torchvision models, the image's size otherwise)",
    )
    explain.add_argument("--mean", type=float, nargs=3, help="normalisation mean (R G B)")
    explain.add_argument("--std", type=float, nargs=3, help="normalisation std (R G B)")
    explain.set_defaults(run=explain_command)

    evaluate = commands.add_parser(
        "evaluate",
        help="score methods with faithfulness, localisation and sanity metrics",
        description="Evaluate CAM methods on a dataset: a table (terminal, Markdown, CSV, JSON) "
        "and plots. No arguments: every method on the bundled model and benchmark.",
    )
    evaluate.add_argument("--model", default=BUNDLED, help="as for 'camkit explain'")
    evaluate.add_argument("--weights", help="as for 'camkit explain'")
    evaluate.add_argument(
        "--data",
        default=BUNDLED,
        help="'shapes' (the bundled benchmark, with masks) or a folder of class subfolders; "
        f"an optional mask next to an image is named <image stem>{MASK_SUFFIX}",
    )
    evaluate.add_argument("--methods", help="comma-separated, or 'all' (default: all)")
    evaluate.add_argument(
        "--metrics",
        help=f"comma-separated, from: {', '.join(METRICS)} (default: all the data allows)",
    )
    evaluate.add_argument(
        "--limit", type=int, help="evaluate the first N images (default: 200 for shapes, all)"
    )
    evaluate.add_argument("--out", default="camkit-eval", help="output folder")
    evaluate.add_argument("--layer", help="dotted layer name(s), comma-separated (default: found)")
    evaluate.add_argument("--batch-size", type=int, default=50, help="images per batch")
    evaluate.add_argument("--device", default="cpu", help="cpu or cuda")
    evaluate.add_argument(
        "--size",
        type=int,
        help="square input side (default: 96 for the benchmark; for a folder the model's "
        "preprocessing, else the first image's shorter side)",
    )
    evaluate.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    evaluate.add_argument(
        "--tolerance", type=float, help="pointing game, pixels (default: 15 at 224, scaled)"
    )
    evaluate.add_argument(
        "--sanity-images", type=int, default=16, help="images for the randomisation check"
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seeds ROAD noise, randomisation")
    evaluate.set_defaults(run=evaluate_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as out:
        ...     main(["explain", "--out", out, "--methods", "gradcam"])
        camkit: wrote ...
        0
    """
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    minimum = {"batch_size": 1, "top": 1, "limit": 1, "steps": 1, "sanity_images": 0}
    for option, least in minimum.items():
        value = getattr(args, option, None)
        if value is not None and value < least:
            flag = "--" + option.replace("_", "-")
            print(f"camkit: error: {flag} must be at least {least}", file=sys.stderr)
            return 2
    with warnings.catch_warnings():
        # One line per warning, like the errors (restored when the command returns).
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except UsageError as error:
            print(f"camkit: error: {error}", file=sys.stderr)
            return 2


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    print(f"camkit: warning: {message}", file=sys.stderr)
