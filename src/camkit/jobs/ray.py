"""The jobs on a Ray cluster (``ray=ADDRESS``; `camkit explain --ray`, `camkit evaluate --ray`).

Ray Data spreads the inputs, in chunks of a batch, over a pool of actors that each hold the
model: one per GPU with a cuda device, otherwise one per CPU slot (``ray_workers`` sets the
number). Each actor receives the typed job, never the command's arguments. A chunk is the unit
a local run batches, and every batch seeds its randomness the same way, so the files and
figures equal those of a local run of the same job.

- `explain`: the actors read, explain and write each chunk's files into the output folder (one
  every node sees: a shared file system on a multi-node cluster), and send back one line per
  input (files written, failures).
- `evaluate`: the actors measure each chunk (`Evaluation.measure`) and send back the metrics'
  per-image results; the driver adds them in dataset order, exactly as a local run does, and
  runs the sanity check and the report.

The model travels to the actors through Ray's object store (it is pickled), so a model given by
name, file or random weights is the same model everywhere; input files must be readable by every
node. With no address, Ray joins the cluster in ``RAY_ADDRESS`` or starts a local one.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camkit.errors import UsageError, first_line
from camkit.evaluation import BatchResult, Evaluation, Settings
from camkit.evaluation.datasets import Items, to_batch
from camkit.files import OutputFolder, shown
from camkit.jobs.fields import Label
from camkit.jobs.options import ExplainJob, RunOptions
from camkit.jobs.work import ImageFiles, Item, failure_message, write_item
from camkit.layers import LayerSpec
from camkit.methods.building import MethodSettings, build, parse_method_options
from camkit.models import LoadedModel
from camkit.stream import explain_batches
from camkit.targets import Targets


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError(
            "Ray is not installed: pip install 'camkit[ray]' (or pip install 'ray[data]')"
        ) from None
    return ray


@contextlib.contextmanager
def connected(address: str, log: str | None = None, label: Label = str) -> Iterator[Any]:
    """Ray, joined to the cluster at `address` ("": RAY_ADDRESS's, or a new local one); a
    cluster started here is shut down on leaving, one that was running is left alone.

    Ray's own lines (its C++ core writes them to the process's stderr) go to the file `log`
    ("-": the terminal; None: a temporary file, removed unless Ray failed)."""
    ray = _ray()
    started = not ray.is_initialized()  # the address was probed with the options
    with _ray_lines_to(log, label):
        if started:
            try:
                ray.init(
                    address=address or None,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,  # Ray's notes; its errors raise
                )
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise UsageError(
                    f"{label('ray')} {address or '(local)'}: cannot join Ray ({first_line(error)})"
                ) from None
        try:
            yield _configured(ray)
        finally:
            if started:
                ray.shutdown()


@contextlib.contextmanager
def _ray_lines_to(log: str | None, label: Label = str) -> Iterator[None]:
    """The process's stderr (file descriptor 2, where Ray's core writes) sent to `log` for the
    block, while camkit's own messages (`sys.stderr`) still reach the terminal."""
    if log == "-":
        yield
        return
    if log is None:
        handle, name = tempfile.mkstemp(prefix="camkit-ray-", suffix=".log")
        os.close(handle)
    else:
        name = log
    sys.stderr.flush()
    terminal = os.dup(2)
    try:
        descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    except OSError as error:
        os.close(terminal)
        raise UsageError(
            f"{label('ray_log')} {shown(name)}: cannot write it ({error.strerror})"
        ) from None
    os.dup2(descriptor, 2)
    os.close(descriptor)
    before = sys.stderr
    if _descriptor(before) == 2:  # camkit's messages keep going where they went
        sys.stderr = open(terminal, "w", closefd=False)  # noqa: SIM115 - closed below
    failed = True
    try:
        yield
        failed = False
    finally:
        if sys.stderr is not before:
            sys.stderr.close()
            sys.stderr = before
        os.dup2(terminal, 2)
        os.close(terminal)
        if log is None and not failed:
            os.unlink(name)
        elif log is None:
            print(f"camkit: Ray's own log lines are in {shown(name)}", file=sys.stderr)


