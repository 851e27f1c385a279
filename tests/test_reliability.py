"""One regression test per failure mode users keep reporting (design notes, section 4)."""

from __future__ import annotations

import collections
import dataclasses
import gc
import threading
import warnings
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camkit
from helpers.nets import ATTENTION_METHODS, gap_net, net_for, tiny_vit

METHODS = ["cam", "gradcam", "gradcam++"]
EVERY_METHOD = [m for m in camkit.METHODS if m != "activation-sum"]  # not a doctest's example


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


class Boom(Exception):
    pass


# 1. Hooks that stay registered after an exception; memory that grows with every call.
@pytest.mark.parametrize("method", EVERY_METHOD)
def test_hooks_removed_even_when_the_call_raises(method, images) -> None:
    model = net_for(method)

    def failing_target(outputs):
        raise Boom("raised inside the call")

    before = hook_count(model)
    with pytest.raises((Boom, ValueError)):
        camkit.explain(model, images, method, targets=failing_target)
    assert hook_count(model) == before
    with pytest.raises(ValueError, match="out of range"):
        camkit.explain(model, images, method, targets=99)
    assert hook_count(model) == before


@pytest.mark.parametrize("method", METHODS)
def test_result_keeps_no_activation_or_graph_alive(method, images) -> None:
    model = gap_net()
    seen: list[weakref.ref] = []
    model[3].register_forward_hook(lambda m, i, o: seen.append(weakref.ref(o)))
    result = camkit.explain(model, images, method, layer="3")
    gc.collect()
    assert seen
    assert all(ref() is None for ref in seen)
    assert not result.outputs.requires_grad
    assert result.outputs.grad_fn is None
    assert not result.maps.requires_grad
    assert not result.raw[0].requires_grad


def test_repeated_calls_do_not_accumulate_tensors(images) -> None:
    model = gap_net()
    explainer = camkit.GradCAMPlusPlus(model)

    def live_tensors() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is torch.Tensor)

    explainer(images)
    before = live_tensors()
    for _ in range(20):
        explainer(images, targets=camkit.TopK(2))
    assert live_tensors() <= before


# 2. In-place ReLU right after the hooked layer.
@pytest.mark.parametrize("method", METHODS)
def test_inplace_relu_after_the_layer(method, images) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    ).eval()
    expected_logits = model(images)
    kept = {}

    def keep(_module, _inputs, output) -> None:
        kept["A"] = output.detach().clone()

    model[0].register_forward_hook(keep)
    # CAM needs the layer right before the pooling: the ReLU that modifies its input in place.
    result = camkit.explain(model, images, method, layer="1" if method == "cam" else "0", targets=0)
    torch.testing.assert_close(result.outputs, expected_logits)
    assert bool((kept["A"] < 0).any())  # the layer really has negative values the ReLU removes
    if method == "gradcam":
        # Grad-CAM at the conv: alpha = w/Z on the channels that the ReLU lets through, times A
        # before the ReLU: compute it by hand from the pre-ReLU activations.
        a = kept["A"]
        grad = (a > 0).float() * model[4].weight[0].detach()[None, :, None, None] / a[0, 0].numel()
        expected = torch.relu((grad.mean(dim=(2, 3))[:, :, None, None] * a).sum(dim=1))
        torch.testing.assert_close(result.raw[0][:, 0], expected)


# 3. Models whose output is a tuple, a dict or a dataclass.
@dataclasses.dataclass
class ClassifierOutput:
    logits: torch.Tensor
    hidden: torch.Tensor


Pair = collections.namedtuple("Pair", ["scores", "features"])


