"""What both commands share: loading models, usage errors, option parsing, a progress bar."""

from __future__ import annotations

import argparse
import difflib
import logging
import math
import os
import pickle
import socket
import sys
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from camkit.errors import CamkitWarning
from camkit.files import OutputError, check_output_folder, shown
from camkit.images import MAX_PIXELS
from camkit.layers import resolve_layers
from camkit.methods import METHODS, method_class
from camkit.overlay import check_colormap

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
BUNDLED = "shapes"
SHORTCUT = "shortcut"  # the bundled model that learned a planted tag (camkit.data.ShortcutShapes)
DEEP = "deep"  # the deeper bundled model (camkit.models.deep), explained at "features.6.0"


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

    def prepare(self, picture: Tensor) -> tuple[Tensor, Tensor]:
        """(picture shown in [0, 1], model input), both (3, H, W), from a (3, H, W) picture.

        Raises `ValueError` when resizing would make the picture larger than `MAX_PIXELS` (a
        long, thin image whose shorter side is scaled up to `size`)."""
        if self.size:
            height, width = picture.shape[1:]
            scale = self.size / min(height, width)
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            if size[0] * size[1] > MAX_PIXELS:
                raise ValueError(
                    f"resized to a shorter side of {self.size}, its {width} x {height} picture "
                    f"would be {size[1]} x {size[0]} pixels: over the limit of {MAX_PIXELS:,}"
                )
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
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise UsageError(
            f"{shown(path)} is not a readable PyTorch checkpoint ({first_line(error)})"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict):
        raise UsageError(
            f"{shown(path)} holds no state dict (a mapping of parameter names to tensors)"
        )
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def _load_into(model: nn.Module, state: dict[str, Tensor], source: str, target: str) -> None:
    """Load a state dict; a mismatch is a usage error naming the first problem."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UsageError(f"{shown(source)} does not fit {target}: {first}") from None


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


def _exported_model(path: Path, trusted: bool) -> LoadedModel:
    try:
        names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
    except (OSError, zipfile.BadZipFile) as error:
        raise UsageError(f"{shown(path)} is not a readable model file ({error})") from None
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise UsageError(
            f"{shown(path)} is a TorchScript model, which cannot be explained: PyTorch runs no "
            "hooks on ScriptModules. Save the eager model with torch.export instead: "
            "torch.export.save(torch.export.export(model, (x,)), 'model.pt2')"
        )
    if not any(n.endswith("archive_format") for n in names):
        raise UsageError(
            f"{shown(path)} is not a torch.export program; a state dict goes with a torchvision "
            "name: --model resnet50 --weights FILE"
        )
    if not trusted:
        raise UsageError(
            f"{shown(path)}: loading a torch.export .pt2 file can run code stored in it (it "
            "unpickles parts of the archive); pass --trust-model if you trust this file, or give "
            "a state dict instead (--model NAME --weights FILE, which runs no code)"
        )
    # torch logs a full traceback for a malformed archive before it tries an older format; the
    # command says it in one line instead.
    logger = logging.getLogger("torch.export")
    was_disabled, logger.disabled = logger.disabled, True
    try:
        program = torch.export.load(path)
        module = torch.export.unflatten(program)
    except Exception as error:  # a malformed archive fails in many ways inside torch.export
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(
            f"{shown(path)} is not a loadable torch.export program ({type(error).__name__}"
            f"{': ' + first if first else ''})"
        ) from None
    finally:
        logger.disabled = was_disabled
    return LoadedModel(path.stem, module, None, None, None, None)


def load_model(name: str, weights: str | None, trust: bool = False) -> LoadedModel:
    """The bundled model, a torchvision model by name, or a torch.export file (`trust` only)."""
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
    if name == DEEP:
        from camkit.models.deep import load_deep_model

        if weights not in (None, "DEFAULT", "random"):
            raise UsageError("--model deep: --weights DEFAULT (shipped) or random (untrained)")
        deep = load_deep_model(pretrained=weights != "random")
        return LoadedModel(DEEP, deep, None, None, None, deep.classes)
    if name == SHORTCUT:
        from camkit.models.shortcut import load_shortcut_model

        if weights is not None:
            raise UsageError("--model shortcut has its shipped weights only: leave out --weights")
        model = load_shortcut_model()
        return LoadedModel(SHORTCUT, model, None, None, None, model.classes)
    if Path(name).suffix in (".pt", ".pt2", ".pth", ".ts") or Path(name).is_file():
        if not Path(name).is_file():
            what = "is not a regular file" if Path(name).exists() else "does not exist"
            raise UsageError(f"model file {shown(name)} {what}")
        return _exported_model(Path(name), trust)
    return _torchvision_model(name, weights)


def bundled_samples() -> list[Path]:
    """The sample images that ship with camkit (one per shape class)."""
    folder = resources.files("camkit.data").joinpath("samples")
    return sorted(Path(str(p)) for p in folder.iterdir() if Path(str(p)).suffix == ".png")


class _Stderr:
    """Writes to whatever `sys.stderr` is when it writes (`--ray` points it elsewhere for a
    while); a progress bar made earlier follows it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def progress_bar(total: int, label: str, initial: int = 0) -> tqdm:
    """A progress bar on stderr with the rate and the time left, shown only on a terminal and
    for more than one item."""
    return tqdm(
        total=total,
        initial=initial,
        desc=label,
        unit="img",
        file=_Stderr(),
        disable=total <= 1 or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )


