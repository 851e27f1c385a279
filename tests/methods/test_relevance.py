"""LRP and AttnLRP: hand-worked relevance on a two-block toy transformer, conservation where no
bias absorbs relevance, and the reference implementations (zennit for CNNs, lxt's explicit
AttnLRP for transformers) on the same model and input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import camkit
from camkit.data import ShapesDataset
from camkit.methods.relevance import attnlrp_rules, lrp_rules
from camkit.models import load_shapes_model, load_vit_model


class ToyBlock(nn.Module):
    """Scalar tokens, one head, no bias: x + softmax(q k^T) v with q = wq x, k = wk x, v = wv x."""

    def __init__(self, wq: float, wk: float, wv: float) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(1, 1, bias=False) for _ in range(3))
        for layer, w in ((self.q, wq), (self.k, wk), (self.v, wv)):
            layer.weight.data.fill_(w)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (layer(x)[:, None] for layer in (self.q, self.k, self.v))
        return x + F.scaled_dot_product_attention(q, k, v).squeeze(1)


def toy_relevance(first: ToyBlock, second: ToyBlock, tokens: list[float]) -> list[float]:
    """camkit's rules on the toy: relevance of each input token for the class token's output."""
    x = torch.tensor([[[t] for t in tokens]], requires_grad=True)
    with attnlrp_rules():
        score = second(first(x))[0, 0, 0]
    score.backward()
    return (x * x.grad)[0, :, 0].tolist()


def test_two_blocks_with_even_attention_worked_by_hand() -> None:
    """Tokens (1, 3), both blocks attend evenly (no queries), values = tokens: the class token
    ends at 7. Block 2: z0 = y0 + m0 = 3 + 4; the residual keeps 3, the attention's 4 splits
    by its terms (1.5, 2.5), half to the values (0.75, 1.25) and half to the attention, whose
    logits are 0 (nothing goes further). So R(y) = (3.75, 1.25). Block 1 the same way:
    y0 = 1 + 2 gives (1.25 | 0.3125, 0.9375 / 2 ...), y1 = 3 + 2 gives (0.75 | 0.0625, 0.1875):
    R(x) = (1.25 + 0.3125 + 0.0625, 0.75 + 0.9375 + 0.1875) = (1.625, 1.875)."""
    relevance = toy_relevance(ToyBlock(0, 0, 1), ToyBlock(0, 0, 1), [1.0, 3.0])
    assert relevance == pytest.approx([1.625, 1.875], abs=1e-6)


def test_the_softmax_rule_worked_by_formula() -> None:
    """Block 2 with queries and keys (wq = wk = 1, scale 1 for one feature), so the softmax rule
    R(l_j) = l_j (R(A_j) - A_j sum_k R(A_k)) carries relevance to the queries and keys; each
    step written out with the paper's rules (Achtibat et al. 2024, Eq. 7 and Prop. 3.1)."""
    x = [1.0, 3.0]
    y = [x[0] + sum(x) / 2, x[1] + sum(x) / 2]  # block 1: even attention, values = tokens
    logits = [y[0] * y[0], y[0] * y[1]]  # block 2, the class token's row
    top = max(logits)
    a = [math.exp(v - top) / sum(math.exp(w - top) for w in logits) for v in logits]
    m0 = a[0] * y[0] + a[1] * y[1]
    # z0 = y0 + m0 = the score; epsilon rule on the sum, then on the attention's terms
    r_m = m0
    r_terms = [a[j] * y[j] / m0 * r_m for j in range(2)]
    r_a = [t / 2 for t in r_terms]  # uniform rule: half to A, half to V
    r_v = [t / 2 for t in r_terms]
    r_l = [logits[j] * (r_a[j] - a[j] * sum(r_a)) for j in range(2)]
    r_q0 = sum(r / 2 for r in r_l)  # l_j = q0 k_j: half to each factor
    r_k = [r / 2 for r in r_l]
    r_y = [y[0] + r_v[0] + r_q0 + r_k[0], r_v[1] + r_k[1]]
    # block 1: y_i = x_i + (x0 + x1) / 2, even attention (zero logits: the A half is lost)
    r_x = [0.0, 0.0]
    for i in range(2):
        mixed = sum(x) / 2
        r_x[i] += x[i] / y[i] * r_y[i]
        for j in range(2):
            r_x[j] += (x[j] / 2) / mixed * (mixed / y[i] * r_y[i]) / 2
    relevance = toy_relevance(ToyBlock(0, 0, 1), ToyBlock(1, 1, 1), x)
    print(f"toy transformer: camkit {relevance}, by formula {r_x}")
    assert relevance == pytest.approx(r_x, rel=1e-5)