class Wrapped(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = gap_net()
        self.kind = kind
        self.eval()

    def forward(self, x):
        logits = self.net(x)
        extra = logits.detach() * 0
        return {
            "tuple": lambda: (logits, extra),
            "namedtuple": lambda: Pair(logits, extra),
            "dict": lambda: {"logits": logits, "aux": extra},
            "dataclass": lambda: ClassifierOutput(logits, extra),
            "odd-dict": lambda: {"class_scores": logits, "aux": extra},
        }[self.kind]()


@pytest.mark.parametrize("kind", ["tuple", "namedtuple", "dict", "dataclass"])
@pytest.mark.parametrize("method", METHODS)
def test_structured_outputs(kind, method, images) -> None:
    plain = camkit.explain(gap_net(), images, method, layer="3", targets=camkit.TopK(2))
    wrapped = camkit.explain(Wrapped(kind), images, method, layer="net.3", targets=camkit.TopK(2))
    torch.testing.assert_close(wrapped.maps, plain.maps)
    assert type(wrapped.outputs) is type(Wrapped(kind)(images))


def test_unrecognised_mapping_output_names_its_keys_and_accepts_a_selector(images) -> None:
    model = Wrapped("odd-dict")
    with pytest.raises(TypeError, match=r"keys \['class_scores', 'aux'\].*output="):
        camkit.GradCAM(model)(images)
    result = camkit.GradCAM(model, output="class_scores")(images, targets=1)
    plain = camkit.GradCAM(gap_net())(images, targets=1)
    torch.testing.assert_close(result.maps, plain.maps)


# 4. Targets that are not a single class: segmentation masks, detection boxes.
class TinySegmenter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.classify = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        return {"out": F.interpolate(self.classify(self.body(x)), size=x.shape[2:])}


def test_segmentation_region_target(images) -> None:
    model = TinySegmenter().eval()
    mask = torch.zeros(images.shape[2:], dtype=torch.bool)
    mask[2:6, 3:7] = True

    def region_score(outputs):  # class 1's logits summed over the region, per image
        return (outputs["out"][:, 1] * mask).sum(dim=(1, 2))

    result = camkit.GradCAM(model, layer="body")(images, targets=region_score)
    assert result.targets is None
    assert result.maps.shape == (3, 1, 12, 10)
    expected = region_score(model(images)).detach()[:, None]
    torch.testing.assert_close(result.scores, expected)
    assert float(result.maps.amax()) == 1.0
    with pytest.raises(ValueError, match=r"segmentation or detection.*callable"):
        camkit.GradCAM(model, layer="body")(images, targets=1)


def test_detection_box_targets_k_boxes_per_image(images) -> None:
    model = TinySegmenter().eval()
    boxes = [(0, 0, 4, 4), (6, 4, 12, 10)]  # (y0, x0, y1, x1)

    def box_scores(outputs):
        heat = outputs["out"][:, 2]
        return torch.stack([heat[:, y0:y1, x0:x1].mean(dim=(1, 2)) for y0, x0, y1, x1 in boxes], 1)

    result = camkit.GradCAMPlusPlus(model, layer="body")(images, targets=box_scores)
    assert result.maps.shape == (3, 2, 12, 10)
    single = camkit.GradCAMPlusPlus(model, layer="body")(
        images, targets=lambda out: box_scores(out)[:, 1]
    )
    torch.testing.assert_close(single.maps[:, 0], result.maps[:, 1], rtol=0, atol=1e-6)


# 5. Under no_grad / inference_mode, or with frozen parameters.
@pytest.mark.parametrize("method", METHODS)
def test_no_grad_inference_mode_and_frozen_parameters(method, images) -> None:
    model = gap_net()
    expected = camkit.explain(model, images, method, targets=camkit.TopK(2)).maps
    with torch.no_grad():
        under_no_grad = camkit.explain(model, images, method, targets=camkit.TopK(2)).maps
    with torch.inference_mode():
        inference_images = images.clone()
        under_inference = camkit.explain(model, inference_images, method, targets=camkit.TopK(2))
    assert torch.is_inference_mode_enabled() is False
    assert torch.is_grad_enabled()
    for p in model.parameters():
        p.requires_grad_(False)
    frozen = camkit.explain(model, images, method, targets=camkit.TopK(2)).maps
    for maps in (under_no_grad, under_inference.maps, frozen):
        torch.testing.assert_close(maps, expected)
    assert all(not p.requires_grad for p in model.parameters())


def test_grad_mode_is_restored_after_the_call(images) -> None:
    model = gap_net()
    with torch.no_grad():
        camkit.GradCAM(model)(images)
        assert not torch.is_grad_enabled()
    with torch.no_grad(), pytest.raises(ValueError, match="batch of 3"):
        camkit.GradCAM(model)(images, targets=[1, 2])
    assert torch.is_grad_enabled()


# 6. B images with fewer or more targets than B.
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "targets",
    [[1, 2], [1, 2, 3, 4], torch.tensor([[1, 2], [0, 1]]), torch.zeros(4, 2, dtype=torch.long)],
)
def test_target_count_must_match_the_batch(method, targets, images) -> None:
    with pytest.raises(ValueError, match="for a batch of 3 input"):
        camkit.explain(gap_net(), images, method, targets=targets)


