"""LeGrad, attention rollout, GAE and AttnLRP: hand-worked values, a planted token, torchcam's
LeGrad, and every ViT family with each attention implementation (AttnLRP's own hand-worked
values and references: tests/methods/test_relevance.py)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import camkit
from camkit.attention import recording_attention
from camkit.maps import normalise
from camkit.methods.relevance import AttnLRP
from camkit.methods.transformer import (
    GAE,
    AttentionRollout,
    LeGrad,
    legrad_relevance,
    relevance_propagation,
    rollout,
)

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

METHODS = (AttentionRollout, GAE, LeGrad, AttnLRP)

# Two blocks, one head, two tokens; worked by hand in the comments.
A1 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
A2 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])


def test_rollout_of_two_blocks_by_hand() -> None:
    # (A1 + I) / 2 = [[1, 0], [.25, .75]]; (A2 + I) / 2 = [[.75, .25], [0, 1]]; A2' @ A1'
    joint = rollout([A1[None, None], A2[None, None]])
    torch.testing.assert_close(joint[0], torch.tensor([[0.8125, 0.1875], [0.25, 0.75]]))


def test_rollout_fuses_heads_by_mean_max_or_min_and_discards_the_smallest() -> None:
    heads = torch.stack([A1, A2])[None]  # one block, two heads
    # max of the heads: [[1, .5], [.5, 1]]; + I and each row normalised by its sum 2.5
    torch.testing.assert_close(
        rollout([heads], "max")[0], torch.tensor([[2 / 2.5, 0.5 / 2.5], [0.5 / 2.5, 2 / 2.5]])
    )
    # min: [[.5, 0], [0, .5]] + I -> diagonal
    torch.testing.assert_close(rollout([heads], "min")[0], torch.eye(2))
    # mean: [[.75, .25], [.25, .75]]; discarding half the entries zeroes the two .25
    torch.testing.assert_close(rollout([heads], "mean", discard_ratio=0.5)[0], torch.eye(2))
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        rollout([heads], "median")
    with pytest.raises(ValueError, match=r"discard_ratio must be in \[0, 1\)"):
        AttentionRollout(camkit.models.ShapesViT(), discard_ratio=1.0)


def test_relevance_propagation_of_two_blocks_by_hand() -> None:
    g1 = torch.tensor([[1.0, 1.0], [2.0, -2.0]])  # (g1 * A1)^+ = S1 = [[1, 0], [1, 0]]
    g2 = torch.tensor([[2.0, 2.0], [1.0, 1.0]])  # (g2 * A2)^+ = S2 = [[1, 1], [0, 1]]
    # R1 = I + S1 = [[2, 0], [1, 1]]; R2 = R1 + S2 R1 = [[5, 1], [2, 2]]; returned: R2 - I
    got = relevance_propagation(
        [A1[None, None], A2[None, None]], [g1[None, None, None], g2[None, None, None]]
    )
    torch.testing.assert_close(got[0, 0], torch.tensor([[4.0, 1.0], [2.0, 1.0]]))


def test_legrad_relevance_averages_positive_gradients_over_heads_queries_and_blocks() -> None:
    g1 = torch.tensor([[[1.0, -1.0], [3.0, 1.0]], [[-1.0, 2.0], [1.0, 1.0]]])  # two heads
    g2 = torch.zeros(2, 2, 2)
    # block 1: head means of the positive parts: keys (1+3+0+1)/4, (0+1+2+1)/4; block 2: 0
    got = legrad_relevance([g1[None, None], g2[None, None]])
    torch.testing.assert_close(got[0, 0], torch.tensor([1.25, 1.0]) / 2)


def test_legrad_equals_each_blocks_own_gradient_taken_one_backward_pass_at_a_time() -> None:
    torch.manual_seed(1)
    vit = camkit.models.ShapesViT().eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ours = LeGrad(vit)(x, targets=torch.tensor([[1], [4]]))
    blocks = [f"blocks.{i}" for i in range(4)]
    with torch.no_grad(), recording_attention(vit, blocks, 2, leaves="first") as record:
        vit(x)
        per_block = []
        for tokens, a in zip(record.tokens, record.attention, strict=True):
            score = vit.head(vit.norm(tokens)[:, 0]).gather(1, torch.tensor([[1], [4]])).sum()
            (g,) = torch.autograd.grad(score, a, retain_graph=True)
            per_block.append(g.clamp_min(0).mean(dim=(1, 2))[:, 1:])
    expected = torch.stack(per_block).mean(0).unflatten(-1, (4, 4))
    print(f"max |one pass - one pass per block| = {(ours.raw[0][:, 0] - expected).abs().max():.2e}")
    torch.testing.assert_close(ours.raw[0][:, 0], expected, atol=1e-6, rtol=1e-5)


def test_legrad_equals_torchcams_on_torchvisions_vit() -> None:
    """torchcam scores each block by default with the mean of its tokens (LeGrad's code for
    CLIP); camkit passes each block's tokens through the model's own head, which for
    torchvision's ViT reads the class token. Given that head as its projection, torchcam's
    LeGrad must agree."""
    torchcam_methods = pytest.importorskip("torchcam.methods")
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=64,
        patch_size=16,
        num_layers=3,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=10,
    ).eval()
    nn.init.normal_(model.heads.head.weight, std=0.1)  # torchvision initialises it to zero
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = LeGrad(model)(x, targets=torch.tensor([[3], [5]]))
    assert ours.layers == tuple(f"encoder.layers.encoder_layer_{i}" for i in range(3))

    def head(tokens: torch.Tensor) -> torch.Tensor:
        return model.heads(model.encoder.ln(tokens)[:, 0])

    with torchcam_methods.LeGrad(model, list(model.encoder.layers), score_projection=head) as cam:
        theirs = cam([3, 5], model(x))[0]
    difference = (normalise(ours.raw[0])[:, 0] - theirs).abs().max()
    print(f"LeGrad: max |camkit - torchcam| = {difference:.2e}")
    assert difference < 1e-5


class _PlantedAttention(nn.Module):
    """The class token (channel 1) queries brightness (channel 0): it attends to the bright
    patch, whose value (its brightness) is what the class score adds up."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = x[..., 1:2] * 10, x[..., 0:1] * 10, x[..., 0:1]
        mixed = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)
        return torch.cat([mixed[:, 0], torch.zeros_like(mixed[:, 0])], dim=-1)


