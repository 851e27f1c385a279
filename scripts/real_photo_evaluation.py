"""A small real-photo evaluation: the real ImageNet model (``--model efficientnet-lite0``) on the
five photos of the real-model tests (scikit-image, scikit-learn), each in its class folder with
its hand-drawn box as the object mask, through ``camkit evaluate``; the report goes to
docs/evaluation/real/.

    python scripts/real_photo_evaluation.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from camkit.cli import main  # noqa: E402
from helpers.photos import BOXES, photos  # noqa: E402

# The folder of each photo: the ImageNet class it is labelled with (the first of its classes
# that the model names; the cat is labelled as the class the model gives it).
LABELS = {
    "chelsea": "tiger cat",
    "coffee": "espresso",
    "rocket": "missile",
    "china": "palace",
    "flower": "daisy",
}


def folder(into: Path) -> Path:
    """The photos as a class-per-folder tree with <stem>.mask.png masks from their boxes."""
    for photo in photos():
        where = into / LABELS[photo.name]
        where.mkdir(parents=True, exist_ok=True)
        picture = (photo.picture.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(picture).save(where / f"{photo.name}.png")
        mask = (photo.box_mask()[0].numpy() * 255).astype(np.uint8)
        Image.fromarray(mask).save(where / f"{photo.name}.mask.png")
    return into


if __name__ == "__main__":
    assert json.loads(BOXES.read_text())
    with tempfile.TemporaryDirectory() as scratch:
        data = folder(Path(scratch) / "photos")
        out = ROOT / "docs" / "evaluation" / "real"
        arguments = ["--model", "efficientnet-lite0", "--data", str(data), "--out", str(out)]
        sys.exit(main(["evaluate", *arguments, *sys.argv[1:]]))