def test_score_function_with_the_wrong_batch_size(images) -> None:
    with pytest.raises(ValueError, match=r"expected \(3,\) or \(3, K\)"):
        camkit.GradCAM(gap_net())(images, targets=lambda out: out[:2, 0])


# 7. DataParallel; a model on another device than the input.
@pytest.mark.parametrize("method", METHODS)
def test_data_parallel_wrapper(method, images) -> None:
    model = gap_net()
    plain = camkit.explain(model, images, method, layer="3")
    wrapped = nn.DataParallel(model)
    for name in ("3", "module.3", model[3]):
        result = camkit.explain(wrapped, images, method, layer=name)
        torch.testing.assert_close(result.maps, plain.maps)
        assert result.layers == ("3",)
    assert hook_count(wrapped) == 0


def test_model_on_another_device_than_the_input(images) -> None:
    model = gap_net().to("meta")
    with pytest.raises(
        ValueError, match=r"input is on cpu but the model is on meta.*x\.to\('meta'\)"
    ):
        camkit.GradCAM(model)(images)


# 8. Half precision and bfloat16.
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", METHODS)
def test_half_and_bfloat16(dtype, method) -> None:
    model = gap_net(classes=4)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    full = camkit.explain(model, x, method, targets=[0, 1])
    low = camkit.explain(model.to(dtype), x.to(dtype), method, targets=[0, 1])
    assert low.maps.dtype == torch.float32
    assert low.raw[0].dtype == torch.float32
    assert torch.isfinite(low.maps).all()
    tolerance = 0.02 if dtype == torch.float16 else 0.1
    assert float((low.maps - full.maps).abs().amax()) < tolerance


# 9. Train/eval mode changed; parameters' .grad filled as a side effect.
@pytest.mark.parametrize("method", EVERY_METHOD)
def test_mode_and_parameter_grads_are_untouched(method, images) -> None:
    model = net_for(method)
    first_name, first = next(iter(model.named_parameters()))
    first.grad = torch.full_like(first, 7.0)
    camkit.explain(model, images, method, targets=camkit.TopK(3))
    assert not model.training
    assert torch.equal(first.grad, torch.full_like(first, 7.0))
    assert all(p.grad is None for name, p in model.named_parameters() if name != first_name)

    model.train()
    with pytest.warns(camkit.CamkitWarning, match="training mode"):
        camkit.explain(model, images, method)
    assert model.training
    assert all(m.training for m in model.modules())