class _PlantedBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = _PlantedAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(x)


class _PlantedTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_PlantedBlock(), _PlantedBlock()])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        patches = F.avg_pool2d(image.mean(1, keepdim=True), 4).flatten(1)[..., None]
        tokens = torch.cat([patches, torch.zeros_like(patches)], dim=-1)
        cls = torch.tensor([0.0, 1.0]).expand(len(image), 1, 2)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return torch.cat([x[:, 0, :1], -x[:, 0, :1]], dim=1)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_a_planted_token_is_where_the_map_peaks_on_the_patch_grid(method) -> None:
    image = torch.zeros(2, 3, 16, 24)
    image[0, :, 4:8, 8:12] = 1.0  # patch (row 1, column 2) of a 4 x 6 grid
    image[1, :, 12:16, 0:4] = 1.0  # patch (3, 0)
    result = method(_PlantedTransformer().eval())(image, targets=torch.tensor([[0], [0]]))
    raw = result.raw[0][:, 0]
    assert raw.shape == (2, 4, 6)
    for i, (row, col) in enumerate([(1, 2), (3, 0)]):
        peak = divmod(int(raw[i].flatten().argmax()), 6)
        assert peak == (row, col)
        rest = raw[i].flatten()[torch.arange(24) != row * 6 + col]
        assert float(rest.max()) < float(raw[i, row, col])
    maps = result.maps[:, 0]  # upsampled: the brightest pixels are the planted patch's
    y, x = divmod(int(maps[0].flatten().argmax()), 24)
    assert 4 <= y < 8
    assert 8 <= x < 12
    assert float(maps[0, 4:8, 8:12].mean()) > 0.5 > float(maps[0, :, :4].mean())


def _timm(name: str, side: int, **options):
    return timm.create_model(
        name, pretrained=False, num_classes=5, img_size=side, depth=2, **options
    )


TOKENS = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
}
# name -> (random-weight model, input side, patch side)
FAMILIES = {
    "timm-vit": (lambda: _timm("vit_tiny_patch16_224", 32), 32, 16),
    "timm-deit-distilled": (lambda: _timm("deit_tiny_distilled_patch16_224", 32), 32, 16),
    "timm-beit": (lambda: _timm("beit_base_patch16_224", 32, embed_dim=32, num_heads=4), 32, 16),
    "timm-eva02": (lambda: _timm("eva02_tiny_patch14_224", 28), 28, 14),
    "timm-dinov2": (lambda: _timm("vit_small_patch14_dinov2", 28), 28, 14),
    "timm-dinov2-registers": (lambda: _timm("vit_small_patch14_reg4_dinov2", 56), 56, 14),
    "torchvision-vit": (
        lambda: torchvision.models.VisionTransformer(
            image_size=32,
            patch_size=8,
            num_layers=2,
            num_heads=4,
            hidden_dim=32,
            mlp_dim=64,
            num_classes=5,
        ),
        32,
        8,
    ),
    "bundled-vit": (lambda: camkit.models.ShapesViT(depth=2), 32, 8),
}
HF = {
    "hf-vit": ("ViTConfig", "ViTForImageClassification"),
    "hf-deit": ("DeiTConfig", "DeiTForImageClassificationWithTeacher"),
    "hf-beit": ("BeitConfig", "BeitForImageClassification"),
    "hf-dinov2": ("Dinov2Config", "Dinov2ForImageClassification"),
}


