"""The `camkit` command: explain image files with any model, write overlays, grids and JSON.

Exit codes: 0 everything was written; 1 some inputs or methods failed (the rest was written);
2 the command itself is wrong (unknown model, method, layer or option): nothing was written.
"""

from __future__ import annotations

import argparse
import difflib
import json
import pickle
import sys
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
from camkit.explanation import Explanation
from camkit.layers import resolve_layers
from camkit.methods import METHODS
from camkit.overlay import grid, overlay, to_pil, to_tensor
from camkit.targets import TopK

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
        model_input = picture
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean)[:, None, None]
            model_input = (picture - mean) / torch.tensor(self.std)[:, None, None]
        return picture, model_input

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


def explain_command(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    for method in methods or []:
        if method not in METHODS:
            raise UsageError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")
    loaded = load_model(args.model, args.weights)
    if args.size is not None:
        loaded.size = args.size or None
    if args.mean is not None or args.std is not None:
        loaded.mean, loaded.std = tuple(args.mean or (0.0,) * 3), tuple(args.std or (1.0,) * 3)
    model = loaded.model.to(args.device).eval()
    if methods is None:
        methods = ["gradcam", "gradcam++"] + (["cam"] if loaded.name == BUNDLED else [])
    layer = None
    if args.layer:
        try:
            layer = [name for name, _ in resolve_layers(model, args.layer.split(","))]
        except (ValueError, TypeError) as error:
            raise UsageError(str(error)) from None
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
    if args.command == "explain":
        if args.batch_size < 1:
            print("camkit: error: --batch-size must be at least 1", file=sys.stderr)
            return 2
        if args.top is not None and args.top < 1:
            print("camkit: error: --top must be at least 1", file=sys.stderr)
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
