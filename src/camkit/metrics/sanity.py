"""Sanity checks by model randomisation (Adebayo et al., 2018: MPRT).

Re-initialise the model's layers one at a time from the output down, keeping earlier ones
randomised (cascading) or restoring them first (independent), and explain the same inputs for
the same classes after each step. A map that reflects what the model learned changes: its
Spearman rank correlation and SSIM with the original map fall towards 0. A map that stays the
same shows the input, not the model.

- Smooth MPRT (Hedström et al., 2024): each map, original and randomised, is the mean of the
  maps of `samples` noisy copies of the input (the last one clean), which removes the noise
  that makes a map change whatever the model.
- Efficient MPRT (Hedström et al., 2024): the relative rise of the map's discrete entropy once
  every layer is randomised, ``(H(a') - H(a)) / H(a)``: a map of a random model should be
  noise, more complex than the map of a trained one.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from camkit.errors import CamkitWarning
from camkit.explanation import Explanation
from camkit.layers import LayerSpec, resolve_layers
from camkit.methods.base import Explainer, MethodOptions, method_class
from camkit.metrics._common import Maps, as_maps
from camkit.seeds import seeded

if TYPE_CHECKING:
    from typing_extensions import Unpack


def _average_ranks(values: Tensor) -> Tensor:
    """(B, N) ranks 0..N-1 per row; tied values share the mean of their ranks."""
    ordered = values.sort(dim=1).values
    below = torch.searchsorted(ordered, values.contiguous(), side="left")
    through = torch.searchsorted(ordered, values.contiguous(), side="right")
    return (below + through - 1).to(torch.float64) / 2


def spearman(a: Maps, b: Maps) -> Tensor:
    """(B,) Spearman rank correlation of paired maps (ties get average ranks, as in SciPy).

    A constant map has no ranking to share: its correlation is 0 by convention.

    Examples:
        >>> import torch
        >>> spearman(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[1.0, 3.0, 2.0, 4.0]]))
        tensor([0.8000])
    """
    ranks_a = _average_ranks(as_maps(a).flatten(1))
    ranks_b = _average_ranks(as_maps(b).flatten(1).to(ranks_a.device))
    ranks_a = ranks_a - ranks_a.mean(dim=1, keepdim=True)
    ranks_b = ranks_b - ranks_b.mean(dim=1, keepdim=True)
    scale = (ranks_a.square().sum(dim=1) * ranks_b.square().sum(dim=1)).sqrt()
    covariance = (ranks_a * ranks_b).sum(dim=1)
    return torch.where(scale > 0, covariance / scale.clamp_min(1e-300), 0.0).float()


def ssim(
    a: Maps, b: Maps, *, window: int = 11, sigma: float | None = 1.5, data_range: float = 1.0
) -> Tensor:
    """(B,) structural similarity (Wang et al., 2004) of paired maps of 1 to 3 dimensions.

    A Gaussian window (11 wide, sigma 1.5: the paper's) or, with ``sigma=None``, a uniform one;
    C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = `data_range`; averaged over the positions where the
    window fits (a window larger than the map shrinks to the map's smallest side).

    Examples:
        >>> import torch
        >>> ssim(torch.ones(1, 4, 4), torch.zeros(1, 4, 4), window=3)  # C1 / (1 + C1)
        tensor([9.9990e-05])
    """
    x, y = as_maps(a).double(), as_maps(b).double().to(as_maps(a).device)
    dims = x.dim() - 1
    if not 1 <= dims <= 3:
        raise ValueError(f"ssim takes (B, *spatial) maps of 1-3 dimensions, not {tuple(x.shape)}")
    width = min(window, *x.shape[1:])
    offsets = [i - (width - 1) / 2 for i in range(width)]
    weights = [1.0 if sigma is None else math.exp(-(o**2) / (2 * sigma**2)) for o in offsets]
    weights = [w / sum(weights) for w in weights]
    # The window is separable: one 1-D pass per axis (11 x 11 multiplications per pixel become
    # 22), the five local means at once.
    fields = torch.stack([x, y, x * x, y * y, x * y])
    for axis in range(2, dims + 2):
        fields = _window_sum(fields, weights, axis)
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = fields.unbind(0)
    var_x = mean_xx - mean_x**2
    var_y = mean_yy - mean_y**2
    cov = mean_xy - mean_x * mean_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
    )
    return index.flatten(1).mean(dim=1).float()


def _window_sum(fields: Tensor, weights: list[float], axis: int) -> Tensor:
    """The weighted sums of `fields` over each window of len(weights) along `axis` (where the
    window fits): shifted multiply-adds, faster on a CPU than a float64 convolution."""
    kept = fields.shape[axis] - len(weights) + 1
    total = fields.narrow(axis, 0, kept) * weights[0]
    for shift in range(1, len(weights)):
        total.add_(fields.narrow(axis, shift, kept), alpha=weights[shift])
    return total


def cascade_steps(model: nn.Module) -> list[str]:
    """The default randomisation order: blocks of parameterised layers, output first.

    A block is the parent of layers that own parameters (a conv with its batch norm is one step);
    layers at the top level are steps of their own.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3),
        ...     torch.nn.BatchNorm2d(4)), torch.nn.Flatten(), torch.nn.LazyLinear(2))
        >>> cascade_steps(net)
        ['2', '0']
    """
    steps: list[str] = []
    for name, module in model.named_modules():
        if name and any(True for _ in module.parameters(recurse=False)):
            block = name.rpartition(".")[0] or name
            if block not in steps:
                steps.append(block)
    return steps[::-1]


def _randomise(module: nn.Module) -> None:
    for layer in module.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
        elif any(True for _ in layer.parameters(recurse=False)):
            for parameter in layer.parameters(recurse=False):
                nn.init.normal_(parameter, std=0.02)


@dataclass(frozen=True)
class Sanity:
    """Similarity (S, B) of the original maps to the maps after each of S randomisation steps.

    Examples:
        >>> import torch
        >>> result = Sanity(["fc", "conv"], torch.tensor([[0.5, 0.7], [0.1, 0.3]]),
        ...                 torch.tensor([[0.6, 0.8], [0.2, 0.2]]))
        >>> result.mean_spearman, result.mean_ssim
        (tensor([0.6000, 0.2000]), tensor([0.7000, 0.2000]))
    """

    steps: list[str]
    spearman: Tensor
    ssim: Tensor

    @property
    def mean_spearman(self) -> Tensor:
        """(S,) rank correlation with the original map after each step, averaged over inputs."""
        return self.spearman.mean(dim=1)

    @property
    def mean_ssim(self) -> Tensor:
        """SSIM with the original maps at each step, averaged over inputs."""
        return self.ssim.mean(dim=1)


def _built(
    cls: type[Explainer], model: nn.Module, layer: LayerSpec, options: MethodOptions
) -> Explainer:
    """The method for `model` at `layer`; one that draws on layers of its own (guided
    backprop, Sobel, FullGrad) without the ones its explanation reported."""
    own = cls.layer_means in ("input", "own")
    return cls(model, None if own else layer, **options)


def cascading_randomisation(
    model: nn.Module,
    x: Tensor,
    method: str | type[Explainer] = "gradcam",
    targets: Tensor | Sequence[int] | None = None,
    *,
    steps: Sequence[str] | None = None,
    seed: int = 0,
    original: Maps | None = None,
    layer: LayerSpec = None,
    independent: bool = False,
    noisy_copies: int = 0,
    noise: float = 0.1,
    **options: Unpack[MethodOptions],
) -> Sanity:
    """Randomise a copy of `model` from the top down and compare each step's maps to the original.

    The model itself is not touched (a deep copy is randomised). The classes stay those of the
    original explanation, so each map answers the same question.

    Args:
        model: the trained model.
        x: (B, C, *spatial) inputs.
        method: a registered method name (see `camkit.METHODS`) or an Explainer class.
        targets: (B,) classes; default the original model's prediction.
        steps: module names to re-initialise in order (each with everything inside it); default
            `cascade_steps(model)`.
        seed: seeds the re-initialisation (the global random state is left as it was).
        original: the original model's maps, when already computed (an Explanation or tensor;
            with `noisy_copies`, an Explanation gives its layers and classes and is smoothed again).
        layer: the explained layer(s), as for the method (default: the method's choice).
        independent: restore every other layer before each step (independent MPRT) instead of
            keeping them randomised (cascading).
        noisy_copies: Smooth MPRT: each map is the mean over this many copies of the input, all but
            the last with Gaussian noise of `noise` times each input's value range.
        options: the method's other construction options (output=..., reshape=...).

    Examples:
        >>> import torch
        >>> from camkit.metrics import cascading_randomisation
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
        ...     torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        ...     torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
        >>> result = cascading_randomisation(net, torch.rand(2, 3, 12, 12), "gradcam", layer="2")
        >>> result.steps, result.spearman.shape
        (['6', '2', '0'], torch.Size([3, 2]))
    """
    explainer_class = method_class(method) if isinstance(method, str) else method
    draws = _smoothing_noise(x, noisy_copies, noise, seed)
    if original is None or (isinstance(original, Explanation) and draws is not None):
        # An Explanation gives its layers and classes; with draws it is smoothed again, like
        # every randomised map.
        if original is not None:
            layer, targets = _question(original, layer, targets)
        original = _original(_built(explainer_class, model, layer, options), x, targets, draws)
    reference = as_maps(original, x.shape[2:])
    layer, targets = _question(original, layer, targets)
    if not isinstance(original, Explanation) and layer is not None:
        layer = [n for n, _ in resolve_layers(model, layer)]
    randomised = copy.deepcopy(model)
    trained = copy.deepcopy(randomised.state_dict()) if independent else None
    modules = dict(randomised.named_modules())
    order = list(steps) if steps is not None else cascade_steps(model)
    missing = [name for name in order if name not in modules]
    if missing:
        raise ValueError(f"no module named {missing[0]!r} in the model; steps are module names")
    explainer = _built(explainer_class, randomised, layer, options)
    correlations, similarities = [], []
    with seeded(seed, x.device):
        for name in order:
            if trained is not None:
                randomised.load_state_dict(trained)
            _randomise(modules[name])
            maps = as_maps(_smoothed(explainer, x, targets, draws), x.shape[2:])
            correlations.append(spearman(reference, maps))
            similarities.append(ssim(reference, maps))
    return Sanity(order, torch.stack(correlations), torch.stack(similarities))


def _original(
    explainer: Explainer, x: Tensor, targets: Tensor | Sequence[int] | None, draws: Tensor | None
) -> Explanation:
    """The trained model's explanation (its layers and classes), its maps smoothed over the
    draws when there are any."""
    original = explainer(x, targets)
    if draws is None:
        return original
    asked = original.targets[:, 0] if original.targets is not None else None
    smoothed = as_maps(_smoothed(explainer, x, asked, draws), x.shape[2:])
    return dataclasses.replace(original, maps=smoothed[:, None])


def _question(
    original: Maps, layer: LayerSpec, targets: Tensor | Sequence[int] | None
) -> tuple[LayerSpec, Tensor | Sequence[int] | None]:
    """The layers and classes the original maps answer: an Explanation's own (the randomised
    model is asked the same, whatever it would prefer); a tensor's must come with targets."""
    if isinstance(original, Explanation):
        if targets is None and original.targets is not None:
            targets = original.targets[:, 0]
        return list(original.layers), targets
    if targets is None:
        raise ValueError("with the original maps as a tensor, give the targets they explain")
    return layer, targets


