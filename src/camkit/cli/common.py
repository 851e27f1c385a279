"""What both commands share: loading models, usage errors, option parsing, a progress bar."""

from __future__ import annotations

import argparse
import difflib
import pickle
import sys
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from camkit.errors import CamkitWarning
from camkit.layers import resolve_layers
from camkit.methods import METHODS
from camkit.overlay import to_tensor

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


def parse_methods(text: str | None) -> list[str] | None:
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


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")


def parse_layer(args: argparse.Namespace, model: nn.Module) -> list[str] | None:
    if not args.layer:
        return None
    try:
        return [name for name, _ in resolve_layers(model, args.layer.split(","))]
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --layer and --device, the same for every command."""
    parser.add_argument(
        "--model",
        default=BUNDLED,
        help="'shapes' (bundled, default), a torchvision classification model name, or a "
        "torch.export .pt2 file",
    )
    parser.add_argument(
        "--weights",
        help="torchvision models: a state-dict/checkpoint file (offline), DEFAULT or a weights "
        "name (downloads); none = random weights. Bundled model: DEFAULT (shipped), a file, or "
        "'random' (untrained)",
    )
    parser.add_argument("--layer", help="dotted layer name(s), comma-separated (default: found)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
