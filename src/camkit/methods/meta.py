"""Methods over a base method: Finer-CAM (another score), RefineCAM (several layers) and SESS
(scales and sliding windows). Each takes ``base=`` a registered method name."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Unpack, override

from camkit.capture import run_model
from camkit.errors import whole_number
from camkit.explanation import Explanation
from camkit.inputs import Inputs
from camkit.layers import LayerSpec, stage_layers
from camkit.maps import normalise
from camkit.methods.base import Explainer, MethodOptions, detached, method_class, register
from camkit.targets import (
    ClassScore,
    Finer,
    OutputSelector,
    Score,
    Targets,
    score_targets,
    select_output,
)


def base_method(name: str, wrapper: str) -> type[Explainer]:
    """The registered class `name`, checked to explain a score (not a class-agnostic map)."""
    cls = method_class(name)
    if not cls.uses_score:
        raise ValueError(
            f"{wrapper} needs a base method whose map follows the explained score; {name!r} "
            "does not: choose e.g. gradcam, gradcam++, layercam or scorecam"
        )
    return cls


def _class_targets(targets: Targets, method: str) -> Targets:
    if isinstance(targets, ClassScore) or (callable(targets) and not isinstance(targets, Tensor)):
        raise ValueError(
            f"{method} explains classes (None, an int, one per input, a (B, K) tensor or "
            f"TopK), got {type(targets).__name__}"
        )
    return targets


@register("finercam")
class FinerCAM(Explainer):
    """Finer-CAM (Zhang et al. CVPR 2025): the base method explaining ``S_c - alpha * mean_j
    S_j`` over the `compare` classes scored closest to c, what tells c from its look-alikes.

    The comparison classes come from the explained input's own scores, once; `weighting` and
    `alpha` as in `camkit.targets.Finer` (the default, 0.6 and the mean, is torchcam's and the
    paper's; ``weighting="softmax", alpha=1`` is pytorch-grad-cam's).

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.FinerCAM(net, base="layercam", compare=2)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        base: str = "gradcam",
        compare: int = 3,
        alpha: float = 0.6,
        weighting: Literal["mean", "softmax"] = "mean",
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        self.base = base_method(base, "finercam")(model, layer, **options)
        Finer(None, compare, alpha, weighting)  # checks the options now, not at the first call
        self.compare, self.alpha, self.weighting = compare, alpha, weighting

    @override
    def _explain(self, inputs: Inputs, targets: Targets, score: Score) -> Explanation:
        finer = Finer(_class_targets(targets, self.name), self.compare, self.alpha, self.weighting)
        return dataclasses.replace(self.base(inputs.given, finer, score=score), method=self.name)