# 10. Token models: (B, N, C) outputs need a reshape.
class TinyViT(nn.Module):
    """Patch embedding, a class token, two encoder blocks, a linear head on the class token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.blocks = nn.Sequential(
            *(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True) for _ in "ab")
        )
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)
        return self.head(self.blocks(tokens)[:, 0])


def vit_grid(tokens: torch.Tensor) -> torch.Tensor:
    return tokens[:, 1:].transpose(1, 2).unflatten(2, (4, 3))  # drop class token, (B, C, 4, 3)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_token_model_with_reshape(method) -> None:
    model = TinyViT().eval()
    x = torch.rand(2, 3, 16, 12)
    # The last block's patch tokens do not reach the class token: explain the block before it.
    result = camkit.explain(model, x, method, layer="blocks.0", reshape=vit_grid)
    assert result.raw[0].shape == (2, 1, 4, 3)
    assert result.maps.shape == (2, 1, 16, 12)
    assert float(result.maps.amax()) == 1.0
    # Without reshape=, the grid (4 x 3 after a class token) is recognised from the input.
    automatic = camkit.explain(model, x, method, layer="blocks.0")
    torch.testing.assert_close(automatic.maps, result.maps)
    # A layout that is not a token grid of the input is an error that names reshape=.
    with pytest.raises(ValueError, match=r"outputs shape \(2, 5\).*reshape="):
        camkit.explain(model, x, method, layer="head")


def test_automatic_layer_of_a_token_model_reaches_the_class_token() -> None:
    model = TinyViT().eval()
    result = camkit.GradCAM(model)(torch.rand(2, 3, 16, 12))
    # blocks.1's output only feeds the score through the class token: its grid tokens have no
    # gradient, so the last layer whose grid tokens reach the score is blocks.0.
    assert result.layers == ("blocks.0",)
    assert float(result.maps.amax()) == 1.0


# 11. Non-square inputs, other sizes than training, 1-D and 3-D inputs.
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("dims", "size"), [(1, (50,)), (2, (17, 41)), (2, (64, 8)), (3, (6, 10, 8))]
)
def test_any_spatial_rank_and_size(method, dims, size) -> None:
    model = gap_net(in_channels=2, dims=dims)
    x = torch.randn(2, 2, *size, generator=torch.Generator().manual_seed(0))
    result = camkit.explain(model, x, method, targets=camkit.TopK(2))
    assert result.maps.shape == (2, 2, *size)
    assert result.raw[0].shape == (2, 2, *size)  # padding keeps the layer at the input's size
    assert float(result.maps.amin()) == 0.0
    assert float(result.maps.amax()) == 1.0


# 12. Errors swallowed and printed instead of raised.
def test_errors_are_raised_not_printed(images, capsys) -> None:
    with pytest.raises(ValueError, match="batch of 3"):
        camkit.GradCAM(gap_net(), layer="0")(images, targets=[1])
    with pytest.raises(ValueError, match="CAM"):
        camkit.CAM(gap_net(), layer="0")(images)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


# 13. A wrong layer name: say which names exist.
def test_wrong_layer_name_suggests_close_names() -> None:
    import torchvision

    model = torchvision.models.resnet18()
    with pytest.raises(ValueError, match=r"no layer named 'layer5'.*closest names: 'layer[1-4]'"):
        camkit.GradCAM(model, layer="layer5")
    with pytest.raises(ValueError, match=r"'layer4\.1\.conv2'"):
        camkit.GradCAM(model, layer="layer4.1.conv_2")


# 15. Maps that are NaN or constant: defined output, a warning, never NaN.
class Silenced(nn.Module):
    def forward(self, x):
        return x * 0  # nothing after this layer depends on it: the gradient is exactly zero


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_all_zero_gradient_gives_zero_maps_with_a_warning(method, images) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        Silenced(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    with pytest.warns(camkit.CamkitWarning, match="3 of 3 .* maps are constant"):
        result = camkit.explain(model, images, method, layer="1")
    assert torch.equal(result.maps, torch.zeros_like(result.maps))
    assert torch.isfinite(result.raw[0]).all()


def test_a_one_by_one_layer_gives_a_constant_map_with_a_warning() -> None:
    model = gap_net()
    with pytest.warns(camkit.CamkitWarning, match="constant"):
        result = camkit.GradCAM(model, layer="4")(torch.rand(2, 3, 8, 8), targets=0)
    assert set(result.maps.unique().tolist()) <= {0.0, 1.0}
    assert not torch.isnan(result.maps).any()


# Hostile and broken input to the library (issue 9): each case gets a clear answer.
def batch_norm_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


@pytest.mark.parametrize("method", EVERY_METHOD)
def test_train_mode_leaves_batch_norm_statistics_exactly_as_they_were(method, images) -> None:
    model, layer = batch_norm_net().train(), "5"
    if camkit.METHODS[method].layer_means in ("input", "own"):
        layer = None  # they draw on layers of their own
    if method in ATTENTION_METHODS:  # a ViT behind a batch norm; the blocks are found
        model, layer = nn.Sequential(nn.BatchNorm2d(3), tiny_vit()).train(), None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(camkit.CamkitWarning, match="training mode"):
        camkit.explain(model, images, method, layer=layer)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), [
        k for k in before if not torch.equal(before[k], after[k])
    ]
    norm = "0" if method in ATTENTION_METHODS else "1"
    assert int(after[f"{norm}.num_batches_tracked"]) == 0
    assert model.training


def test_a_single_image_without_its_batch_dimension_says_so() -> None:
    message = r"shape \(3, 12, 10\) has no batch dimension.*single input needs x.unsqueeze\(0\)"
    for layer in (None, "3"):
        with pytest.raises(ValueError, match=message):
            camkit.GradCAM(gap_net(), layer=layer)(torch.rand(3, 12, 10))
    # A real 1-D batch (B, C, L) on a 1-D network is still a batch.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", camkit.CamkitWarning)  # random weights: maybe constant
        signal = camkit.GradCAM(gap_net(dims=1))(torch.rand(3, 3, 20))
    assert signal.maps.shape == (3, 1, 20)


@pytest.mark.parametrize("method", EVERY_METHOD)
def test_an_empty_batch_is_a_value_error(method) -> None:
    with pytest.raises(ValueError, match=r"the batch is empty \(shape \(0, 3, 12, 10\)\)"):
        camkit.explain(gap_net(), torch.rand(0, 3, 12, 10), method)


def test_a_model_failure_on_the_input_is_a_value_error_naming_the_input(images) -> None:
    with pytest.raises(ValueError, match=r"model failed on an input of shape \(3, 1, 12, 10\)"):
        camkit.GradCAM(gap_net())(images[:, :1])  # one channel for a three-channel model


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "ablationcam", "eigencam"])
def test_one_explainer_from_several_threads_at_once(method) -> None:
    model = gap_net()
    explainer = camkit.METHODS[method](model)
    inputs = [
        torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(i)) for i in range(8)
    ]
    expected = [explainer(x).maps for x in inputs]
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(first: int) -> None:
        start.wait()
        try:
            for i in range(first, len(inputs), 4):
                for _ in range(3):
                    results[i] = explainer(inputs[i]).maps
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for i, maps in enumerate(expected):
        torch.testing.assert_close(results[i], maps)
    assert hook_count(model) == 0


class FailsOnAZeroChannel(nn.Module):
    """After the layer: raises the model's own RuntimeError when a channel is all zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.flatten(2).abs().amax(dim=2) == 0).any()):
            raise RuntimeError("the model's own failure: an empty channel")
        return x


