"""The datasets `camkit evaluate` reads: a folder of class subfolders (with optional object
masks beside the images) and the bundled benchmarks, as items the evaluation batches."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from camkit.data import HardShapes, ShapesDataset, ShortcutShapes
from camkit.errors import CamkitWarning, UsageError
from camkit.evaluation.loop import Batch
from camkit.files import shown
from camkit.images import IMAGE_SUFFIXES, MAX_SIDE, ImageReadError, read_image
from camkit.models import LoadedModel
from camkit.models.loading import centre_square, resized
from camkit.stream import Unreadable

MASK_SUFFIX = ".mask.png"
BENCHMARKS = {"shapes": 31337, "shortcut": 4000, "hard": 6000}
"""The bundled benchmarks and the seeds of their held-out splits (training used other seeds;
the shortcut benchmark's is the conflict split its training script reports on)."""


def square(
    picture: Tensor, side: int, nearest: bool = False, crop: float = 1.0, mode: str = "bilinear"
) -> Tensor:
    """Resize the shorter side of (C, H, W) to `side` / `crop` and keep the centre square of
    `side` (a model's evaluation crop, `LoadedModel.crop`)."""
    height, width = picture.shape[1:]
    shorter = max(side, round(side / crop))
    scale = shorter / min(height, width)
    size = (max(shorter, round(height * scale)), max(shorter, round(width * scale)))
    return centre_square(resized(picture, size, "nearest" if nearest else mode), side)


def folder_dataset(folder: Path, loaded: LoadedModel) -> list[tuple[Path, int]]:
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
    labels = _class_labels(folder, classes, list(loaded.classes or []))
    items = [(path, labels[name]) for name in classes for path in _images(folder / name)]
    if not items:
        raise UsageError(f"no images in the class subfolders of {shown(folder)}")
    return items


def _class_labels(folder: Path, classes: list[str], known: list[str]) -> dict[str, int]:
    """Folder name -> class index: the model's index of each name when every folder is one of
    the model's `known` classes, else the sorted order (refused when some are and some not)."""
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
            stacklevel=3,
        )
    return {name: known.index(name) if by_name else n for n, name in enumerate(classes)}


def _images(folder: Path) -> list[Path]:
    """The images under `folder`, in sorted order, without the object masks."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.endswith(MASK_SUFFIX)
    ]


def first_readable(items: list[tuple[Path, int]], max_side: int) -> Tensor:
    """The first of the images that can be read (a `UsageError` when none can)."""
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
        return self.loaded.normalise(self._square(picture)), label, mask, problem

    def _square(self, picture: Tensor, nearest: bool = False) -> Tensor:
        """A picture or mask at the input's size, as the model's preprocessing crops it."""
        loaded = self.loaded
        return square(picture, self.side, nearest, loaded.crop or 1.0, loaded.interpolation)

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
            return None, (
                f"{shown(where)} is {mw} x {mh} pixels but its image {w} x {h}: a mask "
                f"must have its image's size; {left_out}"
            )
        return self._square(mask, nearest=True)[0] > 0.5, ""


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


class GeneratedImages(Dataset[Item]):
    """A generated benchmark as (model input, label, mask) items; `mask` names the sample's
    ground truth: the object (``"mask"``) or, for the shortcut benchmark, the tag
    (``"tag_mask"``: the localisation metrics then say how often a map points at the tag, the
    shortcut model's real evidence)."""

    def __init__(
        self, data: ShapesDataset | ShortcutShapes | HardShapes, mask: str = "mask"
    ) -> None:
        self.data, self.mask = data, mask
        self.masked = len(data)  # every generated image has its ground truth

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Item:
        sample = self.data[index]
        return sample["image"], int(sample["label"]), sample[self.mask], ""


Items = Union["FolderImages", GeneratedImages]


def benchmark(name: str, count: int, side: int) -> GeneratedImages:
    """The held-out images of a bundled benchmark: shapes, shortcut (conflict split) or hard."""
    seed = BENCHMARKS[name]
    if name == "shortcut":
        conflict = ShortcutShapes(count, split="conflict", size=side, seed=seed)
        return GeneratedImages(conflict, "tag_mask")
    if name == "hard":
        return GeneratedImages(HardShapes(count, size=side, seed=seed))
    return GeneratedImages(ShapesDataset(count, size=side, seed=seed))


def to_batch(
    chunk: Sequence[Item | Unreadable], device: str | torch.device, fail: Callable[[str], None]
) -> Batch | None:
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