def bias_free_cnn() -> nn.Module:
    """A CNN whose batch norms add nothing (zero running mean and shift) and whose layers have
    no bias: LRP's relevance has nowhere to leak."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4, bias=False),
    )
    for bn in (net[1], net[5]):
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def test_lrp_conserves_relevance_where_nothing_absorbs_it() -> None:
    net = bias_free_cnn()
    x = torch.randn(3, 3, 16, 16)
    result = camkit.LRP(net, epsilon=0.0)(x)
    total = result.raw[0].flatten(1).sum(1)
    print(f"lrp on a bias-free CNN: relevance {total.tolist()}, scores {result.scores[:, 0]}")
    torch.testing.assert_close(total, result.scores[:, 0], rtol=1e-4, atol=1e-5)


def test_attnlrp_leaks_only_through_biases_and_the_softmax() -> None:
    """On the toy without queries, all relevance the attention keeps (its value half) is
    conserved: the lost share is exactly half of each attention output's relevance."""
    relevance = toy_relevance(ToyBlock(0, 0, 1), ToyBlock(0, 0, 1), [1.0, 3.0])
    lost = 4 / 2 + (2.5 + 0.5) / 2  # half of block 2's attention, half of block 1's
    assert sum(relevance) == pytest.approx(7 - lost)


@pytest.fixture(scope="module")
def shapes() -> Tensor:
    return ShapesDataset(4, seed=2000).stack()["image"]


def test_lrp_equals_zennit_with_the_same_rules(shapes) -> None:
    """zennit's composite of the same rules (gamma 0.25 on convolutions, epsilon 1e-6 on linear
    layers, batch norms merged, ReLUs passing, average pools by the norm rule) on the bundled
    network, its input normalised outside (so both read relevance at the same pixels)."""
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon, Gamma, Norm, Pass
    from zennit.types import Activation, AvgPool, Convolution, Linear

    net = load_shapes_model()
    plain = nn.Sequential(net.features, net.pool, nn.Flatten(), net.classifier).eval()
    x = (shapes - net.mean) / net.std
    ours = camkit.LRP(plain)(x)
    composite = LayerMapComposite(
        layer_map=[
            (Activation, Pass()),
            (AvgPool, Norm()),
            (Convolution, Gamma(gamma=0.25)),
            (Linear, Epsilon(epsilon=1e-6)),
        ],
        canonizers=[SequentialMergeBatchNorm()],
    )
    start = torch.zeros(len(x), 6)
    start[torch.arange(len(x)), ours.targets[:, 0]] = ours.scores[:, 0]  # relevance = the score
    with Gradient(model=plain, composite=composite) as attributor:
        _, theirs = attributor(x.clone(), start)
    difference = (ours.raw[0][:, 0] - theirs.sum(1)).abs().max()
    scale = theirs.sum(1).abs().max()
    print(f"lrp vs zennit: largest difference {float(difference):.2e} of {float(scale):.3f}")
    assert difference < 1e-4 * scale
    # the bundled model normalises inside: the same relevance, read at its first convolution
    inside = camkit.LRP(net)(shapes)
    torch.testing.assert_close(inside.raw[0], ours.raw[0], rtol=1e-4, atol=1e-6)