def _smoothing_noise(x: Tensor, samples: int, noise: float, seed: int) -> Tensor | None:
    """(samples, B, C, ...) Gaussian noise of `noise` times each input's range, the last
    sample zero (Smooth MPRT's clean copy); None without smoothing."""
    if samples <= 1:
        return None
    spread = (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1)).view(-1, *[1] * (x.dim() - 1))
    generator = torch.Generator(device=x.device).manual_seed(seed)
    draws = torch.randn((samples, *x.shape), generator=generator, device=x.device)
    draws[-1] = 0
    return draws * noise * spread


def _smoothed(
    explainer: Explainer, x: Tensor, targets: Tensor | Sequence[int] | None, draws: Tensor | None
) -> Explanation | Tensor:
    """The explanation of x, or (with `draws`) the mean of the maps of x + each draw (B,
    *spatial)."""
    with warnings.catch_warnings():
        # A randomised model often gives constant maps: expected here, not a problem.
        warnings.simplefilter("ignore", CamkitWarning)
        if draws is None:
            return explainer(x, targets)
        classes = None if targets is None else torch.as_tensor(targets, device=x.device)
        total = torch.zeros(len(x), *x.shape[2:], device=x.device)
        for draw in draws:
            total += explainer(x + draw, classes).maps[:, 0]
        return total / len(draws)


