"""The rest of the CAM family written from the papers, one image and one class at a time.

Plain hooks and autograd, float64, no camkit code: what camkit's batched rules must equal.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Grid = Callable[[Tensor], Tensor]  # a layer's output -> (B, C, h, w); identity for CNNs


def capture(model: nn.Module, layer: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(the layer's output in the graph, the model's logits)."""
    kept: dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor:
        kept["A"] = output
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    return kept["A"], logits


def gradient_maps(
    model: nn.Module, layer: nn.Module, x: Tensor, classes: list[list[int]], grid: Grid
) -> dict[str, Tensor]:
    """Raw (B, K, h, w) maps of the gradient rules."""
    output, logits = capture(model, layer, x)
    maps: dict[str, list[list[Tensor]]] = {}
    for b, image_classes in enumerate(classes):
        rows: dict[str, list[Tensor]] = {}
        for c in image_classes:
            (grad,) = torch.autograd.grad(logits[b, c], output, retain_graph=True)
            g = grid(grad)[b].double()  # (C, h, w)
            a = grid(output.detach())[b].double()
            for name, value in rules(a, g).items():
                rows.setdefault(name, []).append(value)
        for name, row in rows.items():
            maps.setdefault(name, []).append(row)
    return {name: torch.stack([torch.stack(r) for r in rows]) for name, rows in maps.items()}


def first_component(m: Tensor) -> Tensor:
    """(C, h, w) -> the projection of the centred positions on the first right singular vector,
    signed to correlate positively with the channel sum."""
    matrix = m.flatten(1).T  # (positions, C)
    centred = matrix - matrix.mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = centred @ vh[0]
    reference = m.sum(dim=0).flatten()
    if torch.dot(projection - projection.mean(), reference - reference.mean()) < 0:
        projection = -projection
    return projection.reshape(m.shape[1:])


def rules(a: Tensor, g: Tensor) -> dict[str, Tensor]:
    """Each gradient rule's map for one image and class, ReLU applied."""
    sums = a.sum(dim=(1, 2))
    xgrad = torch.where(sums != 0, (g * a).sum(dim=(1, 2)) / sums, torch.zeros_like(sums))
    return {
        "hirescam": torch.relu((g * a).sum(dim=0)),
        "gradcam-elementwise": torch.relu(torch.relu(g * a).sum(dim=0)),
        "xgradcam": torch.relu((xgrad[:, None, None] * a).sum(dim=0)),
        "layercam": torch.relu((torch.relu(g) * a).sum(dim=0)),
        "eigengradcam": torch.relu(first_component(g * a)),
    }


def eigencam(model: nn.Module, layer: nn.Module, x: Tensor, grid: Grid) -> Tensor:
    """(B, h, w) EigenCAM maps."""
    with torch.no_grad():
        output, _ = capture(model, layer, x)
    return torch.stack([torch.relu(first_component(a.double())) for a in grid(output)])


def scorecam(
    model: nn.Module, layer: nn.Module, x: Tensor, classes: list[int], grid: Grid
) -> Tensor:
    """(B, h, w) Score-CAM maps: one masked forward pass per image and channel."""
    with torch.no_grad():
        output, _ = capture(model, layer, x)
        maps = []
        for b, c in enumerate(classes):
            a = grid(output)[b]
            scores = []
            for k in range(a.shape[0]):
                up = F.interpolate(a[k][None, None], size=x.shape[2:], mode="bilinear")[0, 0]
                low, high = up.min(), up.max()
                mask = (
                    (up - low) / (high - low)
                    if high > low
                    else torch.full_like(up, float(high > 0))
                )
                scores.append(model(x[b : b + 1] * mask)[0, c])
            weights = torch.stack(scores).double().softmax(dim=0)
            maps.append(torch.relu((weights[:, None, None] * a.double()).sum(dim=0)))
    return torch.stack(maps)


def ablationcam(
    model: nn.Module, layer: nn.Module, x: Tensor, classes: list[int], grid: Grid, channel_axis: int
) -> Tensor:
    """(B, h, w) Ablation-CAM maps: one forward pass per image and zeroed channel."""
    with torch.no_grad():
        output, logits = capture(model, layer, x)
        maps = []
        for b, c in enumerate(classes):
            y = logits[b, c].double()
            a = grid(output)[b].double()
            weights = []
            for k in range(a.shape[0]):

                def zero(_m: nn.Module, _i: object, out: Tensor, k: int = k) -> Tensor:
                    out = out.clone()
                    out.select(channel_axis, k).zero_()
                    return out

                handle = layer.register_forward_hook(zero)
                try:
                    y_k = model(x[b : b + 1])[0, c].double()
                finally:
                    handle.remove()
                weights.append((y - y_k) / y)
            maps.append(torch.relu((torch.stack(weights)[:, None, None] * a).sum(dim=0)))
    return torch.stack(maps)
