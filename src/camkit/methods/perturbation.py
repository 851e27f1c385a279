"""Forward-only methods that perturb and re-run the model: Score-CAM and Ablation-CAM.

Their cost is the perturbed forward passes their definitions need; both run them as plain
batches under `torch.inference_mode`, across channels and inputs at once, with at most
`rows_per_pass` perturbed rows per forward pass (the memory cap).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from typing_extensions import override

from camkit import seeds
from camkit.capture import hook_here, removing
from camkit.errors import first_line, whole_number
from camkit.inputs import Inputs
from camkit.layers import LayerSpec
from camkit.maps import normalise, upsample
from camkit.methods.base import Evidence, Explainer, MethodOptions, register

if TYPE_CHECKING:
    from typing_extensions import Unpack


MAX_ROWS = 4096
"""The most perturbed inputs one forward pass may hold (each a copy of an input)."""

MAX_SAMPLES = 1024
"""The most noisy or scaled copies of each channel's mask (SS-CAM, IS-CAM): each a pass."""


def _check_rows(rows_per_pass: int) -> int:
    return whole_number("rows_per_pass", rows_per_pass, MAX_ROWS, "inputs held by one pass")


@register("scorecam")
class ScoreCAM(Explainer):
    """Score-CAM (Wang et al. 2020): channel weights from the scores of the input masked by each
    upsampled, min-max normalised channel; ``w = softmax over channels of those scores``.

    One forward pass per (input, channel): ``rows_per_pass`` masked inputs per pass bounds memory.
    ``channels=N`` keeps only each input's N channels of highest mean activation (about C/N
    times faster). The score is the explained one (the logit by default), as in pytorch-grad-cam;
    the paper uses the softmax probability (``score="softmax"``) and no softmax over channels.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.ScoreCAM(net, rows_per_pass=4)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    needs_gradients = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        rows_per_pass: int = 64,
        channels: int | None = None,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        self.rows_per_pass = _check_rows(rows_per_pass)
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise ValueError(f"channels must be a positive whole number or None, got {channels!r}")
        self.channels = channels

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        a, x, scorer = evidence.activations, evidence.inputs, evidence.scorer
        inputs = evidence.model_inputs
        assert x is not None
        assert scorer is not None
        assert inputs is not None
        rows, count = a.shape[:2]
        if self.channels is not None and self.channels < count:
            chosen = a.flatten(2).mean(dim=2).topk(self.channels, dim=1).indices
        else:
            chosen = torch.arange(count, device=a.device).expand(rows, count)
        row_of = torch.arange(rows, device=a.device).repeat_interleave(chosen.shape[1])
        channel_of = chosen.flatten()
        scores = []
        with torch.inference_mode():
            for start in range(0, len(row_of), self.rows_per_pass):
                r = row_of[start : start + self.rows_per_pass]
                c = channel_of[start : start + self.rows_per_pass]
                masks = normalise(upsample(a[r, c].unsqueeze(1), x.shape[2:]))  # (m, 1, *S)
                variants = [
                    scorer(inputs.take(r, spatial=x[r] * v.to(x.dtype))(self.model), r)
                    for v in self._variants(masks)
                ]
                scores.append(torch.stack(variants).mean(dim=0).to(a.dtype))
        weights = torch.cat(scores).unflatten(0, chosen.shape).softmax(dim=1)  # (rows, N, K)
        selected = a.gather(
            1,
            chosen.reshape(*chosen.shape, *[1] * (a.dim() - 2)).expand(*chosen.shape, *a.shape[2:]),
        )
        return torch.einsum("rnk,rn...->rk...", weights, selected)

    def _variants(self, masks: Tensor) -> Iterator[Tensor]:
        """The masks each channel's score averages over: the mask itself here."""
        yield masks

    @override
    def passes(self, channels: int, spatial: Sequence[int]) -> float:
        """One masked forward pass per channel scored (and per variant of its mask)."""
        scored = min(channels, self.channels or channels)
        return 1.0 + scored * getattr(self, "samples", 1)