def discrete_entropy(maps: Maps, bins: int = 100) -> Tensor:
    """(B,) the entropy (natural logarithm) of each map's histogram of `bins` equal bins
    between its smallest and largest value: 0 for a constant map, log(bins) at most.

    Examples:
        >>> import torch
        >>> discrete_entropy(torch.tensor([[0.0, 1.0], [0.5, 0.5]]), bins=2).tolist()
        [0.6931471805599453, 0.0]
    """
    flat = as_maps(maps).flatten(1).double()
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    width = (high - low).clamp_min(torch.finfo(torch.float64).tiny)
    index = ((flat - low) / width * bins).floor().clamp(0, bins - 1).long()
    counts = torch.zeros(len(flat), bins, dtype=torch.float64, device=flat.device)
    counts.scatter_add_(1, index, torch.ones_like(flat))
    shares = counts / counts.sum(dim=1, keepdim=True)
    entropy: Tensor = torch.special.entr(shares).sum(dim=1)
    return entropy + 0.0  # + 0.0: no -0.0 for a constant map


def efficient_mprt(
    model: nn.Module,
    x: Tensor,
    method: str | type[Explainer] = "gradcam",
    targets: Tensor | Sequence[int] | None = None,
    *,
    original: Maps | None = None,
    seed: int = 0,
    bins: int = 100,
    layer: LayerSpec = None,
    **options: Unpack[MethodOptions],
) -> Tensor:
    """(B,) Efficient MPRT: ``(H(a') - H(a)) / H(a)`` with H the `discrete_entropy`, a the
    map and a' the map once every layer with parameters is randomised (one explanation).
    Higher: the map of a random model is noisier. Arguments as for
    `cascading_randomisation`.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
        ...     torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        ...     torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
        >>> efficient_mprt(net, torch.rand(2, 3, 12, 12), "gradcam", [0, 1], layer="2").shape
        torch.Size([2])
    """
    explainer_class = method_class(method) if isinstance(method, str) else method
    if original is None:
        original = _smoothed(explainer_class(model, layer, **options), x, targets, None)
    layer, targets = _question(original, layer, targets)
    randomised = copy.deepcopy(model)
    with seeded(seed, x.device):
        _randomise(randomised)
        maps = _smoothed(explainer_class(randomised, layer, **options), x, targets, None)
    before = discrete_entropy(as_maps(original, x.shape[2:]), bins)
    after = discrete_entropy(as_maps(maps, x.shape[2:]), bins)
    return ((after - before) / before.clamp_min(torch.finfo(torch.float64).tiny)).float()


