"""The work on a chunk of input files, the same in this process and in a Ray worker: read them
(`ImageFiles`, in reader processes), explain them (`camkit.stream`), write each one's files
(`write_item`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from camkit.errors import reason
from camkit.explanation import Explanation
from camkit.files import OutputError, OutputFolder, shown
from camkit.images import read_image
from camkit.jobs.options import ExplainJob
from camkit.jobs.outputs import ImageResult, MapFormat, top_predictions, write_image
from camkit.models import LoadedModel
from camkit.stream import Unreadable

Item = dict[str, Any]
"""One read input: ``input`` (the model input), ``picture`` (shown, in [0, 1]), ``path`` and
``stem`` (its output names)."""


class ImageFiles(Dataset[Item | Unreadable]):
    """The input files, read in the DataLoader's worker processes: each item is an `Item`, or
    `Unreadable` with the reason."""

    def __init__(
        self, paths: Sequence[Path], stems: Sequence[str], loaded: LoadedModel, max_side: int
    ) -> None:
        self.paths, self.stems, self.loaded, self.max_side = paths, stems, loaded, max_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Item | Unreadable:
        path = self.paths[index]
        try:
            picture, model_input = self.loaded.prepare(read_image(path, self.max_side))
        except ValueError as error:  # ImageReadError, or too large once resized
            return Unreadable(path, str(error))
        except RuntimeError as error:  # torch could not allocate the resized picture
            return Unreadable(path, f"cannot be resized for the model ({reason(error)})")
        return {"input": model_input, "picture": picture, "path": path, "stem": self.stems[index]}


def failure_message(item: Item | Path, method: str, error: BaseException) -> str:
    """One line naming the input, the method ("read": reading it) and what went wrong."""
    path = item["path"] if isinstance(item, dict) else item
    what = "" if method == "read" else f"{method}: "
    return f"{shown(path)}: {what}{reason(error)}"


def image_result(
    item: Item, results: dict[str, tuple[Explanation, int]], loaded: LoadedModel
) -> ImageResult:
    """One input's explanations by every method (each: the explanation of its batch and the
    input's row in it), as its files show them."""
    first, row = next(iter(results.values()))
    count = first.maps.shape[1]
    targets = [
        {
            "class": None if first.targets is None else int(first.targets[row, k]),
            "name": None
            if first.targets is None
            else loaded.class_name(int(first.targets[row, k])),
            "score": float(first.scores[row, k]),
        }
        for k in range(count)
    ]
    logits = first.outputs if isinstance(first.outputs, Tensor) else None
    predictions = (
        top_predictions(logits[row], loaded.class_name, probabilities=loaded.probabilities)
        if logits is not None
        else []
    )
    return ImageResult(
        image=str(item["path"]),
        stem=item["stem"],
        picture=item["picture"],
        maps={m: result.maps[b] for m, (result, b) in results.items()},
        raw={m: [r[b] for r in result.raw] for m, (result, b) in results.items()},
        layers=list(first.layers),
        targets=targets,
        predictions=predictions,
    )


def write_item(
    item: Item,
    results: dict[str, tuple[Explanation, int]],
    loaded: LoadedModel,
    out: OutputFolder,
    job: ExplainJob,
) -> tuple[int, str]:
    """The files of one input: (files written, "" or the line saying why writing failed)."""
    if not results:
        return 0, ""
    save: MapFormat | None = "pt" if job.save_maps == "pt" else "npy" if job.save_maps else None
    try:
        names = write_image(
            image_result(item, results, loaded),
            out,
            loaded.name,
            colormap=job.colormap,
            alpha=job.alpha,
            save_maps=save,
        )
    except OutputError as error:
        return 0, f"{shown(item['path'])}: {error}"
    return len(names), ""
