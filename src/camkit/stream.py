"""Explaining a whole dataset as a stream: the job behind `camkit explain`, as a Python call.

`explain_batches` reads the inputs in worker processes (a torch `DataLoader`), groups them into
batches of one input size, runs every method on the model's device and yields the results batch
by batch, so memory holds a few batches whatever the dataset's length. A method that fails on a
batch is retried input by input: the failure is reported for the inputs that cause it, and every
other input is still explained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from camkit.explanation import Explanation
from camkit.layers import LayerSpec
from camkit.methods import Explainer
from camkit.methods.building import build
from camkit.seeds import seeded
from camkit.targets import Targets

OnError = Callable[[Any, str, BaseException], None]


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """What a dataset returns, instead of raising, for an input it cannot read: the loader goes
    on with the others, and `explain_batches` reports it as ``on_error(item, "read", error)``."""

    item: Any
    reason: str


@dataclasses.dataclass
class ExplainedBatch:
    """One batch of the stream.

    Attributes:
        items: what the dataset gave for each input, in batch order (its metadata rides along).
        inputs: the explained batch (B, C, *spatial), on the model's device.
        results: method name -> (explanation, row) for each input: a method that failed on an
            input is missing from that input's dict.
    """

    items: list[Any]
    inputs: Tensor
    results: list[dict[str, tuple[Explanation, int]]]


def _input_of(item: object) -> Tensor:
    """The input tensor of a dataset item: the item itself, its first element, or ["input"]."""
    if isinstance(item, Tensor):
        return item
    if isinstance(item, Mapping) and isinstance(item.get("input"), Tensor):
        given: Tensor = item["input"]
        return given
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]
    raise TypeError(
        f"a dataset item must be a tensor (C, *spatial), a (tensor, ...) tuple or a dict with an "
        f"'input' tensor, not {type(item).__name__}"
    )


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def read_chunks(
    data: Dataset[Any] | Iterable[Any], batch_size: int, num_workers: int
) -> Iterator[list[Any]]:
    """Lists of `batch_size` consecutive items of `data` (the last may be shorter), read by
    `num_workers` processes (0: here) while the caller works on the previous ones.

    Ctrl-C (and SIGTERM, SIGHUP, SIGQUIT) belongs to the main process: the readers start with
    them blocked and then ignore them (the main process ends them), and they hand tensors over
    through named shared memory, not
    by passing file descriptors, whose hand-over a Ctrl-C in the main process can cut halfway
    (the reader would print the broken connection). So an interrupted run prints one line.
    """
    loader: Iterable[list[Any]] = DataLoader(
        data,  # type: ignore[arg-type]  # an iterable works as an IterableDataset does
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_as_list,
        shuffle=False,
        prefetch_factor=2 if num_workers else None,
        worker_init_fn=_start_reader if num_workers else None,
    )
    with _interrupts_held():  # the readers are forked now, and inherit the blocked signal
        chunks = iter(loader)
    yield from chunks


# Ctrl-C, and the stops the command takes as Ctrl-C (a service manager's SIGTERM, a closed
# terminal's SIGHUP, SIGQUIT), which may come to the whole process group.
_STOPS = {
    getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n)
}


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C and the stop signals held back in this thread; one that came meanwhile is
    delivered at the end."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _start_reader(_worker_id: int) -> None:
    """The start of each reader process (see `read_chunks`): the main process ends it."""
    for stop in _STOPS:
        signal.signal(stop, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)  # ignored from now on
    torch.multiprocessing.set_sharing_strategy("file_system")  # this reader process only


def _batches(
    data: Dataset[Any] | Iterable[Any], batch_size: int, num_workers: int
) -> Iterator[list[Any]]:
    """Lists of at most `batch_size` items of one input size, read by `num_workers` processes.

    Each chunk of `batch_size` consecutive items is split by input size, and never joined with
    other chunks: a batch depends only on its chunk, so a run split over processes or machines
    (`camkit explain --ray`) makes the same batches, and the same maps to the last bit.
    """
    for chunk in read_chunks(data, batch_size, num_workers):
        groups: dict[tuple[int, ...], list[Any]] = {}
        for item in chunk:
            if isinstance(item, Unreadable):
                yield [item]
            else:
                groups.setdefault(tuple(_input_of(item).shape), []).append(item)
        yield from groups.values()


def explain_batches(
    model: nn.Module,
    data: Dataset[Any] | Iterable[Any],
    methods: Sequence[str] | Mapping[str, Explainer] = ("gradcam",),
    *,
    layer: LayerSpec = None,
    targets: Targets = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    on_error: OnError | None = None,
    seed: int | None = 0,
) -> Iterator[ExplainedBatch]:
    """Explain every input of `data` with every method, batch by batch.

    Args:
        model: the model (moved to nothing: pass `device` for the inputs, or put it there).
        data: a map-style or iterable dataset (or any iterable) of items: a tensor (C, *spatial),
            a (tensor, ...) tuple or a dict with an ``"input"`` tensor, or `Unreadable` for an
            input the dataset could not read. Read with `num_workers` processes.
        methods: method names, or ready explainers by name.
        targets: None (each input's predicted class), a class index or `camkit.TopK(k)`: the
            same for every input.
        on_error: called as ``on_error(item, method, error)`` for each input a method fails on;
            None raises the first error instead.
        seed: every batch draws the methods' noise (SmoothGrad-CAM++) from this seed, so an
            input's maps depend on its batch alone, not on the batches before it or the process
            that ran it; the caller's random state is left as it was. None: the global stream.

    Examples:
        >>> import torch
        >>> from camkit.models import load_shapes_model
        >>> model = load_shapes_model()
        >>> images = [torch.rand(3, 64, 64) for _ in range(5)] + [torch.rand(3, 48, 48)]
        >>> [len(b.items) for b in explain_batches(model, images, ["gradcam"], batch_size=2)]
        [2, 2, 1, 1]
    """
    explainers = (
        dict(methods)
        if isinstance(methods, Mapping)
        else {m: build(m, model, layer) for m in methods}
    )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(data, IterableDataset) and num_workers > 1:
        raise ValueError("an IterableDataset is read by one worker: num_workers=0 or 1")
    for items in _batches(data, batch_size, num_workers):
        if isinstance(items[0], Unreadable):
            if on_error is None:
                raise ValueError(f"{items[0].item}: {items[0].reason}")
            on_error(items[0].item, "read", ValueError(items[0].reason))
            continue
        x = torch.stack([_input_of(item) for item in items]).to(device)
        with seeded(seed, x.device):
            results = _explain_all(explainers, items, x, targets, on_error)
        yield ExplainedBatch(items, x, results)


def _explain_all(
    explainers: Mapping[str, Explainer],
    items: list[Any],
    x: Tensor,
    targets: Targets,
    on_error: OnError | None,
) -> list[dict[str, tuple[Explanation, int]]]:
    found: list[dict[str, tuple[Explanation, int]]] = [{} for _ in items]
    for method, explainer in explainers.items():
        try:
            result = explainer(x, targets)
        except Exception as error:  # any model can raise anything: retried input by input
            if on_error is None:
                raise
            if len(items) == 1:
                on_error(items[0], method, error)
                continue
            for b, item in enumerate(items):
                try:
                    found[b][method] = (explainer(x[b : b + 1], targets), 0)
                except Exception as one_error:  # reported for this input alone
                    on_error(item, method, one_error)
        else:
            for b in range(len(items)):
                found[b][method] = (result, b)
    return found