def _descriptor(stream: Any) -> int | None:
    """The file descriptor a text stream writes to (None: not a file, e.g. captured)."""
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def _configured(ray: Any) -> Any:
    """Ray, with Ray Data set up for camkit's runs."""
    context = ray.data.DataContext.get_current()
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes on its progress bars
    context.enable_progress_bars = False  # camkit's own bar shows the progress
    context.execution_options.preserve_order = True  # results come back in dataset order
    return ray


def _pool(ray: Any, job: RunOptions, chunks: int) -> tuple[int, dict[str, Any]]:
    """The number of actors (no more than there are chunks) and what each asks of Ray."""
    resources = ray.cluster_resources()
    on_gpu = str(job.device).startswith("cuda")
    kind = "GPU" if on_gpu else "CPU"
    available = int(resources.get(kind, 0))
    if available < 1:
        raise UsageError(f"Ray: the cluster has no {kind}s for device {job.device}")
    size = max(1, min(job.ray_workers or available, chunks))
    return size, ({"num_gpus": 1} if on_gpu else {"num_cpus": 1})


def _worker_device(device: str) -> str:
    """Ray shows each GPU actor only its own GPU, as cuda:0."""
    return "cuda" if str(device).startswith("cuda") else str(device)


def _on_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """The model to send to the actors: on the CPU, so any node can unpickle it (a copy if it
    is elsewhere: this process keeps using it)."""
    on_cpu = all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])
    return model if on_cpu else copy.deepcopy(model).cpu()


def _chunks(count: int, batch_size: int) -> list[dict[str, int]]:
    return [{"start": s, "stop": min(count, s + batch_size)} for s in range(0, count, batch_size)]


def _run(
    ray: Any, worker: type, shared: dict[str, Any], job: RunOptions, count: int
) -> Iterator[dict[str, Any]]:
    """Chunks of `count` inputs through a pool of `worker` actors; their rows, in order.

    The job (the model, the data) goes into the object store once and each actor fetches it:
    passed as constructor arguments, Ray would also keep it for restarting actors.
    """
    parts = _chunks(count, job.images_per_batch)
    size, asks = _pool(ray, job, len(parts))
    reference = [ray.put(shared)]  # in a list: Ray hands the actors the reference, not the value
    chunks = ray.data.from_items(parts, override_num_blocks=len(parts))
    done = chunks.map_batches(
        worker,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=size),
        fn_constructor_kwargs={"shared": reference},
        **asks,
    )
    yield from done.iter_rows()


def _job(shared: list[Any]) -> dict[str, Any]:
    import ray

    return ray.get(shared[0])  # type: ignore[no-any-return]  # Ray's get is untyped