def other_classes(
    targets: Tensor, classes: int, generator: torch.Generator | None = None
) -> Tensor:
    """(B,) a class other than each target, drawn uniformly from the other `classes` - 1.

    Examples:
        >>> picked = other_classes(torch.tensor([0, 2, 2]), 3, torch.Generator().manual_seed(0))
        >>> bool((picked != torch.tensor([0, 2, 2])).all())
        True
    """
    if classes < 2:
        raise ValueError("a random other class needs a model of at least 2 classes")
    offset = torch.randint(
        0, classes - 1, targets.shape, generator=generator, device=targets.device
    )
    return offset + (offset >= targets).long()


def random_logit(
    explain: Callable[[Tensor, Tensor], Tensor],
    maps: Maps,
    x: Tensor,
    targets: Tensor,
    others: Tensor,
    similarity: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """(B,) random logit test (Sixt et al., 2020): the similarity (default `ssim`) of each
    input's map of its class to its map of another class, `others` (`other_classes` draws
    them). A map that explains the class changes with it: low is good.

    Examples:
        >>> import torch
        >>> same = lambda inputs, classes: inputs[:, 0]  # a map that ignores the class
        >>> x = torch.rand(2, 1, 8, 8)
        >>> random_logit(same, x[:, 0], x, torch.tensor([0, 1]), torch.tensor([1, 0])).tolist()
        [1.0, 1.0]
    """
    reference = as_maps(maps, x.shape[2:])
    again = explain(x, others).to(reference)
    return (similarity or ssim)(reference, again)
