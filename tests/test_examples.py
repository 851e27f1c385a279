"""Every script in examples/ runs (they are the how-to pages' code), and prints what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECTED = {
    "detection.py": [
        "layer: backbone.body.16",
        "maps: (2, 1, 160, 200)",
        "yolo maps: (2, 1, 64, 64)",
    ],
    "segmentation.py": ["gradcam layer: backbone.16", "scorecam (top 16 channels): (2, 1, 96, 96)"],
    "timm_models.py": ["vit_tiny_patch16_224", "layer blocks.11.norm1", "layer layer4"],
    "hugging_face.py": ["layer vit.layers.3.layernorm_before", "convnext.encoder.stages.3"],
    "metrics.py": ["gradcam    avg drop", "scorecam   avg drop"],
    "evaluation.py": ["| Method | Avg drop % ↓ |", "| gradcam |", "images: 24"],
    "app_core.py": ["automatic layer: features", "tiles: 6 (cross.png,", "| gradcam | "],
    "logging_maps.py": [
        "tensorboard: logged maps/gradcam",
        "wandb: logged maps (offline run)",
        "lightning: logged 4 grids at epochs [1, 3]",
    ],
    "yolo.py": [
        "layers: model.15, model.18, model.21 maps: (2, 1, 128, 160)",
        "top 3 detections: (2, 3, 128, 160)",
        "eigencam at model.21",
        "classify layer: model.9.conv",
    ],
    "smp_segmentation.py": [
        "Unet           layer: encoder.layer4  maps: (2, 1, 96, 96)",
        "DeepLabV3Plus  layer: encoder.layer4",
        "Segformer      layer: encoder.norm4",
    ],
    "monai_volumes.py": [
        "unet layer: model.1.submodule.1 maps: (1, 1, 32, 48, 48)",
        "densenet gradcam   layer: class_layers.relu  maps: (1, 1, 64, 64, 64)",
    ],
    "volumes_and_signals.py": [
        "volume cam      maps (2, 1, 16, 32, 32)",
        "signal scorecam maps (3, 1, 500)",
    ],
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_and_prints_what_it_says(script) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for text in EXPECTED[script]:
        assert text in result.stdout, result.stdout
