"""What a job will cost, said before it starts: model passes per input by method, and seconds
from one timed forward pass of the first input."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from camkit.evaluation import Evaluation, Load
from camkit.layers import choose_layer
from camkit.methods import Explainer
from camkit.metrics import cascade_steps
from camkit.metrics._common import ModelScores
from camkit.survey import survey

WORTH_SAYING = 60.0
"""Seconds of estimated work above which a job says what it will cost before it starts."""


@dataclasses.dataclass(frozen=True)
class Cost:
    """A job's estimated cost.

    Attributes:
        inputs: how many inputs the job explains.
        shape: the first input's spatial shape.
        forward: seconds of a forward pass, per input (timed on a batch).
        passes: passes through the model per input, by method.

    Examples:
        >>> cost = Cost(3, (768, 1024), 0.5, {"gradcam": 2.0, "scorecam": 2049.0})
        >>> round(cost.seconds), cost.costliest
        (3076, 'scorecam')
    """

    inputs: int
    shape: tuple[int, ...]
    forward: float
    passes: Mapping[str, float]

    @property
    def seconds(self) -> float:
        """The whole job, about."""
        return self.inputs * self.forward * sum(self.passes.values())

    @property
    def costliest(self) -> str:
        """The method with the most passes."""
        return max(self.passes, key=lambda m: self.passes[m])

    def line(self) -> str:
        """One line: the estimate, what makes it large, and how to make it cheaper.

        Examples:
            >>> line = Cost(3, (768, 1024), 0.5, {"gradcam": 2.0, "scorecam": 2049.0}).line()
            >>> line[:61]
            'this job may take about 51 min: 3 input(s) of 1024 x 768, a f'
            >>> line[line.index("cheaper"):][:62]
            'cheaper: --method-options scorecam.channels=64 (about 32x fewe'
        """
        method = self.costliest
        size = " x ".join(map(str, reversed(self.shape)))
        line = (
            f"this job may take about {duration(self.seconds)}: {self.inputs} input(s) of "
            f"{size}, a forward pass {self.forward:.3f} s an input, {method} "
            f"{self.passes[method]:,.0f} passes an input"
        )
        hints = [
            *_cheaper(method, self.passes[method]),
            "a smaller --max-size (the passes grow with the pixels)",
        ]
        return f"{line}; cheaper: {', or '.join(hints)}"


def _cheaper(method: str, passes: float) -> list[str]:
    if method in ("scorecam", "sscam", "iscam") and passes > 64:
        return [
            f"--method-options {method}.channels=64 (about {passes / 65:.0f}x fewer passes for it)"
        ]
    if method == "sess":
        return ["--method-options sess.num_scales=4"]
    if passes > 10:
        return [f"leave out {method}"]
    return []


def duration(seconds: float) -> str:
    """Seconds in words, at least "1 s": "45 s", "12 min", "1.5 h".

    Examples:
        >>> duration(45), duration(720), duration(5400)
        ('45 s', '12 min', '1.5 h')
    """
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    x: Tensor,
    inputs: int,
    layers: Sequence[str] | None = None,
    batch: int = 1,
) -> Cost:
    """The cost of explaining `inputs` inputs like `x` (C, *spatial) with `explainers`: their
    passes for the explained layer's channels (`layers`, or the automatic choice), and a timed
    forward pass of `batch` copies of `x` (the faster of two, after an untimed one that warms
    the model up), per input: the job runs batches, and the costly methods batch their passes
    too.

    Examples:
        >>> import camkit
        >>> net = camkit.models.example_net()
        >>> cost = estimate(net, {"gradcam": camkit.GradCAM(net)}, torch.rand(3, 16, 16), 10)
        >>> cost.passes, cost.seconds < 1
        ({'gradcam': 2.0}, True)
    """
    copies = x[None].expand(max(1, min(batch, inputs)), *x.shape)
    times = []
    with torch.inference_mode():
        model(copies)
        for _ in range(2):  # the faster of two: a busy machine's hiccup is not the model's cost
            started = time.perf_counter()
            model(copies)
            times.append(time.perf_counter() - started)
    forward = min(times) / len(copies)
    channels = _channels(model, x[None], layers)
    spatial = tuple(x.shape[1:])
    passes = {name: e.passes(channels, spatial) for name, e in explainers.items()}
    return Cost(inputs, spatial, forward, passes)


def forward_seconds(model: nn.Module, x: Tensor) -> float:
    """Seconds of a forward pass per input of the batch `x`, as the metrics run it (the faster
    of two timed passes, after one that warms the model up)."""
    scores = ModelScores(model, score="logit")
    scores(x)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        scores(x)
        times.append(time.perf_counter() - started)
    return min(times) / len(x)


def evaluation_cost(
    evaluation: Evaluation, x: Tensor, images: int, layers: Sequence[str] | None = None
) -> Cost:
    """What evaluating `images` inputs like the batch `x` will cost: each method's passes
    (its explanation's for the explained `layers`' channels, and each metric's for it), with
    the metrics' work outside the model (ROAD's imputation) timed on `x` and counted in
    forward passes.

    Examples:
        >>> from camkit.evaluation import Evaluation
        >>> from camkit.models import load_shapes_model
        >>> evaluation = Evaluation(load_shapes_model(), ["gradcam"], ["drop", "deletion"])
        >>> evaluation_cost(evaluation, torch.rand(4, 3, 96, 96), 50).passes
        {'gradcam': 19.0}
    """
    forward = forward_seconds(evaluation.model, x)
    channels = _channels(evaluation.model, x[:1], layers)
    spatial = tuple(x.shape[2:])
    settings, steps = evaluation.settings, len(cascade_steps(evaluation.model))
    outside = {
        name: plugin.seconds(x, settings)
        for name, plugin in next(iter(evaluation.plugins.values()), {}).items()
    }
    passes = {}
    for method, explainer in evaluation.explainers.items():
        explain = explainer.passes(channels, spatial)
        load = Load(images, explain, steps, spatial)
        work = sum(p.passes(settings, load) for p in evaluation.plugins[method].values())
        passes[method] = explain + work + sum(outside.values()) / max(forward, 1e-9)
    return Cost(images, spatial, forward, passes)


def _channels(model: nn.Module, x: Tensor, layers: Sequence[str] | None) -> int:
    """The explained layers' channels (all of a multi-scale head's); 0 where none is found."""
    try:
        names = tuple(layers) if layers else choose_layer(model, x).names
    except ValueError:  # no layer the automatic choice takes: the methods will say so
        return 0
    shapes = {c.name: c for c in survey(model, x).found}
    found = [shapes[n] for n in names if n in shapes]
    return sum(c.shape[1] if c.layout == "spatial" else c.shape[-1] for c in found)
