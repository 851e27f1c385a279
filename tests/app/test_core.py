"""camkit.app.core: what the app computes, without a browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import camkit
from camkit.app import core
from camkit.data import sample_images
from camkit.jobs import ExplainJob, explain_folder
from camkit.metrics import deletion, insertion
from helpers.clip import tiny_clip


@pytest.fixture(scope="module")
def bundled() -> core.AppModel:
    return core.open_model("shapes")


@pytest.fixture(scope="module")
def pictures() -> list[tuple[str, torch.Tensor]]:
    return core.sample_pictures()[:2]


def test_layers_list_names_and_shapes_with_the_automatic_choice_first(bundled) -> None:
    choices = core.layer_choices(bundled)
    assert choices[0] == (f"{bundled.automatic}  (1, 128, 12, 12)  ← automatic", "features")
    names = [value for _, value in choices]
    assert len(names) == len(set(names)) == len(bundled.layers)
    assert bundled.classes == list(bundled.loaded.classes)


def test_maps_equal_the_library_call(bundled, pictures) -> None:
    question = core.Question(methods=("gradcam", "cam"), layer="features.9")
    shown = core.explain_pictures(bundled, pictures, question)
    assert [s.name for s in shown] == ["cross.png", "disc.png"]
    for item, (_, picture) in zip(shown, pictures, strict=True):
        x = bundled.loaded.normalise(picture)[None]
        expected = camkit.GradCAM(bundled.loaded.model, layer="features.9")(x)
        torch.testing.assert_close(item.maps["gradcam"], expected.maps[0, 0])
        assert item.maps["gradcam"].shape == picture.shape[1:]
        assert item.predictions[0]["name"] == item.target == item.name.removesuffix(".png")
        assert sum(p["probability"] for p in item.predictions) <= 1.0 + 1e-6


def test_class_and_contrast_targets(bundled, pictures) -> None:
    model = bundled.loaded.model
    x = bundled.loaded.normalise(pictures[0][1])[None]
    ring, square = bundled.classes.index("ring"), bundled.classes.index("square")
    one = core.explain_pictures(
        bundled, pictures[:1], core.Question(methods=("gradcam",), target="class", cls=ring)
    )[0]
    assert one.target == "ring"
    assert one.target_class == ring
    torch.testing.assert_close(one.maps["gradcam"], camkit.GradCAM(model)(x, ring).maps[0, 0])
    why = core.Question(methods=("gradcam", "cam"), target="contrast", cls=ring, foil=square)
    two = core.explain_pictures(bundled, pictures[:1], why)[0]
    expected = camkit.GradCAM(model)(x, camkit.Contrast(ring, square)).maps[0, 0]
    torch.testing.assert_close(two.maps["gradcam"], expected)
    assert two.target == "ring rather than square"
    assert two.target_class == ring
    assert "cam" in two.errors
    assert "cam" not in two.maps


@pytest.mark.parametrize(
    ("question", "message"),
    [
        (core.Question(methods=()), "choose methods"),
        (core.Question(methods=("gradcam+",)), "unknown method .gradcam\\+. \\(did you mean"),
        (core.Question(target="class"), "choose the class"),
        (core.Question(target="contrast", cls=1, foil=1), "two different classes"),
        (core.Question(options=("scorecam.chanels=4",)), "scorecam has no option 'chanels'"),
    ],
)
def test_questions_that_cannot_be_asked(bundled, pictures, question, message) -> None:
    with pytest.raises(ValueError, match=message):
        core.explain_pictures(bundled, pictures, question)


def test_no_images_and_too_many_images(bundled, pictures) -> None:
    with pytest.raises(ValueError, match="choose a sample or upload"):
        core.explain_pictures(bundled, [], core.Question())
    with pytest.raises(ValueError, match="at most 8"):
        core.explain_pictures(bundled, pictures * 5, core.Question())


def test_render_applies_opacity_and_colour_map_to_the_same_maps(bundled, pictures) -> None:
    shown = core.explain_pictures(bundled, pictures[:1], core.Question(methods=("gradcam",)))
    faint, strong = (core.render(shown, alpha=a)[1][0] for a in (0.0, 1.0))
    original = np.asarray(core.render(shown)[0][0])
    assert np.array_equal(np.asarray(faint), original)  # opacity 0: the picture itself
    assert not np.array_equal(
        np.asarray(strong), np.asarray(core.render(shown, colormap="hot")[1][0])
    )
    with pytest.raises(ValueError, match="opacity"):
        core.render(shown, alpha=1.5)
    with pytest.raises(ValueError, match="unknown colormap"):
        core.render(shown, colormap="nope")


def test_faithfulness_is_camkit_metrics_on_the_shown_image(bundled, pictures) -> None:
    shown = core.explain_pictures(bundled, pictures[:1], core.Question(methods=("gradcam",)))[0]
    result = core.faithfulness(bundled, shown, steps=8)
    maps = shown.maps["gradcam"][None, None]
    model, x = bundled.loaded.model, shown.input[None]
    expected_d = deletion(model, x, maps, shown.target_class, steps=8)
    expected_i = insertion(model, x, maps, shown.target_class, steps=8)
    d_auc, i_auc = result.aucs()["gradcam"]
    assert d_auc == pytest.approx(expected_d.mean_auc, abs=1e-6)
    assert i_auc == pytest.approx(expected_i.mean_auc, abs=1e-6)
    assert d_auc < i_auc  # the trained model's map points at its evidence
    assert result.table().splitlines()[2].startswith("| gradcam | ")
    assert result.chart().size == (760, 440)


def test_export_writes_what_camkit_explain_writes(bundled, pictures, tmp_path) -> None:
    shown = core.explain_pictures(bundled, pictures[:1], core.Question(methods=("gradcam",)))
    files = core.export(shown, tmp_path / "app", "shapes", alpha=0.5, colormap="jet")
    names = [
        "cross.json",
        "cross_gradcam.npy",
        "cross_gradcam.png",
        "cross_gradcam_raw.npy",
        "cross_grid.png",
    ]
    assert sorted(p.name for p in files) == names
    saved = np.load(tmp_path / "app" / "cross_gradcam.npy")
    assert np.array_equal(saved, shown[0].maps["gradcam"][None].numpy())  # (K, H, W), K = 1
    assert np.load(tmp_path / "app" / "cross_gradcam_raw.npy").shape == (1, 12, 12)
    # The same files and the same summary as camkit explain's for the same image.
    sample = next(p for p in sample_images() if p.name == "cross.png")
    job = ExplainJob(
        inputs=(str(sample),), out=tmp_path / "cli", methods=("gradcam",), save_maps="npy"
    )
    explain_folder(job)
    written = sorted(p.name for p in (tmp_path / "cli").iterdir() if not p.name.startswith("."))
    assert written == names
    app_summary = json.loads((tmp_path / "app" / "cross.json").read_text())
    cli_summary = json.loads((tmp_path / "cli" / "cross.json").read_text())
    assert app_summary.keys() == cli_summary.keys()
    for key in ("files", "layers", "methods", "input_size"):
        assert app_summary[key] == cli_summary[key], key
    for key in ("predictions", "targets"):  # the same classes and scores (float rounding aside)
        for ours, theirs in zip(app_summary[key], cli_summary[key], strict=True):
            assert ours["class"] == theirs["class"]
            assert ours["score"] == pytest.approx(theirs["score"], rel=1e-5)


def test_uploads_that_are_not_images_say_so(tmp_path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture")
    with pytest.raises(ValueError, match="notes.png: not a readable image"):
        core.read_upload(fake)


def test_models_that_do_not_load_say_why(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet5'"):
        core.open_model("resnet5")
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ValueError, match="does not fit resnet18"):
        core.open_model("resnet18", str(wrong))
    random = core.open_model("resnet18")
    assert "random weights" in random.warning
    assert random.automatic == "layer4"


def test_the_attention_methods_are_listed_for_a_transformer_only(bundled, pictures) -> None:
    attention = {"legrad", "gae", "rollout", "attnlrp"}
    assert not attention & set(bundled.methods)
    assert "lrp" in bundled.methods
    vit = core.open_model("vit", "random")
    assert attention <= set(vit.methods)
    assert "lrp" not in vit.methods  # its rules are for CNNs: attnlrp is the transformer's
    asked = core.Question(methods=("legrad", "rollout", "attnlrp"))
    shown = core.explain_pictures(vit, pictures[:1], asked)
    assert shown[0].errors == {}
    assert set(shown[0].maps) == {"legrad", "rollout", "attnlrp"}


def test_a_methods_options_reach_it_as_in_the_command(bundled, pictures) -> None:
    x = pictures[0][1]
    asked = core.Question(methods=("scorecam",), options=("scorecam.channels=4",))
    shown = core.explain_pictures(bundled, pictures[:1], asked)[0]
    model_input = bundled.loaded.prepare(x)[1][None]
    expected = camkit.ScoreCAM(bundled.loaded.model, channels=4)(model_input).maps[0, 0]
    torch.testing.assert_close(shown.maps["scorecam"], expected)
    every = core.explain_pictures(bundled, pictures[:1], core.Question(methods=("scorecam",)))
    assert not torch.equal(every[0].maps["scorecam"], shown.maps["scorecam"])


def test_a_layer_inside_a_block_is_that_block_for_the_attention_methods(pictures) -> None:
    vit = core.open_model("vit", "random")
    asked = core.Question(methods=("gradcam", "legrad"), layer="blocks.2.norm1")
    shown = core.explain_pictures(vit, pictures[:1], asked)[0]
    assert shown.errors == {}
    assert shown.layers == ["blocks.2.norm1"]  # Grad-CAM's
    x = vit.loaded.prepare(pictures[0][1])[1][None]
    expected = camkit.LeGrad(vit.loaded.model, layer="blocks.2")(x).maps[0, 0]
    torch.testing.assert_close(shown.maps["legrad"], expected)
    # The dropdown's automatic layer (blocks.3.norm1 here) is each method's own choice, as the
    # command without --layer: LeGrad reads every block.
    assert vit.automatic.startswith("blocks.3.")
    asked = core.Question(methods=("legrad",), layer=vit.automatic)
    automatic = core.explain_pictures(vit, pictures[:1], asked)[0]
    every = camkit.LeGrad(vit.loaded.model)(x)
    assert every.layers == ("blocks.0", "blocks.1", "blocks.2", "blocks.3")
    torch.testing.assert_close(automatic.maps["legrad"], every.maps[0, 0])


def test_an_image_text_model_takes_its_prompts_as_classes(tmp_path, pictures) -> None:
    pytest.importorskip("transformers")
    tiny_clip(tmp_path)
    clip = core.open_model(str(tmp_path), prompts=["dog", "cat"])
    assert clip.classes == ["dog", "cat"]
    assert {"legrad", "gae", "rollout", "gradcam"} <= set(clip.methods)
    shown = core.explain_pictures(clip, pictures[:1], core.Question(methods=("legrad",)))
    assert shown[0].errors == {}
    assert shown[0].maps["legrad"].shape[-2:] == (32, 32)
    with pytest.raises(ValueError, match="text prompts go with an image-text model"):
        core.open_model(str(tmp_path))