def _hf(family: str, implementation: str) -> nn.Module:
    config_name, model_name = HF[family]
    config = getattr(transformers, config_name)(num_labels=5, **TOKENS)
    config._attn_implementation = implementation
    return getattr(transformers, model_name)(config)


def _random_heads(model: nn.Module) -> nn.Module:
    for module in model.modules():  # zero-initialised classifiers give no gradient at all
        if isinstance(module, nn.Linear) and not module.weight.any():
            nn.init.normal_(module.weight, std=0.1)
    return model.eval()


def _explain_all(model: nn.Module, x: torch.Tensor) -> list[camkit.Explanation]:
    results = []
    for method in METHODS:
        with warnings.catch_warnings():
            # No constant maps; but AttnLRP's map is the evidence for the score, and a random
            # model's second class may score below 0, all its relevance negative: checked below.
            signed = method is AttnLRP
            warnings.simplefilter("ignore" if signed else "error", camkit.CamkitWarning)
            results.append(method(model)(x, targets=camkit.TopK(2)))
        if signed:
            flat = results[-1].maps.flatten(2)
            varies = flat.amax(dim=2) > flat.amin(dim=2)
            assert bool(varies[results[-1].scores > 0].all())
    return results


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_vit_family_gets_maps_on_its_patch_grid(family) -> None:
    make, side, patch = FAMILIES[family]
    torch.manual_seed(0)
    model = _random_heads(make())
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    for result in _explain_all(model, x):
        assert result.maps.shape == (2, 2, side, side)
        assert result.raw[0].shape == (2, 2, side // patch, side // patch)
        assert len(result.layers) == 2


@pytest.mark.parametrize("family", list(HF))
def test_hugging_face_vits_give_the_same_maps_with_sdpa_and_eager_attention(family) -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    results = {}
    for implementation in ("sdpa", "eager"):
        torch.manual_seed(0)
        model = _random_heads(_hf(family, implementation))
        results[implementation] = _explain_all(model, x)
        assert model.config._attn_implementation == implementation  # left as it was
    for fused, eager in zip(results["sdpa"], results["eager"], strict=True):
        difference = (fused.raw[0] - eager.raw[0]).abs().max() / eager.raw[0].abs().max()
        print(f"{family} {fused.method}: sdpa vs eager, max relative difference {difference:.1e}")
        assert difference < 1e-4


def test_timm_gives_the_same_maps_with_fused_and_explicit_attention() -> None:
    torch.manual_seed(0)
    model = _random_heads(_timm("vit_tiny_patch16_224", 32))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fused = _explain_all(model, x)
    for block in model.blocks:
        block.attn.fused_attn = False
    for a, b in zip(fused, _explain_all(model, x), strict=True):
        torch.testing.assert_close(a.raw[0], b.raw[0], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_models_without_global_attention_are_refused_with_what_is_needed(method) -> None:
    cnn = torchvision.models.resnet18(num_classes=3).eval()
    with pytest.raises(ValueError, match=r"explains transformers.*pass layer=\[\.\.\.\]"):
        method(cnn)(torch.rand(1, 3, 32, 32))
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        num_classes=3,
        img_size=32,
        window_size=2,
        depths=(1, 1),
        embed_dim=16,
        num_heads=(1, 1),
    ).eval()
    with pytest.raises(ValueError, match="not batch-first tokens"):
        method(swin)(torch.rand(1, 3, 32, 32))


def test_rollout_is_class_agnostic_and_refuses_a_score_rule() -> None:
    vit = _random_heads(camkit.models.ShapesViT(depth=2))
    x = torch.rand(1, 3, 32, 32)
    result = AttentionRollout(vit)(x, targets=camkit.TopK(3))
    torch.testing.assert_close(result.maps[:, 0], result.maps[:, 2])
    with pytest.raises(ValueError, match="do not follow the explained score"):
        AttentionRollout(vit)(x, targets=camkit.targets.ReST(1))


def test_attention_methods_take_no_smoothing_and_keep_the_caller_out_of_gradients() -> None:
    vit = camkit.models.ShapesViT(depth=2).eval()
    with pytest.raises(ValueError, match="takes neither smooth= nor reshape="):
        GAE(vit, smooth=camkit.Noise(2, 0.1))
    with torch.inference_mode():
        result = LeGrad(_random_heads(vit))(torch.rand(1, 3, 32, 32))
    assert not result.maps.requires_grad
    assert vit.blocks[0].attn.qkv.weight.grad is None
