"""CAM: the head's weights on the feature map, and clear errors where CAM does not apply."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import camkit
from helpers.nets import gap_net


def test_cam_is_the_class_weights_on_the_feature_map(images) -> None:
    model = gap_net(classes=4)
    result = camkit.CAM(model)(images, targets=[0, 3, 2])
    features = model[:4](images).detach()
    weights = model[6].weight.detach()[[0, 3, 2]]  # (B, C)
    expected = torch.relu((weights[:, :, None, None] * features).sum(dim=1))
    torch.testing.assert_close(result.raw[0][:, 0], expected)
    assert result.layers == ("3",)


def test_cam_with_an_explicit_head_and_resnet_head_found(images) -> None:
    model = gap_net()
    torch.testing.assert_close(
        camkit.CAM(model, head=model[6])(images).maps, camkit.CAM(model)(images).maps
    )
    resnet = torchvision.models.resnet18(num_classes=3).eval()
    result = camkit.CAM(resnet)(torch.rand(1, 3, 64, 64), targets=2)
    assert result.layers == ("layer4",)
    assert result.raw[0].shape == (1, 1, 2, 2)


def test_cam_needs_a_gap_linear_head() -> None:
    mobilenet = torchvision.models.mobilenet_v3_small(num_classes=3).eval()  # pool, MLP head
    with pytest.raises(ValueError, match=r"CAM needs .* use camkit.GradCAM"):
        camkit.CAM(mobilenet)(torch.rand(1, 3, 64, 64))
    resnet = torchvision.models.resnet18(num_classes=3).eval()
    with pytest.raises(ValueError, match=r"CAM needs the layer 'layer3'"):
        camkit.CAM(resnet, layer="layer3")(torch.rand(1, 3, 64, 64))


def test_cam_needs_class_targets(images) -> None:
    with pytest.raises(ValueError, match="CAM explains class indices"):
        camkit.CAM(gap_net())(images, targets=lambda out: out[:, 0])


def test_cam_runs_without_any_gradient(images) -> None:
    model = gap_net()
    seen = []
    model[3].register_forward_hook(lambda m, i, o: seen.append(torch.is_inference_mode_enabled()))
    camkit.CAM(model, layer="3")(images)
    assert seen == [True]


def test_cam_rejects_a_wrong_explicit_head(images) -> None:
    model = gap_net()
    impostor = nn.Linear(16, 5)
    with pytest.raises(ValueError, match="CAM needs"):
        camkit.CAM(model, head=impostor)(images)
