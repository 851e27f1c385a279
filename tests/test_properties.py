"""Property-based tests (Hypothesis): whatever the inputs, targets, layers and options, a call
gives a result or a ValueError/TypeError with a message; never another exception, a hang, a
leaked hook or a changed model."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import camkit
from camkit.cli import main
from helpers.nets import gap_net
from test_reliability import hook_count

EVERY_METHOD = [m for m in camkit.METHODS if m != "activation-sum"]
FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# The model in each input float dtype (a mismatch is one of the unusual cases: int64 inputs).
MODELS = {
    (dims, dtype): gap_net(dims=dims, classes=5).to(dtype) for dims in (1, 2, 3) for dtype in FLOATS
}
BROKEN = object()  # a target that is no kind of target


def make_targets(kind: str, batch: int, value: int):
    if kind == "none":
        return None
    if kind == "int":
        return value
    if kind == "list":
        return [value] * max(0, batch + (value % 3) - 1)  # sometimes the wrong length
    if kind == "topk":
        return camkit.TopK(value)  # may raise: TopK(0) and TopK(-1) are refused
    if kind == "tensor":
        return torch.full((batch, 2), value, dtype=torch.long)
    if kind == "float-tensor":
        return torch.full((batch,), float(value))
    if kind == "function":
        return lambda outputs: outputs[:, :2].sum(dim=1)
    if kind == "bad-function":
        return lambda outputs: outputs[:1]
    if kind == "contrast":
        return camkit.Contrast(value, 0)
    return BROKEN


def mostly(usual, *unusual, weight: int = 8):
    """`usual` `weight` times as often as each unusual value: most examples reach a map."""
    return st.sampled_from([usual] * weight + list(unusual))


inputs = st.fixed_dictionaries(
    {
        "method": st.sampled_from(EVERY_METHOD),
        "model_dims": st.sampled_from([1, 2, 3]),
        "input_dims": mostly(None, 0, 1, 2, 3, 4, weight=12),  # None: the model's
        "batch": mostly(2, 1, 3, 0),
        "channels": mostly(3, 1, 4),
        "size": st.integers(1, 9),
        "dtype": mostly("float32", "float64", "float16", "bfloat16", "int64"),
        "values": mostly("normal", "nan", "inf", "zeros", "huge"),
        "targets": st.sampled_from(
            [
                "none",
                "none",
                "int",
                "int",
                "list",
                "topk",
                "tensor",
                "float-tensor",
                "function",
                "bad-function",
                "contrast",
                "broken",
            ]
        ),
        "value": st.integers(-2, 7),
        "layer": st.sampled_from([None] * 6 + ["0", "2", "3", "5", "nope", ["0", "3"], 7]),
        "score": mostly("logit", "softmax", "probability"),
        "fuse": mostly("mean", "max", "product", "median"),
        "smooth": mostly(False, True, weight=4),
        "train": mostly(False, True),
    }
)


def build_input(case: dict) -> torch.Tensor:
    dims = case["model_dims"] if case["input_dims"] is None else case["input_dims"]
    shape = (case["batch"], case["channels"], *[case["size"] + 2] * dims)
    generator = torch.Generator().manual_seed(case["size"])
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    if case["values"] == "nan" and x.numel():
        x.view(-1)[0] = math.nan
    elif case["values"] == "inf" and x.numel():
        x.view(-1)[-1] = math.inf
    elif case["values"] == "zeros":
        x = torch.zeros_like(x)
    elif case["values"] == "huge":
        x = x * 1e30
    return x.to(getattr(torch, case["dtype"]))


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("CAMKIT_HYPOTHESIS_EXAMPLES", "400")),
    deadline=10_000,  # a hang shows up as a deadline failure
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("CAMKIT_HYPOTHESIS_RANDOM") is None,  # CI: the same examples
)
@given(case=inputs)
def test_the_library_answers_or_refuses_clearly(case) -> None:
    dtype = getattr(torch, case["dtype"])
    model = MODELS[case["model_dims"], dtype if dtype in FLOATS else torch.float32]
    model.train(case["train"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = hook_count(model)
    x = build_input(case)
    options = {"score": case["score"], "fuse": case["fuse"]}
    if case["smooth"]:
        options["smooth"] = camkit.Noise(2, 0.1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant maps, training mode: warned, not errors
            targets = make_targets(case["targets"], case["batch"], case["value"])
            result = camkit.explain(model, x, case["method"], case["layer"], targets, **options)
    except (ValueError, TypeError) as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
    else:
        assert result.maps.shape[:1] == x.shape[:1]
        assert result.maps.shape[2:] == x.shape[2:]
        assert result.maps.dtype == torch.float32
        assert bool(torch.isfinite(result.maps).all())
        assert float(result.maps.min()) >= 0.0
        assert float(result.maps.max()) <= 1.0
    finally:
        model.eval()
    assert hook_count(model) == hooks
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("property-images")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(folder / "rgb.png")
    Image.fromarray((rng.random((16, 16)) * 65535).astype(np.uint16)).save(folder / "deep.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


options = st.fixed_dictionaries(
    {},
    optional={
        "--methods": mostly("gradcam", "cam,eigencam", ",", "gradcam,nope", "all", weight=4),
        "--target": mostly("0", "5", "6", "99", "star", "zebra", "-1", "", weight=4),
        "--alpha": mostly("0.5", "0", "1", "1.5", "-0.1", "nan", "inf", weight=6),
        "--colormap": mostly("jet", "hot", "gray", "viridis", "bogus", weight=2),
        "--size": mostly("0", "8", "20", "-5", weight=4),
        "--max-size": mostly("1024", "0", "12", "-1", weight=4),
        "--batch-size": mostly("2", "1", "0", "-3", weight=4),
        "--layer": mostly("features", "feature", "pool", "classifier", "features.3", weight=4),
        "--device": mostly("cpu", "banana", "cuda:3", weight=6),
    },
)


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("CAMKIT_HYPOTHESIS_COMMANDS", "60")),
    deadline=30_000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(chosen=options, top=st.sampled_from([None, "0", "2", "7"]))
def test_the_command_answers_with_an_exit_code_and_complete_files(
    chosen, top, image_folder, tmp_path_factory, capsys
) -> None:
    out = tmp_path_factory.mktemp("out")
    argv = ["explain", str(image_folder), "--out", str(out)]
    if "--target" not in chosen and top is not None:
        argv += ["--top", top]
    for option, value in chosen.items():
        argv += [f"{option}={value}"]
    if "--methods" not in chosen:
        argv += ["--methods", "gradcam"]
    code = main(argv)
    printed = capsys.readouterr()
    event(f"exit {code}")
    assert code in (0, 1, 2), code
    assert "Traceback" not in printed.err
    names = os.listdir(out)
    assert not [n for n in names if n.endswith(".part")]
    if code == 2:
        assert not names  # a usage error writes nothing
        assert len([line for line in printed.err.splitlines() if line.strip()]) == 1
    else:
        assert "broken.png: not a readable image" in printed.err  # the broken file is named
        assert code == 1
