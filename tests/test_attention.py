"""Attention probabilities, recorded from every attention implementation, and nothing left
behind: the computed probabilities give the kernel's own output, and the model is as it was."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camkit
from camkit.attention import find_blocks, probabilities, recording_attention
from camkit.inputs import Inputs
from camkit.models import ShapesViT

transformers = pytest.importorskip("transformers")


def _qkv(heads: int = 2, kv_heads: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, heads, 5, 8, generator=g),
        torch.randn(2, kv_heads, 5, 8, generator=g),
        torch.randn(2, kv_heads, 5, 8, generator=g),
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"is_causal": True},
        {"scale": 0.3},
        {"attn_mask": torch.rand(5, 5) > 0.3},
        {"attn_mask": torch.randn(2, 2, 5, 5)},
    ],
    ids=["plain", "causal", "scale", "bool-mask", "float-mask"],
)
def test_recorded_probabilities_give_the_fused_kernels_output(options) -> None:
    q, k, v = _qkv()
    if "attn_mask" in options and options["attn_mask"].dtype == torch.bool:
        options["attn_mask"][:, 0] = True  # every query may attend to something
    seen = []

    class Block(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + F.scaled_dot_product_attention(q, k, v, **options).sum() * 0

    container = nn.Sequential(Block())
    expected = F.scaled_dot_product_attention(q, k, v, **options)
    with recording_attention(container, ["0"], 2) as record:
        container(torch.zeros(2, 5, 8))
        seen = record.attention
    assert len(seen) == 1
    got = seen[0] @ v
    print(f"max |A V - fused| = {(got - expected).abs().max():.2e}")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seen[0].sum(-1), torch.ones(2, 2, 5))


def test_probabilities_of_grouped_query_attention_repeat_the_shared_keys() -> None:
    q, k, v = _qkv(heads=4, kv_heads=2)

    class Block(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + F.scaled_dot_product_attention(q, k, v, enable_gqa=True).sum() * 0

    with recording_attention(nn.Sequential(Block()), ["0"], 2) as record:
        nn.Sequential(Block())(torch.zeros(2, 5, 8))  # not hooked: nothing recorded
        assert record.attention == []
    block = nn.Sequential(Block())
    with recording_attention(block, ["0"], 2) as record:
        block(torch.zeros(2, 5, 8))
    expected = probabilities(q, k.repeat_interleave(2, 1))
    torch.testing.assert_close(record.attention[0], expected)


@pytest.mark.parametrize("need_weights", [False, True])
def test_multi_head_attention_is_recomputed_with_the_same_output_and_weights(need_weights):
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True).eval()

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = attention

        def forward(self, x: torch.Tensor):
            return attention(x, x, x, need_weights=need_weights, average_attn_weights=False)

    block = nn.Sequential(Block())
    x = torch.randn(2, 6, 8)
    expected, expected_weights = block(x)
    with recording_attention(block, ["0"], 2) as record:
        got, weights = block(x)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert record.attention[0].shape == (2, 2, 6, 6)
    if need_weights:
        torch.testing.assert_close(weights, expected_weights)
        torch.testing.assert_close(record.attention[0], expected_weights)
    else:
        assert weights is None
        assert expected_weights is None


def test_unusual_multi_head_attention_is_refused_with_what_is_supported() -> None:
    attention = nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True).eval()

    class Block(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return attention(x, x, x, need_weights=False)[0]

    block = nn.Sequential(Block())
    with (
        pytest.raises(ValueError, match="one input projection, not with bias_k, bias_v"),
        recording_attention(block, ["0"], 2),
    ):
        block(torch.randn(2, 3, 8))


def test_active_attention_dropout_is_refused() -> None:
    vit = ShapesViT()
    q = torch.randn(1, 1, 3, 4)

    class Block(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + F.scaled_dot_product_attention(q, q, q, dropout_p=0.1).sum()

    block = nn.Sequential(Block())
    with (
        pytest.raises(ValueError, match=r"dropout \(p=0.1\) is active.*model.eval\(\)"),
        recording_attention(block, ["0"], 1),
    ):
        block(torch.zeros(1, 3, 4))
    assert vit.training  # untouched


def test_the_bundled_vit_gives_the_same_output_and_every_blocks_attention() -> None:
    vit = ShapesViT().eval()
    x = torch.rand(2, 3, 40, 24)
    expected = vit(x)
    blocks = find_blocks(vit, Inputs.wrap(x))
    assert blocks == [f"blocks.{i}" for i in range(4)]
    with torch.no_grad(), recording_attention(vit, blocks, 2, leaves="first") as record:
        got = vit(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert [a.shape for a in record.attention] == [(2, 4, 1 + 5 * 3, 1 + 5 * 3)] * 4
    assert got.requires_grad
    assert all(a.requires_grad for a in record.attention)


def test_every_leaf_stacks_each_blocks_tokens_through_the_head() -> None:
    vit = ShapesViT().eval()
    x = torch.rand(2, 3, 16, 16)
    blocks = [f"blocks.{i}" for i in range(4)]
    with torch.no_grad(), recording_attention(vit, blocks, 2, leaves="every") as record:
        out = vit(x)
    assert out.shape == (8, 6)
    for i, tokens in enumerate(record.tokens):
        torch.testing.assert_close(out[2 * i : 2 * i + 2], vit.head(vit.norm(tokens)[:, 0]))


def test_nothing_is_left_on_the_model_or_in_torch_after_a_failing_pass() -> None:
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    config._attn_implementation = "sdpa"
    model = transformers.ViTForImageClassification(config).eval()
    x = torch.rand(1, 3, 32, 32)
    blocks = find_blocks(model, Inputs.wrap(x))
    assert len(blocks) == 2
    hooks_before = {
        n: len(m._forward_hooks) + len(m._forward_pre_hooks) for n, m in model.named_modules()
    }

    def planted(*_: object) -> None:
        raise RuntimeError("planted")

    model.get_submodule(blocks[1]).register_forward_hook(planted)
    with (
        pytest.raises(RuntimeError, match="planted"),
        recording_attention(model, blocks, 1, leaves="first"),
    ):
        model(x)
    for name, module in model.named_modules():  # our hooks are gone; the planted one stays
        planted = 1 if name == blocks[1] else 0
        assert len(module._forward_hooks) + len(module._forward_pre_hooks) == (
            hooks_before[name] + planted
        )
    assert model.config._attn_implementation == "sdpa"
    assert not torch._C._is_torch_function_mode_enabled()
    assert torch.is_grad_enabled()


def test_find_blocks_finds_none_in_a_convolutional_network() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    assert find_blocks(net, Inputs.wrap(torch.rand(1, 3, 8, 8))) == []


def test_probabilities_are_a_softmax_of_scaled_dot_products() -> None:
    q = torch.tensor([[[1.0, 0.0]]])
    k = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    a = probabilities(q, k)
    e = math.exp(1 / math.sqrt(2))
    torch.testing.assert_close(a, torch.tensor([[[e / (e + 1), 1 / (e + 1)]]]))


@pytest.mark.parametrize(
    "family",
    [
        "hugging-face-swin",
        "hugging-face-swinv2",
        "hugging-face-segformer",
        "timm-pvt-v2",
        "timm-hiera",
        "timm-levit",
    ],
)
@pytest.mark.parametrize("method", ["legrad", "gae", "rollout", "attnlrp"])
def test_windowed_pooled_and_pyramid_attention_is_refused_with_what_is_needed(family, method):
    """Swin attends within windows, PVT to spatially reduced keys, LeViT over fewer tokens at
    each stage: none attends globally over one sequence, which the attention methods need. They
    say so, never a shape mismatch inside camkit."""
    import timm
    import transformers

    torch.manual_seed(0)
    windows = {
        "image_size": 64,
        "embed_dim": 16,
        "depths": [1, 1],
        "num_heads": [2, 2],
        "window_size": 4,
        "num_labels": 5,
    }
    side = 64
    if family == "hugging-face-swin":
        model = transformers.SwinForImageClassification(transformers.SwinConfig(**windows))
    elif family == "hugging-face-swinv2":
        model = transformers.Swinv2ForImageClassification(transformers.Swinv2Config(**windows))
    elif family == "hugging-face-segformer":
        config = transformers.SegformerConfig(
            num_labels=3,
            hidden_sizes=[8, 16, 32, 64],
            depths=[1, 1, 1, 1],
            num_attention_heads=[1, 1, 2, 2],
        )
        model = transformers.SegformerForImageClassification(config)
    elif family == "timm-pvt-v2":
        model = timm.create_model("pvt_v2_b0", num_classes=5)
    elif family == "timm-hiera":
        model = timm.create_model("hiera_tiny_224", img_size=64, num_classes=5)
        torch.nn.init.normal_(model.head.fc.weight, std=0.02)  # it starts at zero
    else:
        model, side = timm.create_model("levit_128s", num_classes=5), 224
    x = torch.rand(1, 3, side, side)
    with pytest.raises(ValueError, match="attend globally over one sequence of tokens") as error:
        camkit.explain(model.eval(), x, method)
    assert "Swin, PVT, Segformer, Hiera, MViT, LeViT" in str(error.value)