@register("sscam")
class SSCAM(ScoreCAM):
    """SS-CAM (Wang et al. 2020, Smoothed Score-CAM): Score-CAM with each channel's score
    averaged over `samples` copies of its mask with Gaussian noise of std `sigma` added.

    As torchcam's SSCAM (noise on the normalised, upsampled mask; 35 samples, sigma 2); seeded
    with `seed`. ``sigma=0`` is Score-CAM. `samples` times Score-CAM's forward passes.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.SSCAM(net, samples=2, seed=0)(torch.rand(1, 3, 16, 16)).maps.shape
        torch.Size([1, 1, 16, 16])
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        samples: int = 35,
        sigma: float = 2.0,
        seed: int | None = 0,
        rows_per_pass: int = 64,
        channels: int | None = None,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, rows_per_pass=rows_per_pass, channels=channels, **options)
        whole_number("samples", samples, MAX_SAMPLES, "noisy copies of each mask, each a pass")
        if not sigma >= 0:
            raise ValueError(f"sigma must be at least 0, got {sigma}")
        self.samples, self.sigma, self.seed = samples, sigma, seed

    @override
    def _variants(self, masks: Tensor) -> Iterator[Tensor]:
        generator = None if self.seed is None else seeds.generator(self.seed, masks.device)
        for _ in range(self.samples):
            noise = torch.randn(
                masks.shape, generator=generator, device=masks.device, dtype=masks.dtype
            )
            yield masks + self.sigma * noise


@register("iscam")
class ISCAM(ScoreCAM):
    """IS-CAM (Naidu et al. 2020, Integrated Score-CAM): Score-CAM with each channel's score
    averaged over `samples` masks scaled by ``c_s = sum_{j<=s} j / N``, s = 1..N, integrating
    along the path from the empty input (torchcam's coefficients; 10 samples).

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.ISCAM(net, samples=3)(torch.rand(1, 3, 16, 16)).maps.shape
        torch.Size([1, 1, 16, 16])
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        samples: int = 10,
        rows_per_pass: int = 64,
        channels: int | None = None,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, rows_per_pass=rows_per_pass, channels=channels, **options)
        whole_number("samples", samples, MAX_SAMPLES, "scaled copies of each mask, each a pass")
        self.samples = samples

    @override
    def _variants(self, masks: Tensor) -> Iterator[Tensor]:
        coefficient = 0.0
        for step in range(1, self.samples + 1):
            coefficient += step / self.samples
            yield coefficient * masks


@register("ablationcam")
class AblationCAM(Explainer):
    """Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y - y_k) / y``, the relative drop of the
    score y when channel k of the layer is zeroed (0 where y is 0).

    The network runs once up to the layer per chunk of channels; from the layer on it runs on a
    batch of ablated copies (at most ``rows_per_pass`` rows), so the layer must be the output of a
    whole block: a later skip connection from before the layer cannot take the larger batch.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.AblationCAM(net)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    needs_gradients = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        rows_per_pass: int = 1024,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        self.rows_per_pass = _check_rows(rows_per_pass)

    @override
    def passes(self, channels: int, spatial: Sequence[int]) -> float:
        """One pass of the layers after the explained one per channel zeroed (counted whole)."""
        return 1.0 + channels

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        a, x, scorer, original = (
            evidence.activations,
            evidence.model_inputs,
            evidence.scorer,
            evidence.scores,
        )
        assert x is not None
        assert scorer is not None
        assert original is not None
        rows, count = a.shape[:2]
        per_pass = max(1, self.rows_per_pass // rows)  # channels ablated per forward pass
        module = self.model.get_submodule(evidence.layer)
        drops = []
        for start in range(0, count, per_pass):
            channels = torch.arange(start, min(start + per_pass, count), device=a.device)
            keep = torch.ones(len(channels), count, device=a.device)
            keep[torch.arange(len(channels)), channels] = 0.0

            try:
                outputs = self._ablated_pass(module, x, keep)
            except RuntimeError as error:
                if len(keep) > 1:
                    try:  # the same ablation at the batch size the network was built for
                        self._ablated_pass(module, x, keep[:1])
                    except RuntimeError:
                        raise error from None  # the model's own error, as it raised it
                    raise ValueError(
                        f"Ablation-CAM runs the network after layer {evidence.layer!r} on a batch "
                        "of ablated copies, and the network combines that layer's output with "
                        "tensors from before it (a skip connection?): choose the output of a "
                        f"whole block, e.g. 'layer4' ({first_line(error)})"
                    ) from error
                raise
            ablated_rows = torch.arange(rows, device=a.device).repeat(len(channels))
            ablated = scorer(outputs, ablated_rows).to(a.dtype).unflatten(0, (len(channels), rows))
            drops.append(original.unsqueeze(0) - ablated)  # (chunk, rows, K)
        drop = torch.cat(drops).permute(1, 2, 0)  # (rows, K, C)
        y = original.unsqueeze(2)
        weights = torch.where(y != 0, drop / torch.where(y != 0, y, 1.0), 0.0)
        return torch.einsum("rkc,rc...->rk...", weights, a)

    def _ablated_pass(self, module: nn.Module, x: Inputs, keep: Tensor) -> object:
        """The model's outputs with the layer's output replaced by ``len(keep)`` copies, copy i
        multiplied channel-wise by ``keep[i]`` (rows copy-major)."""
        count = keep.shape[1]

        def ablate(_module: nn.Module, _inputs: object, out: Tensor) -> Tensor:
            # (rows, C, ...) or channels-last (rows, ..., C) -> (copies * rows, ...)
            axis = 1 if out.shape[1] == count else out.dim() - 1
            shape = [1] * (out.dim() + 1)
            shape[0], shape[axis + 1] = len(keep), count
            mask = keep.to(out.dtype).reshape(shape)
            return (out.unsqueeze(0) * mask).flatten(0, 1)

        with removing([hook_here(module, ablate)]), torch.inference_mode():
            return x(self.model)