class ExplainWorker:
    """A Ray actor: explains chunks of input files and writes their outputs."""

    def __init__(self, shared: list[Any]) -> None:
        self._start(**_job(shared))

    def _start(
        self,
        loaded: LoadedModel,
        job: ExplainJob,
        methods: Sequence[str],
        layer: LayerSpec,
        targets: Targets,
        paths: Sequence[Path],
        stems: Sequence[str],
    ) -> None:
        self.job, self.loaded, self.targets = job, loaded, targets
        self.device = _worker_device(job.device)
        self.loaded.model = loaded.model.to(self.device).eval()
        options = parse_method_options(job.method_options)
        self.explainers = {m: build(m, self.loaded.model, layer, options) for m in methods}
        self.paths, self.stems = paths, stems
        # The driver checked the folder; each actor keeps its own view of the ledger.
        self.out = OutputFolder(job.folder, inputs=paths)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One chunk of the dataset: rows with its start and stop."""
        start, stop = int(rows["start"][0]), int(rows["stop"][0])
        data = ImageFiles(
            self.paths[start:stop], self.stems[start:stop], self.loaded, self.job.max_size
        )
        errors: dict[int, list[str]] = {i: [] for i in range(start, stop)}
        written = dict.fromkeys(range(start, stop), 0)
        position = {str(p): start + i for i, p in enumerate(data.paths)}

        def failed(item: Item | Path, method: str, error: BaseException) -> None:
            path = item["path"] if isinstance(item, dict) else item
            errors[position[str(path)]].append(failure_message(item, method, error))

        stream = explain_batches(
            self.loaded.model,
            data,
            self.explainers,
            targets=self.targets,
            batch_size=self.job.images_per_batch,
            device=self.device,
            on_error=failed,
        )
        for batch in stream:
            for item, results in zip(batch.items, batch.results, strict=True):
                index = position[str(item["path"])]
                count, problem = write_item(item, results, self.loaded, self.out, self.job)
                written[index] += count
                if problem:
                    errors[index].append(problem)
        return {
            "written": np.array([written[i] for i in range(start, stop)]),
            "errors": np.array(["\n".join(errors[i]) for i in range(start, stop)], dtype=object),
        }


def explain_on_ray(
    job: ExplainJob,
    loaded: LoadedModel,
    methods: Sequence[str],
    layer: LayerSpec,
    targets: Targets,
    data: ImageFiles,
    label: Label = str,
) -> Iterator[tuple[int, str]]:
    """(files written, failure lines) for each input of `data`, in order, explained and
    written by the actors."""
    shared = {
        "loaded": replace(loaded, model=_on_cpu(loaded.model)),
        "job": job,
        "methods": list(methods),
        "layer": layer,
        "targets": targets,
        "paths": list(data.paths),
        "stems": list(data.stems),
    }
    with connected(job.ray or "", job.ray_log, label) as ray:
        for row in _run(ray, ExplainWorker, shared, job, len(data)):
            yield int(row["written"]), str(row["errors"])


class EvaluateWorker:
    """A Ray actor: measures chunks of the dataset with every method and metric."""

    def __init__(self, shared: list[Any]) -> None:
        self._start(**_job(shared))

    def _start(
        self,
        model: torch.nn.Module,
        data: Items,
        methods: Sequence[str],
        metrics: Sequence[str],
        settings: Settings,
        layer: LayerSpec,
        method_options: MethodSettings,
        device: str,
    ) -> None:
        self.device = _worker_device(device)
        self.data = data
        model = model.to(self.device).eval()
        self.evaluation = Evaluation(
            model, methods, metrics, settings=settings, layer=layer, method_options=method_options
        )

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One chunk of the dataset: rows with its start and stop."""
        start, stop = int(rows["start"][0]), int(rows["stop"][0])
        errors: list[str] = []
        batch = to_batch([self.data[i] for i in range(start, stop)], self.device, errors.append)
        payload = b""
        if batch is not None:
            buffer = io.BytesIO()
            torch.save(self.evaluation.measure(batch, start), buffer)
            payload = buffer.getvalue()
        return {
            "result": np.array([payload], dtype=object),
            "errors": np.array(["\n".join(errors)], dtype=object),
        }


def evaluate_on_ray(
    job: RunOptions,
    data: Items,
    evaluation: Evaluation,
    fail: Callable[[str], None],
    label: Label = str,
) -> Iterator[BatchResult]:
    """The `BatchResult` of each chunk, in dataset order, measured by the actors."""
    shared = {
        "model": _on_cpu(evaluation.model),
        "data": data,
        "methods": list(evaluation.plugins),
        "metrics": evaluation.metrics,
        "settings": evaluation.settings,
        "layer": evaluation.layer,
        "method_options": evaluation.method_options,
        "device": job.device,
    }
    with connected(job.ray or "", job.ray_log, label) as ray:
        for row in _run(ray, EvaluateWorker, shared, job, len(data)):
            for line in filter(None, str(row["errors"]).split("\n")):
                fail(line)
            if row["result"]:
                # Our own workers' results: tensors land on this machine's CPU.
                result: BatchResult = torch.load(
                    io.BytesIO(row["result"]), map_location="cpu", weights_only=False
                )
                yield result
