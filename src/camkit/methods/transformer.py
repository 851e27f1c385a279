"""Methods made for vision transformers, drawn from attention: LeGrad, attention rollout, GAE.

Their "layers" are the transformer's blocks (found automatically: `camkit.attention`), their
evidence the blocks' attention probabilities A (B, heads, N, N), whatever attention kernel the
model runs. Each method is one rule from A (and dS/dA) to a relevance per token; the pipeline
here drops the leading tokens (class, registers), lays the patch tokens on their grid, and
upsamples that grid to the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from camkit.attention import AttentionRecord, find_blocks, recording_attention
from camkit.capture import run_model
from camkit.errors import first_line
from camkit.explanation import Explanation
from camkit.inputs import Inputs, ModelInput
from camkit.layers import LayerSpec, unwrap
from camkit.layouts import token_grid
from camkit.maps import normalise, upsample, warn_constant
from camkit.methods.base import Explainer, MethodOptions, detached, differentiate, register
from camkit.targets import Score, Targets, score_targets

if TYPE_CHECKING:
    from typing_extensions import Unpack

HEAD_FUSIONS = ("mean", "max", "min")


def rollout(
    attention: Sequence[Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each token's output draws on each
    input token through all blocks, (B, N, N).

    Per block the heads are fused (`head_fusion`: mean, max or min), the smallest
    `discard_ratio` of the entries of each image are zeroed, the identity is added (the
    residual connection) and the rows renormalised; the blocks' matrices multiply, last
    block on the left.

    Examples:
        >>> a = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # one block: everyone reads token 1
        >>> rollout([a]).tolist()  # (A + I) / 2
        [[[0.5, 0.5], [0.0, 1.0]]]
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    joint: Tensor | None = None
    for a in attention:
        heads = a.float()
        fused = {"mean": heads.mean(1), "max": heads.amax(1), "min": heads.amin(1)}[head_fusion]
        flat = fused.flatten(1)
        dropped = int(flat.shape[1] * discard_ratio)
        if dropped:
            lowest = flat.topk(dropped, dim=1, largest=False).indices
            fused = flat.scatter(1, lowest, 0.0).view_as(fused)
        step = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        step = step / step.sum(dim=-1, keepdim=True)
        joint = step if joint is None else step @ joint
    if joint is None:
        raise ValueError("rollout needs the attention of at least one block")
    return joint


def relevance_propagation(attention: Sequence[Tensor], gradients: Sequence[Tensor]) -> Tensor:
    """Gradient-weighted relevance (Chefer et al. 2021, "Generic Attention-model
    Explainability"): R starts as the identity and each block, in order, adds Ā R with
    Ā = mean over heads of (dS/dA * A)^+. Returns R - I, (B, K, N, N): the identity (each
    token's own share) is the same for every patch, and kept apart it cannot drown a weak
    gradient's relevance in float32 rounding.

    Args:
        attention: per block, (B, heads, N, N).
        gradients: per block, dS/dA for K scores, (B, K, heads, N, N).

    Examples:
        >>> a = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])
        >>> g = torch.tensor([[[[[2.0, -1.0], [1.0, 1.0]]]]])
        >>> relevance_propagation([a], [g])[0, 0].tolist()  # (g * a)^+
        [[1.0, 0.0], [0.0, 1.0]]
    """
    beyond: Tensor | None = None  # R - I
    for a, g in zip(attention, gradients, strict=True):
        step = (g.float() * a.float().unsqueeze(1)).clamp_min(0).mean(dim=2)  # (B, K, N, N)
        beyond = step if beyond is None else beyond + step + step @ beyond
    if beyond is None:
        raise ValueError("relevance propagation needs the attention of at least one block")
    return beyond


def legrad_relevance(gradients: Sequence[Tensor]) -> Tensor:
    """LeGrad (Bousselham et al. 2024): the positive part of each block's dS^l/dA^l, averaged
    over heads and queries, then over blocks: a relevance per key token, (B, K, N).

    Examples:
        >>> g = torch.tensor([[[[[1.0, -2.0], [3.0, 0.0]]]]])  # one block, (B, K, heads, N, N)
        >>> legrad_relevance([g]).tolist()
        [[[2.0, 0.0]]]
    """
    if not gradients:
        raise ValueError("LeGrad needs the attention of at least one block")
    return torch.stack([g.float().clamp_min(0).mean(dim=(2, 3)) for g in gradients]).mean(0)


def rows_of(value: object, rows: slice, total: int) -> object:
    """The same structure with every tensor of `total` rows cut to `rows` (the outputs of one
    stacked group); other values (a scalar, a per-batch summary) are left as they are.

    Examples:
        >>> out = {"logits": torch.arange(6.0).view(3, 2), "loss": torch.tensor(1.0)}
        >>> rows_of(out, slice(2, 3), 3)["logits"].tolist()
        [[4.0, 5.0]]
    """
    if isinstance(value, Tensor):
        return value[rows] if value.dim() and len(value) == total else value
    if isinstance(value, dict):
        return type(value)((k, rows_of(v, rows, total)) for k, v in value.items())
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(rows_of(v, rows, total) for v in value)
    return value


class AttentionExplainer(Explainer):
    """Base of the methods drawn from attention, a pipeline of its own (forward with the
    attention recorded, score, one relevance rule per method, tokens laid on the patch grid):
    subclasses implement `relevance`.

    `layer` names the transformer blocks (None: every block, found automatically); a layer
    inside a block stands for its block (``"blocks.3.norm1"``: ``"blocks.3"``), and a module
    holding blocks for all of them. The explained input is 2-D (an image); the maps lie on the
    patch grid the blocks' tokens form (after 0, 1, 2 or 5 leading tokens: class, distillation,
    registers)."""

    leaves: ClassVar[str] = "first"  # which blocks' inputs are gradient leaves (attention)
    layer_means = "blocks"

    def __init__(
        self, model: nn.Module, layer: LayerSpec = None, **options: Unpack[MethodOptions]
    ) -> None:
        super().__init__(model, layer, **options)
        if self.smooth is not None or self.reshape is not None:
            raise ValueError(
                f"{type(self).__name__} reads attention, not a layer's feature map: it takes "
                "neither smooth= nor reshape="
            )

    @classmethod
    def fits(cls, model: nn.Module, x: ModelInput) -> str | None:
        """A model fits when camkit finds its transformer blocks (one forward pass); a model
        that fails on `x` does not, and the reason says why."""
        try:
            found = find_blocks(unwrap(model), Inputs.wrap(x))
        except (ValueError, RuntimeError) as error:
            return f"{cls.name}: {first_line(error)}"
        return None if found else cls._no_blocks(model)

    @classmethod
    def _no_blocks(cls, model: nn.Module) -> str:
        return (
            f"{cls.name} explains transformers, and no module of {type(unwrap(model)).__name__} "
            "held in an nn.ModuleList or nn.Sequential computes self-attention: pass layer=[...] "
            "naming its blocks, or use gradcam on a token layer"
        )

    def relevance(self, record: AttentionRecord, scores: Tensor, leading: int) -> Tensor:
        """Relevance per key token, (B, K, N), for the K `scores` (B, K); `leading` tokens
        (class, registers) come before the patches."""
        raise NotImplementedError

    def _blocks_for(self, inputs: Inputs) -> list[str]:
        return [name for name, _ in self._once_per_rank(inputs, lambda: self._blocks(inputs))]

    def _blocks(self, inputs: Inputs) -> list[tuple[str, nn.Module]]:
        found = find_blocks(self.model, inputs)
        if self.given_layers is not None:
            found = self._given_blocks([name for name, _ in self.given_layers], found)
        if not found:
            raise ValueError(self._no_blocks(self.model))
        modules = dict(self.model.named_modules())
        return [(name, modules[name]) for name in found]

    def _given_blocks(self, given: list[str], found: list[str]) -> list[str]:
        """The blocks the given layers stand for: a block itself, the block a layer lies in,
        or the blocks a module holds; where no block was found, the names as given (the
        caller knows its blocks)."""
        if not found:
            return given
        blocks: list[str] = []
        for name in given:
            inside = [b for b in found if name == b or name.startswith(f"{b}.")]
            held = [b for b in found if b.startswith(f"{name}.") or not name]
            if not inside and not held:
                raise ValueError(
                    f"{self.name} reads the attention of the transformer's blocks "
                    f"({found[0]} ... {found[-1]}); layer {name!r} is neither a block nor "
                    "inside one: name blocks, or leave the layer out for every block"
                )
            blocks += [b for b in inside or held if b not in blocks]
        return sorted(blocks, key=found.index)

    def _explain(self, inputs: Inputs, targets: Targets, score: Score) -> Explanation:
        x = inputs.spatial
        batch, blocks = x.shape[0], self._blocks_for(inputs)
        with (
            self._recording(),
            recording_attention(self.model, blocks, batch, leaves=self.leaves) as record,
        ):
            outputs = run_model(self.model, inputs)
            groups = self._groups(outputs, batch, len(blocks))
            outputs = groups[-1]
            indices, scores, scorer = score_targets(
                outputs,
                targets,
                score=score,
                output=self.output,
                batch_size=batch,
                size=x.shape[2:],
            )
            total = scores
            if self.leaves == "every":  # each block's own score (LeGrad)
                rows = torch.arange(batch, device=scores.device)
                total = scores + sum(scorer(group, rows) for group in groups[:-1])
            leading, grid = self._patch_grid(record, x)
            relevance = self.relevance(record, total, leading)
        with torch.no_grad():
            raw = relevance.detach()[..., leading:].unflatten(-1, grid)
            # The evidence for the target: AttnLRP's relevance is signed, the others' is not.
            maps = normalise(upsample(raw.clamp_min(0), x.shape[2:])).float()
        warn_constant(maps, self.name)
        return Explanation(
            maps=maps,
            raw=(raw,),
            targets=indices,
            scores=scores.detach().float(),
            outputs=detached(outputs),
            layers=tuple(blocks),
            method=self.name,
        )

    def _groups(self, outputs: object, batch: int, blocks: int) -> list[object]:
        """The outputs of each block's stacked tokens (LeGrad), or the outputs alone."""
        if self.leaves != "every":
            return [outputs]
        total = batch * blocks
        return [rows_of(outputs, slice(i * batch, (i + 1) * batch), total) for i in range(blocks)]

    def _patch_grid(self, record: AttentionRecord, x: Tensor) -> tuple[int, tuple[int, ...]]:
        tokens = record.attention[-1].shape[-1]
        layout = token_grid(tokens, tuple(x.shape[2:]), self._layout.leading)
        if layout is None or len(layout[1]) != 2:
            raise ValueError(
                f"{self.name}: the blocks' {tokens} tokens do not form a patch grid of the "
                f"{tuple(x.shape[2:])} input (after 0, 1, 2 or 5 leading tokens): attention "
                "methods explain 2-D inputs cut into patches"
            )
        return layout