def test_an_error_of_the_model_during_ablation_passes_is_its_own(images) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        FailsOnAZeroChannel(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()
    with pytest.raises(RuntimeError, match="the model's own failure") as raised:
        camkit.AblationCAM(model, layer="0")(images)
    assert "skip connection" not in str(raised.value)


def test_ablation_blames_a_skip_connection_only_when_there_is_one(images) -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.body = nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

        def forward(self, x):
            stem = self.stem(x)
            return self.head(self.body(stem) + stem)

    with pytest.raises(ValueError, match="skip connection"):
        camkit.AblationCAM(Residual().eval(), layer="body")(images)


def test_eigencam_with_one_broken_image_explains_the_others(images) -> None:
    broken = images.clone()
    broken[1, 0, 0, 0] = float("nan")
    model = gap_net()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = camkit.EigenCAM(model)(broken)
    said = " ".join(str(w.message) for w in caught)
    assert "non-finite values" in said
    assert "1 of 3 eigencam maps are constant" in said
    clean = camkit.EigenCAM(model)(images)
    torch.testing.assert_close(result.maps[[0, 2]], clean.maps[[0, 2]])
    assert float(result.maps[1].abs().amax()) == 0.0


def test_cam_head_must_be_a_linear_layer() -> None:
    with pytest.raises(TypeError, match=r"head must be the model's classifier.*not int"):
        camkit.CAM(gap_net(), head=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"a 1 x 1 convolution.*not Conv2d"):
        camkit.CAM(gap_net(), head=gap_net()[0])  # a 3 x 3 convolution is no linear head


def test_inputs_that_are_not_images_get_messages_that_point_the_right_way() -> None:
    """A raw waveform (B, L) has its batch axis (it needs a channel axis); a text model's token
    ids or embeddings are not drawn on, and a text model says so, whatever the input's dtype."""
    transformers = pytest.importorskip("transformers")
    waveform = torch.rand(2, 100)
    with pytest.raises(ValueError, match=r"\(2, 100\): a batch of signals without a channel axis"):
        camkit.GradCAM(gap_net(dims=1))(waveform)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
    )
    bert = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(0, 50, (2, 7))
    embeddings = bert.bert.embeddings.word_embeddings(ids).detach()
    for given in (ids, {"input_ids": ids}, {"inputs_embeds": embeddings}):
        with pytest.raises(ValueError, match="is a text model"):
            camkit.GradCAM(bert)(given)


def test_the_waveform_glue_the_message_names_works() -> None:
    class Raw(nn.Module):  # takes (B, L)
        def __init__(self) -> None:
            super().__init__()
            self.net = gap_net(in_channels=1, dims=1)

        def forward(self, x):
            return self.net(x[:, None])

    torch.manual_seed(0)
    wrapped = nn.Sequential(nn.Flatten(1), Raw()).eval()
    result = camkit.GradCAMElementWise(wrapped)(torch.rand(2, 100).unsqueeze(1))
    assert result.maps.shape == (2, 1, 100)