def default_workers() -> int:
    """Reader processes for the commands: one core of every two, at most 4, none on one core."""
    return min(4, (os.cpu_count() or 1) // 2)


def parse_methods(text: str | None) -> list[str] | None:
    """Method names from "a,b"; None when not given or empty ("all" gives every method)."""
    if text is None or not text.strip():
        return None
    if text.strip() == "all":
        return list(METHODS)
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise UsageError(f"--methods {text!r} names no method; valid: {', '.join(METHODS)}")
    for method in methods:
        try:
            method_class(method)
        except ValueError as error:
            raise UsageError(str(error)) from None
    return list(dict.fromkeys(methods))


def check_device(text: str) -> torch.device:
    """The device named by --device, if this machine has it."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {text!r} is not a device; valid: cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(
            f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {text!r}: camkit runs on cpu or cuda")
    return device


# Option -> (smallest valid value, what it means); checked before any work starts.
_MINIMUM = {
    "batch_size": (1, "images per batch"),
    "top": (1, "classes per image"),
    "limit": (1, "images"),
    "steps": (1, "steps"),
    "sanity_images": (0, "images"),
    "size": (0, "pixels, 0 keeps the size"),
    "max_size": (0, "pixels, 0 keeps the full size"),
    "workers": (0, "processes, 0 reads in the main process"),
    "ray_workers": (1, "actors"),
}


MAX_INPUT_SIDE = 4096
"""The largest --size: an input side beyond it costs gigabytes per image in any CNN."""

# Option -> (largest valid value, why): values that size processes or memory.
_MAXIMUM = {
    "workers": (64, "each is a process"),
    "ray_workers": (4096, "each is a process"),
    "size": (MAX_INPUT_SIDE, "pixels"),
    "max_size": (16384, "pixels; 0 keeps the full size, up to the decompression-bomb limit"),
    "batch_size": (4096, "images held at once"),
    "steps": (1024, "steps of the deletion and insertion curves"),
    "sanity_images": (1024, "images kept for the randomisation check"),
}


def check_options(args: argparse.Namespace) -> None:
    """Every numeric option in its range, the colour map known, the output folder writable."""
    for option, (most, why) in _MAXIMUM.items():
        value = getattr(args, option, None)
        if value is not None and value > most:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} {value}: at most {most} ({why})")
    _check_ray_options(args)
    for option, (least, unit) in _MINIMUM.items():
        value = getattr(args, option, None)
        if value is not None and value < least:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} {value}: must be at least {least} ({unit})")
    alpha = getattr(args, "alpha", None)
    if alpha is not None and not 0.0 <= alpha <= 1.0:  # NaN fails both comparisons
        raise UsageError(f"--alpha {alpha}: must be a number from 0 to 1 (the heat map's opacity)")
    for option in ("tolerance",):
        value = getattr(args, option, None)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{option} {value}: must be a finite number of pixels >= 0")
    for option in ("mean", "std"):
        values = getattr(args, option, None) or (1.0,)
        if not all(math.isfinite(v) for v in values) or (option == "std" and min(values) <= 0):
            rule = "positive numbers" if option == "std" else "finite numbers"
            raise UsageError(f"--{option} {' '.join(map(str, values))}: give three {rule}")
    colormap = getattr(args, "colormap", None)
    if colormap is not None:
        try:
            check_colormap(colormap)
        except ValueError as error:
            raise UsageError(str(error)) from None
    check_device(args.device)
    try:
        check_output_folder(Path(args.out))
    except OutputError as error:
        raise UsageError(f"--out {shown(args.out)}: {error}") from None


def _check_ray_options(args: argparse.Namespace) -> None:
    """The Ray options come with --ray, whose address (or RAY_ADDRESS's) answers."""
    for option in ("ray_workers", "ray_log"):
        if getattr(args, option, None) is not None and getattr(args, "ray", None) is None:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} is for runs on Ray: add --ray [ADDRESS]")
    if getattr(args, "ray", None) is not None:  # no address: the one in RAY_ADDRESS, if any
        check_reachable(args.ray or os.environ.get("RAY_ADDRESS", ""))


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def check_memory(what: str, images: int, side: int) -> None:
    """A usage error when `images` float32 RGB inputs of `side` x `side` pixels, with the
    copies a job keeps of each (picture, input, maps: about four), would fill more than half of
    this machine's memory: found now, not as a crash after minutes of work."""
    need = images * side * side * 3 * 4 * 4
    have = machine_memory()
    if need > have // 2:
        raise UsageError(
            f"{what}: about {need / 2**30:.1f} GiB of images at once, over half of this "
            f"machine's {have / 2**30:.1f} GiB: choose smaller values"
        )


RAY_PROBE_SECONDS = 5.0
"""How long `--ray HOST:PORT` waits for the address to answer before saying it does not."""


def check_reachable(address: str) -> None:
    """A usage error, within `RAY_PROBE_SECONDS`, when `address` names a host and port where
    nothing answers (Ray itself would keep retrying for minutes). Other forms ("", "auto",
    "local") are Ray's to resolve.

    Examples:
        >>> check_reachable("127.0.0.1:1")
        Traceback (most recent call last):
        ...
        camkit.cli.common.UsageError: --ray 127.0.0.1:1: no Ray cluster answers there (...); ...
    """
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), RAY_PROBE_SECONDS):
            return
    except OSError as error:
        reason = (
            f"no answer in {RAY_PROBE_SECONDS:.0f} s"
            if isinstance(error, TimeoutError)
            else (error.strerror or str(error)).lower()
        )
    client = address.startswith("ray://")
    raise UsageError(
        f"--ray {address}: no Ray cluster answers there ({reason}); check that "
        "`ray start --head` runs on that machine and "
        f"that the port is its {'Ray Client port (10001)' if client else 'GCS port (6379)'}, "
        "or leave out the address to start a local cluster"
    )


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def make_output_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {shown(folder)}: cannot create it ({error.strerror})") from None