def _read_at(matrix: Tensor, weights: Tensor) -> Tensor:
    """(B, K, N): the rows of (B, K, N, N) `matrix` averaged with (B, K, N) `weights`."""
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return (weights.unsqueeze(-1) * matrix).sum(dim=-2)


@register("rollout")
class AttentionRollout(AttentionExplainer):
    """Attention rollout (Abnar & Zuidema 2020): the class token's row of the attention
    multiplied through the blocks (`rollout`), one forward pass and no gradient. Class-agnostic:
    every target gets the same map. A model without a class token reads the mean of all rows.

    Args:
        head_fusion: how a block's heads combine: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: the share of each block's smallest attention entries set to zero.

    Examples:
        >>> import torch, camkit
        >>> vit = camkit.models.ShapesViT().eval()
        >>> AttentionRollout(vit, head_fusion="max")(torch.rand(1, 3, 32, 32)).maps.shape
        torch.Size([1, 1, 32, 32])
    """

    needs_gradients = False
    uses_score = False
    leaves = "none"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        head_fusion: str = "mean",
        discard_ratio: float = 0.0,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        rollout([torch.eye(2).expand(1, 1, 2, 2)], head_fusion, discard_ratio)  # check options
        self.head_fusion, self.discard_ratio = head_fusion, discard_ratio

    def relevance(self, record: AttentionRecord, scores: Tensor, leading: int) -> Tensor:
        """The class token's row of the rollout (the mean row without one), for every score."""
        joint = rollout(record.attention, self.head_fusion, self.discard_ratio)
        read = joint[:, 0] if leading else joint.mean(dim=1)  # the class token's row
        return read.unsqueeze(1).expand(-1, scores.shape[1], -1)