def lxt_shapes_vit(vit: nn.Module, tokens: Tensor) -> Tensor:
    """The bundled ViT's blocks and head written with lxt's explicit AttnLRP functions (the
    relevance flows as lxt computes it, rule by rule): class logits from the first block's
    input tokens."""
    import lxt.explicit.functional as lf
    from lxt.explicit.rules import identity

    x = tokens
    for block in vit.blocks:
        h = lf.layer_norm(x, block.norm1.weight, block.norm1.bias, block.norm1.eps)
        qkv = lf.linear_epsilon(h, block.attn.qkv.weight, block.attn.qkv.bias)
        batch, count, width = x.shape
        heads = block.attn.heads
        q, k, v = qkv.view(batch, count, 3, heads, -1).permute(2, 0, 3, 1, 4)
        logits = lf.matmul(q, k.transpose(-1, -2))
        a = lf.softmax(logits, -1, temperature=math.sqrt(q.shape[-1]))
        mixed = lf.matmul(a, v).transpose(1, 2).reshape(batch, count, width)
        x = lf.add2(x, lf.linear_epsilon(mixed, block.attn.proj.weight, block.attn.proj.bias))
        h = lf.layer_norm(x, block.norm2.weight, block.norm2.bias, block.norm2.eps)
        up = identity(F.gelu, lf.linear_epsilon(h, block.mlp[0].weight, block.mlp[0].bias))
        x = lf.add2(x, lf.linear_epsilon(up, block.mlp[2].weight, block.mlp[2].bias))
    cls = lf.layer_norm(x, vit.norm.weight, vit.norm.bias, vit.norm.eps)[:, 0]
    return lf.linear_epsilon(cls, vit.head.weight, vit.head.bias)


def test_attnlrp_equals_lxts_explicit_rules_on_the_bundled_vit(shapes) -> None:
    vit = load_vit_model()
    ours = camkit.AttnLRP(vit)(shapes)
    leaf = first_block_tokens(vit, shapes).requires_grad_()
    logits = lxt_shapes_vit(vit, leaf)
    start = torch.zeros_like(logits)
    start[torch.arange(len(leaf)), ours.targets[:, 0]] = ours.scores[:, 0]
    logits.backward(start)
    theirs = leaf.grad.sum(-1)[:, 1:].view(len(leaf), 12, 12)  # lxt's grad is the relevance
    difference = (ours.raw[0][:, 0] - theirs).abs().max()
    scale = theirs.abs().max()
    print(f"attnlrp vs lxt: largest difference {float(difference):.2e} of {float(scale):.3f}")
    assert difference < 1e-3 * scale