@register("refinecam")
class RefineCAM(Explainer):
    """RefineCAM: the base method's maps of several layers, each normalised and upsampled, then
    multiplied: what survives is what every depth agrees on (early layers' noise drops out).

    `layer` None takes the last layer of each of the last three resolutions
    (`camkit.layers.stage_layers`). The base is Grad-CAM++, as in pytorch-grad-cam; torchcam
    multiplies at the largest layer's size before upsampling, camkit at the input's.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.RefineCAM(net, layer=["0", "1"])(torch.rand(1, 3, 16, 16)).layers
        ('0', '1')
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        base: str = "gradcam++",
        **options: Unpack[MethodOptions],
    ) -> None:
        options["fuse"] = "product"
        super().__init__(model, layer, **options)
        self.base_class = base_method(base, "refinecam")
        self.options: dict[str, Any] = dict(options)
        self.bases: dict[tuple[int, ...], Explainer] = {}
        self.given = layer

    @override
    def _explain(self, inputs: Inputs, targets: Targets, score: Score) -> Explanation:
        key = tuple(inputs.spatial.shape[1:])
        if key not in self.bases:
            layers = self.given if self.given is not None else stage_layers(self.model, inputs)
            self.bases[key] = self.base_class(self.model, layers, **self.options)
        result = self.bases[key](inputs.given, targets, score=score)
        return dataclasses.replace(result, method=self.name)


Place = tuple[int, int, int, int]  # a window's top, left, and the scaled image's height, width


def _starts(length: int, step: int, window: int) -> list[int]:
    """Window starts covering `length`; the last window is shifted back inside."""
    starts = []
    for start in range(0, length, step):
        if start + window >= length:
            starts.append(max(length - window, 0))
            break
        starts.append(start)
    return starts


def _gaussian_blur(maps: Tensor, size: int = 11, sigma: float = 5.0) -> Tensor:
    """(N, K, H, W) blurred by a separable Gaussian, borders reflected (OpenCV's default)."""
    offsets = torch.arange(size, dtype=maps.dtype, device=maps.device) - (size - 1) / 2
    kernel = torch.exp(-offsets.square() / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    flat = maps.flatten(0, 1).unsqueeze(1)
    half = size // 2
    # A map narrower than the kernel's half cannot be reflected: its border is repeated.
    mode = "reflect" if min(maps.shape[2:]) > half else "replicate"
    flat = F.conv2d(F.pad(flat, [half, half, 0, 0], mode=mode), kernel.reshape(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, [0, 0, half, half], mode=mode), kernel.reshape(1, 1, -1, 1))
    blurred: Tensor = flat[:, 0].unflatten(0, maps.shape[:2])
    return blurred


@register("sess")
class SESS(Explainer):
    """SESS (Tyagi et al. 2022): the base method on sliding windows over several scales of the
    image, each window's map weighted by its score and fused: robust to scale, to several
    instances of the class and to distractors.

    The image is resized so that its shorter side is each of `scales` (default: `num_scales`
    sizes from the window up in steps of 2/7 of it, as in the paper); square windows of the
    shorter input side (`window`) slide with `step` (default: the window). Each window's map is
    weighted by its softmax probability for the class over the best window's, pasted back and
    resized; the maps are averaged where they exceed `theta` (or their maximum, ``pool="max"``)
    and blurred (Gaussian 11 x 11, sigma 5; ``blur=False`` leaves it out). ``pre_filter``
    drops that share of the lowest-scoring windows. All windows of all images go through the
    base method in batches of `rows_per_pass`. For 2-D inputs; as pytorch-grad-cam's SESS.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.SESS(net, num_scales=2)(torch.rand(1, 3, 16, 16)).maps.shape
        torch.Size([1, 1, 16, 16])
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        base: str = "gradcam",
        scales: Sequence[int] | None = None,
        num_scales: int = 12,
        window: int | None = None,
        step: int | None = None,
        pre_filter: float = 0.0,
        theta: float = 0.0,
        pool: Literal["mean", "max"] = "mean",
        blur: bool = True,
        rows_per_pass: int = 32,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
        if not 0.0 <= pre_filter < 1.0:
            raise ValueError(f"pre_filter must be in [0, 1), got {pre_filter}")
        whole_number("num_scales", num_scales, 64, "input sizes, each a pass over its tiles")
        whole_number("rows_per_pass", rows_per_pass, 4096, "tiles held by one pass")
        if scales is not None and len(scales) > 64:
            raise ValueError(
                f"scales: {len(scales)} given; at most 64 (each a pass over its tiles)"
            )
        self.base = base_method(base, "sess")(model, layer, **options)
        self.scales, self.num_scales = scales, num_scales
        self.window, self.step = window, step
        self.pre_filter, self.theta, self.pool = pre_filter, theta, pool
        self.blur, self.rows_per_pass = blur, rows_per_pass

    @override
    def _explain(self, inputs: Inputs, targets: Targets, score: Score) -> Explanation:
        _class_targets(targets, self.name)
        image = inputs.spatial
        if image.dim() != 4 or not inputs.single:
            raise ValueError(
                "SESS slides windows over images: it takes one (B, C, H, W) input, got "
                f"{'several inputs' if not inputs.single else f'shape {tuple(image.shape)}'}"
            )
        with torch.no_grad():
            outputs = detached(run_model(self.model, image))
        indices, _, _ = score_targets(
            outputs,
            _class_targets(targets, self.name),
            output=self.output,
            batch_size=image.shape[0],
        )
        assert indices is not None
        height, width = image.shape[2:]
        window = self.window or min(height, width)
        patches, places = self._patches(image, window)  # (P, B, C, w, w)
        maps, layers = self._patch_maps(patches, indices, score)  # (P, B, K, w, w)
        fused = self._fuse(maps, places, (height, width))
        if self.blur:
            fused = _gaussian_blur(fused)
        return Explanation(
            maps=normalise(fused).float(),
            raw=(fused,),
            targets=indices,
            scores=select_scores(outputs, indices, self.output, score),
            outputs=outputs,
            layers=layers,
            method=self.name,
        )

    @override
    def passes(self, channels: int, spatial: Sequence[int]) -> float:
        """The base method's passes for every window of every scale (on window-sized crops)."""
        if len(spatial) != 2:
            return self.base.passes(channels, spatial)
        height, width = spatial
        window = self.window or min(height, width)
        step = self.step or window
        windows = 0
        for scale in self._scales(window):
            ratio = scale / min(height, width)
            rows, columns = round(height * ratio), round(width * ratio)
            windows += (max(0, rows - window) // step + 1) * (max(0, columns - window) // step + 1)
        return 1.0 + windows * self.base.passes(channels, (window, window))

    def _scales(self, window: int) -> list[int]:
        if self.scales is not None:
            if any(s < window for s in self.scales):
                raise ValueError(f"every scale must be at least the window {window}")
            return list(self.scales)
        step = round(window * 2 / 7)
        return [window + step * i for i in range(self.num_scales)]

    def _patches(self, image: Tensor, window: int) -> tuple[Tensor, list[Place]]:
        height, width = image.shape[2:]
        step = self.step or window
        patches, places = [], list[Place]()
        for scale in self._scales(window):
            short, long = (height, width) if height <= width else (width, height)
            size_long = int(scale * long / short)
            size = (scale, size_long) if height <= width else (size_long, scale)
            scaled = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            for top in _starts(size[0], step, window):
                for left in _starts(size[1], step, window):
                    patches.append(scaled[:, :, top : top + window, left : left + window])
                    places.append((top, left, *size))
        return torch.stack(patches), places

    def _patch_maps(
        self, patches: Tensor, indices: Tensor, score: Score
    ) -> tuple[Tensor, tuple[str, ...]]:
        """Each window's base map, weighted by its probability over the best window's, and the
        layers the base explained (kept in the call, not on the explainer: one explainer may
        serve several threads)."""
        count, batch = patches.shape[:2]
        rows = patches.flatten(0, 1)
        row_targets = indices.repeat(count, 1)
        maps, probabilities = [], []
        layers: tuple[str, ...] = ()
        for start in range(0, len(rows), self.rows_per_pass):
            part = slice(start, start + self.rows_per_pass)
            with warnings.catch_warnings():  # a window without the class is an answer here
                warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ .* maps are constant")
                result = self.base(rows[part], row_targets[part], score=score)
            maps.append(result.maps)
            logits = select_output(result.outputs, self.output)
            layers = result.layers
            probabilities.append(logits.softmax(dim=1).gather(1, row_targets[part]))
        weight = torch.cat(probabilities).clamp_min(0).unflatten(0, (count, batch))  # (P, B, K)
        if self.pre_filter > 0:
            dropped = int(count * self.pre_filter)
            order = weight.argsort(dim=0)
            kept = torch.ones_like(weight).scatter(0, order[:dropped], 0.0)
            weight = weight * kept
        best = weight.amax(dim=0, keepdim=True)
        weight = torch.where(best > 0, weight / torch.where(best > 0, best, 1.0), 1.0)
        stacked = torch.cat(maps).unflatten(0, (count, batch))
        weighted: Tensor = stacked * weight[..., None, None]
        return weighted, layers

    def _fuse(self, maps: Tensor, places: list[Place], size: tuple[int, int]) -> Tensor:
        window = maps.shape[-1]
        total = maps.new_zeros(*maps.shape[1:3], *size)
        counts = torch.zeros_like(total)
        for patch, (top, left, high, wide) in zip(maps, places, strict=True):
            canvas = maps.new_zeros(*patch.shape[:2], high, wide)
            canvas[..., top : top + window, left : left + window] = patch
            pasted = F.interpolate(canvas, size=size, mode="bilinear", align_corners=False)
            if self.pool == "max":
                total = torch.maximum(total, pasted)
            else:
                above = pasted > self.theta
                total = total + torch.where(above, pasted, 0.0)
                counts = counts + above
        if self.pool == "max":
            return total
        return torch.where(counts > 0, total / counts.clamp_min(1), 0.0)


def select_scores(outputs: object, indices: Tensor, output: OutputSelector, score: Score) -> Tensor:
    """The (B, K) explained scores of the full images."""
    logits = select_output(outputs, output)
    if score == "softmax":
        logits = logits.softmax(dim=1)
    chosen: Tensor = logits.gather(1, indices).float()
    return chosen