def parse_layer(args: argparse.Namespace, model: nn.Module) -> list[str] | None:
    if not args.layer:
        return None
    try:
        return [name for name, _ in resolve_layers(model, args.layer.split(","))]
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """--ray [ADDRESS] and --ray-workers, the same for explain and evaluate."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on a Ray cluster (pip install 'camkit[ray]'): ADDRESS, or none to join the "
        "one in RAY_ADDRESS or start a local one; inputs and --out must be readable by every node",
    )
    parser.add_argument(
        "--ray-workers",
        type=int,
        help="Ray actors holding the model (default: one per GPU with --device cuda, else one "
        "per CPU of the cluster)",
    )
    parser.add_argument(
        "--ray-log",
        metavar="FILE",
        help="where Ray's own log lines go (default: a temporary file, removed after the run "
        "unless Ray failed; '-': the terminal)",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --layer and --device, the same for every command."""
    parser.add_argument(
        "--model",
        default=BUNDLED,
        help="'shapes' (bundled, default), 'shortcut' (bundled, learned a planted tag), 'deep' "
        "(bundled, non-linear after its layer 'features.6.0'), a torchvision classification model "
        "name, or a "
        "torch.export .pt2 file",
    )
    parser.add_argument(
        "--weights",
        help="torchvision models: a state-dict/checkpoint file (offline), DEFAULT or a weights "
        "name (downloads); none = random weights. Bundled model: DEFAULT (shipped), a file, or "
        "'random' (untrained)",
    )
    parser.add_argument("--layer", help="dotted layer name(s), comma-separated (default: found)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--trust-model",
        action="store_true",
        help="allow loading a torch.export .pt2 model file, which can run code stored in it: "
        "only for files you trust",
    )
