"""CLIP models (Hugging Face and open_clip, random weights from configs) explained per prompt:
the scores are CLIP's own, every method that applies draws one map per prompt from one pass,
and the command takes ``--prompt``."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import camkit
from camkit.cli import main
from camkit.image_text import PromptScores
from helpers.clip import tiny_clip

transformers = pytest.importorskip("transformers")
open_clip = pytest.importorskip("open_clip")

PROMPTS = ["a photo of a dog", "a cat", "a red car"]
METHODS = ("gradcam", "gradcam++", "scorecam", "legrad", "gae", "rollout")


@pytest.fixture(scope="module")
def hugging_face(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    model, tokenizer = tiny_clip(folder)
    return model, tokenizer, folder


@pytest.fixture(scope="module")
def open_clip_model():
    torch.manual_seed(0)
    vision = open_clip.model.CLIPVisionCfg(
        layers=2, width=32, patch_size=8, image_size=32, head_width=16
    )
    text = open_clip.model.CLIPTextCfg(
        context_length=16, vocab_size=49408, width=32, heads=2, layers=1
    )
    return open_clip.CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text).eval()


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_scores_are_clips_own_logits_per_image(hugging_face, open_clip_model) -> None:
    model, tokenizer, _ = hugging_face
    x = _images()
    tokens = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    expected = model(**tokens, pixel_values=x).logits_per_image
    got = PromptScores(model, PROMPTS, tokenizer)(x)
    print(
        f"Hugging Face CLIP: max |camkit - logits_per_image| = {(got - expected).abs().max():.1e}"
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    ids = open_clip.tokenizer.SimpleTokenizer(context_length=16)(PROMPTS)
    image, text, scale = open_clip_model(x, ids)
    expected = scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    got = PromptScores(open_clip_model, PROMPTS)(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["hugging-face", "open-clip"])
def test_every_method_draws_one_map_per_prompt_from_one_pass(
    kind, hugging_face, open_clip_model
) -> None:
    if kind == "hugging-face":
        model, tokenizer, _ = hugging_face
        scores, vision = PromptScores(model, PROMPTS, tokenizer), model.vision_model
    else:
        scores, vision = PromptScores(open_clip_model, PROMPTS), open_clip_model.visual
    passes = []
    vision.register_forward_hook(lambda *_: passes.append(1))
    x = _images()
    for method in METHODS:
        explainer = camkit.METHODS[method](scores)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", camkit.CamkitWarning)
            explainer(x[:1])  # finds its layers or blocks (probing passes), once
            passes.clear()
            result = explainer(x, targets=camkit.TopK(3))
        assert result.maps.shape == (2, 3, 32, 32)
        assert "vision" in result.layers[0] or "visual" in result.layers[0]
        if method in ("gradcam", "gradcam++", "legrad", "gae", "rollout"):
            assert len(passes) == 1  # all three prompts from one pass of the vision tower
    vision._forward_hooks.clear()
    gradcam = camkit.explain(scores, x, method="legrad", targets=torch.tensor([[2], [0]]))
    both = camkit.explain(scores, x, method="legrad", targets=torch.tensor([[2, 0], [0, 2]]))
    torch.testing.assert_close(gradcam.maps[:, 0], both.maps[:, 0])  # a prompt's own map


def test_prompts_need_an_image_text_model_and_a_hugging_face_tokenizer(hugging_face) -> None:
    model, _, _ = hugging_face
    with pytest.raises(ValueError, match="needs its tokenizer"):
        PromptScores(model, PROMPTS)
    with pytest.raises(ValueError, match="non-empty list of non-blank texts"):
        PromptScores(model, "a dog")
    with pytest.raises(ValueError, match="non-empty list of non-blank texts"):
        PromptScores(model, ["a dog", "  "], lambda texts, **_: None)
    with pytest.raises(ValueError, match="does not encode images and texts apart"):
        PromptScores(camkit.models.ShapesViT(), PROMPTS)


def test_the_command_explains_each_prompt_of_a_saved_clip(hugging_face, tmp_path, capsys):
    _, _, folder = hugging_face
    image = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    out = tmp_path / "out"
    prompts = ["--prompt", "a dog", "--prompt", "a red car"]
    code = main(
        [
            "explain",
            str(image),
            "--model",
            str(folder),
            *prompts,
            "--methods",
            "gradcam,legrad",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "photo.json").read_text())
    assert sorted(t["name"] for t in summary["targets"]) == ["a dog", "a red car"]
    assert summary["input_size"] == [32, 32]
    assert len(summary["files"]["overlays"]["legrad"]) == 2


def test_the_command_says_what_goes_with_a_prompt(hugging_face, tmp_path, capsys) -> None:
    _, _, folder = hugging_face
    assert main(["explain", "--prompt", "a dog", "--out", str(tmp_path / "a")]) == 2
    assert "text prompts go with an image-text model" in capsys.readouterr().err
    assert main(["explain", "--model", str(folder), "--out", str(tmp_path / "b")]) == 2
    assert "at least one prompt" in capsys.readouterr().err


def test_siglip_scores_keep_its_bias_and_score_each_prompt_with_its_own_sigmoid() -> None:
    """SigLIP's logits_per_image is scale * cosine + logit_bias, and it was trained with a
    sigmoid per image-text pair: each prompt's probability is its own sigmoid (they do not sum
    to 1 across prompts, as CLIP's softmax does)."""
    torch.manual_seed(0)
    text = {
        "vocab_size": 50,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
    }
    vision = {
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    model = transformers.SiglipModel(
        transformers.SiglipConfig(text_config=text, vision_config=vision)
    ).eval()
    with torch.no_grad():
        model.logit_bias.fill_(-3.0)  # far from 0, so that leaving it out shows
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    prompts = PromptScores(model, ["a", "b"], lambda texts, **_: {"input_ids": ids})
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = model(input_ids=ids, pixel_values=x).logits_per_image
        ours = prompts(x)
    torch.testing.assert_close(ours, theirs)
    assert prompts.sigmoid
    torch.testing.assert_close(prompts.probabilities(ours), theirs.sigmoid())
    loaded = camkit.models.loading.LoadedModel("siglip", prompts, 32, None, None, ("a", "b"))
    torch.testing.assert_close(loaded.probabilities(ours), theirs.sigmoid())
    result = camkit.GradCAM(prompts)(x, targets=camkit.TopK(2))
    assert result.maps.shape == (2, 2, 32, 32)
