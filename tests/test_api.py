from __future__ import annotations

import pytest
import torch

import camkit
from helpers.nets import gap_net


def test_registry_names_the_three_methods() -> None:
    assert camkit.METHODS["cam"] is camkit.CAM
    assert camkit.METHODS["gradcam"] is camkit.GradCAM
    assert camkit.METHODS["gradcam++"] is camkit.GradCAMPlusPlus
    with pytest.raises(TypeError):
        camkit.METHODS["mine"] = camkit.GradCAM  # type: ignore[index]
    with pytest.raises(ValueError, match="already registered"):
        camkit.register("gradcam")(camkit.GradCAM)


def test_explain_routes_options_to_constructor_and_call(images) -> None:
    model = gap_net()
    direct = camkit.GradCAM(model, layer=["1", "3"], fuse="max")(images, score="softmax")
    routed = camkit.explain(model, images, "gradcam", layer=["1", "3"], fuse="max", score="softmax")
    torch.testing.assert_close(routed.maps, direct.maps)
    assert routed.layers == ("1", "3")
    assert len(routed.raw) == 2
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        camkit.explain(model, images, "gradcam", colour="red")


def test_explain_unknown_method_suggests(images) -> None:
    with pytest.raises(ValueError, match=r"unknown method 'gradcampp' \(did you mean 'gradcam'"):
        camkit.explain(gap_net(), images, "gradcampp")


def test_bad_inputs(images) -> None:
    model = gap_net()
    with pytest.raises(TypeError, match="expected a float tensor"):
        camkit.GradCAM(model)(images.tolist())
    with pytest.raises(TypeError, match=r"got torch.uint8: convert it, e.g. x.float\(\) / 255"):
        camkit.GradCAM(model)(images.to(torch.uint8))
    with pytest.raises(ValueError, match=r"\(12, 10\): .* image \(H, W\) x\[None, None\]"):
        camkit.GradCAM(model)(images[0, 0])
    with pytest.raises(
        ValueError,
        match=r"\(3, 12, 10\) has no batch dimension",
    ):
        camkit.GradCAM(model, layer="3")(images[0])  # (C, H, W): one image without its batch
    with pytest.raises(
        ValueError, match=r"layer '5' outputs shape \(3, 16\), not \(B, C, \*spatial"
    ):
        camkit.GradCAM(model, layer="5")(images)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        camkit.GradCAM(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fuse must be"):
        camkit.GradCAM(model, fuse="sum")  # type: ignore[arg-type]


def test_multi_layer_fusion_is_the_normalised_mean(images) -> None:
    model = gap_net()
    both = camkit.GradCAM(model, layer=["1", "3"])(images)
    first = camkit.GradCAM(model, layer="1")(images).maps
    second = camkit.GradCAM(model, layer="3")(images).maps
    mean = (first + second) / 2
    low = mean.flatten(2).amin(2)[..., None, None]
    high = mean.flatten(2).amax(2)[..., None, None]
    torch.testing.assert_close(both.maps, (mean - low) / (high - low))