def first_block_tokens(vit: nn.Module, images: Tensor) -> Tensor:
    """The tokens the bundled ViT's first block receives (class token first)."""
    with torch.no_grad():
        patches = vit.patch_embed((images - vit.mean) / vit.std)
        tokens = patches.flatten(2).transpose(1, 2)
        tokens = torch.cat([vit.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        return tokens + vit.pos_embed


RULES = {
    "layer norm (no bias)": lambda a, b: F.layer_norm(a, (5,), weight=b.detach()[0, 0].abs()),
    "gelu": lambda a, b: F.gelu(a),
    "silu": lambda a, b: F.silu(a),
    "relu6 in place": lambda a, b: F.relu6(a * 3.0, inplace=True),
    "leaky relu in place": lambda a, b: F.leaky_relu(a * 1.0, 0.1, inplace=True),
    "product of two activations": lambda a, b: a @ b.transpose(-1, -2),
    "einsum of two activations": lambda a, b: torch.einsum("bij,bkj->bik", a, b),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_every_attnlrp_rule_but_the_softmax_conserves_relevance(rule) -> None:
    """sum(input * gradient) over the inputs equals sum(output * upstream gradient): the
    relevance a rule receives is all passed on (the softmax's rule alone drops its bias term,
    by design: Achtibat et al. 2024, Prop. 3.1)."""
    torch.manual_seed(0)
    a = torch.randn(2, 4, 5, requires_grad=True)
    b = torch.randn(2, 3, 5, requires_grad=True)
    with attnlrp_rules():
        out = RULES[rule](a, b)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    received = float((out.detach() * upstream).sum())
    relevance = [t.detach() * t.grad for t in (a, b) if t.grad is not None]
    passed = float(sum(r.sum() for r in relevance))
    assert passed == pytest.approx(received, rel=1e-4, abs=1e-5)


def test_lrp_refuses_a_transformer_and_attnlrp_a_cnn(shapes) -> None:
    vit, net = load_vit_model(), load_shapes_model()
    assert "use attnlrp" in (camkit.LRP.fits(vit, shapes[:1]) or "")
    assert "explains transformers" in (camkit.AttnLRP.fits(net, shapes[:1]) or "")
    with pytest.raises(ValueError, match="use attnlrp"):
        camkit.LRP(vit)(shapes)
    assert camkit.LRP.fits(net, shapes[:1]) is None
    assert camkit.AttnLRP.fits(vit, shapes[:1]) is None


def test_rules_leave_forward_values_and_the_model_as_they_were(shapes) -> None:
    vit, net = load_vit_model(), load_shapes_model()
    with torch.no_grad():
        expected = vit(shapes), net(shapes)
    with torch.enable_grad(), attnlrp_rules():
        got_vit = vit(shapes.clone().requires_grad_())
    with torch.enable_grad(), lrp_rules():
        got_net = net(shapes.clone().requires_grad_())
    torch.testing.assert_close(got_vit, expected[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(got_net, expected[1], rtol=0, atol=1e-5)
    with torch.no_grad():  # nothing folded into the model for good
        torch.testing.assert_close(net(shapes), expected[1])


def test_k_targets_from_one_pass_equal_one_target_at_a_time(shapes) -> None:
    for method, model in (("lrp", load_shapes_model()), ("attnlrp", load_vit_model())):
        both = camkit.explain(model, shapes, method, targets=camkit.TopK(2))
        for k in range(2):
            alone = camkit.explain(model, shapes, method, targets=both.targets[:, k])
            torch.testing.assert_close(both.raw[0][:, k], alone.raw[0][:, 0], rtol=1e-4, atol=1e-6)


def test_lrp_options_are_checked() -> None:
    net = load_shapes_model()
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0, got -1"):
        camkit.LRP(net, gamma=-1)
    for hostile in (float("nan"), float("inf"), "0.25", True, None):
        with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
            camkit.LRP(net, epsilon=hostile)
    with pytest.raises(ValueError, match="neither smooth= nor reshape="):
        camkit.LRP(net, smooth=camkit.Noise(2, 0.1))


def test_the_commands_lrp_options_are_checked_in_one_line() -> None:
    from camkit.errors import UsageError
    from camkit.jobs.options import check_method_options

    for text in ("lrp.gamma=nan", "lrp.gamma=abc", "lrp.epsilon=-1"):
        with pytest.raises(UsageError, match="must be a finite number >= 0"):
            check_method_options([text])


def test_lrp_on_an_mlp_over_flattened_pixels_reads_the_input() -> None:
    """A first linear layer on flattened pixels: the relevance is read at the input (flattening
    passes it unchanged); without biases it sums to the score."""
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(48, 16, bias=False), nn.ReLU(), nn.Linear(16, 4, bias=False)
    ).eval()
    x = torch.rand(2, 3, 4, 4)
    result = camkit.LRP(mlp, epsilon=0.0)(x)
    assert result.raw[0].shape == (2, 1, 4, 4)
    torch.testing.assert_close(result.raw[0].flatten(1).sum(1), result.scores[:, 0])
