"""What a method says of itself: what its `layer` names, whether it fits a model, its options;
and the lists derived from it."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

import camkit
from camkit.api import ExplainOptions
from camkit.errors import CamkitWarning
from camkit.methods import METHODS
from camkit.methods.base import Explainer
from camkit.methods.building import build, options_of
from helpers.nets import ATTENTION_METHODS, gap_net, tiny_vit

OWN_LAYERS = {"guided-backprop": "input", "sobel": "input", "fullgrad": "own", "lrp": "own"}


def test_every_method_says_what_its_layer_names() -> None:
    meanings = {name: cls.layer_means for name, cls in METHODS.items()}
    assert {n for n, m in meanings.items() if m == "blocks"} == {
        "legrad",
        "gae",
        "rollout",
        "attnlrp",
    }
    assert {n: m for n, m in meanings.items() if m in ("input", "own")} == OWN_LAYERS
    assert set(meanings.values()) == {"feature maps", "blocks", "input", "own"}


@pytest.mark.parametrize("method", sorted(OWN_LAYERS))
def test_a_layer_a_method_ignores_is_said(method) -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.warns(CamkitWarning, match=rf"{method} draws on .*: the layer given \(0\) is "):
        result = build(method, gap_net(), "0")(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CamkitWarning)
        plain = build(method, gap_net())(x)
    assert torch.equal(result.maps, plain.maps)  # the same map: the layer was not used


def test_attention_methods_take_the_block_a_layer_lies_in() -> None:
    model, x = tiny_vit(), torch.rand(2, 3, 32, 32)
    for name in sorted(ATTENTION_METHODS):
        inside = build(name, model, "blocks.1.norm1")(x)
        block = build(name, model, "blocks.1")(x)
        assert inside.layers == block.layers == ("blocks.1",)
        torch.testing.assert_close(inside.maps, block.maps, rtol=0, atol=0)
    every = camkit.LeGrad(model, layer="blocks")(x)  # a module holding the blocks: all of them
    assert every.layers == ("blocks.0", "blocks.1") == camkit.LeGrad(model)(x).layers
    with pytest.raises(ValueError, match="layer 'head' is neither a block nor inside one"):
        camkit.GAE(model, layer="head")(x)


def test_fits_answers_for_every_method_with_the_reason() -> None:
    cnn, vit = gap_net(), tiny_vit()
    x_cnn, x_vit = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 32, 32)
    for name, cls in METHODS.items():
        on_cnn = cls.fits(cnn, x_cnn)
        assert (on_cnn is not None) == (name in ATTENTION_METHODS), name
        if on_cnn is not None:
            assert on_cnn.startswith(f"{name} explains transformers")
        on_vit = cls.fits(vit, x_vit)
        if name == "lrp":  # its rules are for CNNs; a transformer is AttnLRP's
            assert on_vit is not None
            assert on_vit.endswith("use attnlrp"), on_vit
        else:
            assert on_vit is None, name


def test_the_command_explains_a_vit_at_a_layer_inside_a_block(tmp_path) -> None:
    """Issue 31: LeGrad failed on every image ("computed 0 attention maps") with this layer."""
    command = ["explain", "--model", "vit", "--layer", "blocks.3.norm1", "--out", "o"]
    done = subprocess.run(
        [sys.executable, "-m", "camkit", *command, "--methods", "gradcam,legrad,sobel"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "sobel draws on the input" in done.stderr
    assert "failed" not in done.stderr
    assert len(list((tmp_path / "o").glob("*_legrad.png"))) == 6


def test_explain_options_name_every_methods_options() -> None:
    """`camkit.explain(**options)` is typed with every option a method takes (derived lists
    drift: rollout's head_fusion and discard_ratio were missing)."""
    typed = set(ExplainOptions.__annotations__)
    every = {f"{name}.{option}": option for name in METHODS for option in options_of(name)}
    missing = {key for key, option in every.items() if option not in typed}
    assert missing == set()
    x = torch.rand(1, 3, 32, 32)
    fused = camkit.explain(tiny_vit(), x, "rollout", head_fusion="max", discard_ratio=0.5)
    assert not torch.equal(fused.maps, camkit.explain(tiny_vit(), x, "rollout").maps)


def test_the_public_names_list_every_method_class() -> None:
    import camkit.methods

    classes = {cls.__name__ for cls in METHODS.values()}
    assert classes <= set(camkit.methods.__all__)
    assert classes <= set(camkit.__all__)
    helpers = {"METHODS", "Evidence", "Explainer", "method_class", "register", "unregister"}
    assert set(camkit.methods.__all__) - classes <= helpers
    assert all(issubclass(getattr(camkit, name), Explainer) for name in classes)


def test_fits_never_raises_a_model_that_fails_on_the_input_is_a_reason() -> None:
    """The command asks `fits` with a probe input before any work: a model that takes one input
    size only (a torch.export program) must not end the run with a traceback there."""
    fixed = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5)).eval()
    reason = camkit.LeGrad.fits(fixed, torch.rand(1, 3, 96, 96))
    assert reason is not None
    assert reason.startswith("legrad: the model failed on an input of shape (1, 3, 96, 96)")
    assert camkit.LeGrad.fits(fixed, torch.rand(1, 3, 32, 32)).startswith("legrad explains")