@register("gae")
class GAE(AttentionExplainer):
    """Gradient-weighted attention relevance (Chefer et al., ICCV 2021, "Generic
    Attention-model Explainability"): `relevance_propagation` through every block, read at the
    tokens the score is computed from. Class-specific; one forward and one backward pass.

    Examples:
        >>> import torch, camkit
        >>> vit = camkit.models.ShapesViT().eval()
        >>> GAE(vit)(torch.rand(2, 3, 32, 32), targets=camkit.TopK(2)).maps.shape
        torch.Size([2, 2, 32, 32])
    """

    def relevance(self, record: AttentionRecord, scores: Tensor, leading: int) -> Tensor:
        """R - I read at the scored tokens' rows."""
        *gradients, reads = differentiate(scores, [*record.attention, record.tokens[-1]])
        matrix = relevance_propagation(record.attention, gradients)
        weights = (reads.float().abs().sum(dim=-1) > 0).float()  # (B, K, N): tokens scored
        return _read_at(matrix, weights)


@register("legrad")
class LeGrad(AttentionExplainer):
    """LeGrad (Bousselham et al. 2024, arXiv 2404.03214): every block's tokens go through the
    model's own head, and the positive gradient of each block's class score with respect to
    that block's attention is averaged over heads, queries and blocks (`legrad_relevance`).

    One forward pass (the head runs once per block, on a batch that stacks every block's
    tokens) and one backward pass: each block's input is cut from the graph, so block l's
    score reaches only block l's attention and one backward gives every dS^l/dA^l.

    Examples:
        >>> import torch, camkit
        >>> vit = camkit.models.ShapesViT().eval()
        >>> LeGrad(vit)(torch.rand(2, 3, 32, 32)).maps.shape
        torch.Size([2, 1, 32, 32])
    """

    leaves = "every"

    def relevance(self, record: AttentionRecord, scores: Tensor, leading: int) -> Tensor:
        """`legrad_relevance` of the summed block scores (each reaches its own block only)."""
        return legrad_relevance(differentiate(scores, record.attention))
