"""Write the bundled sample images: one generated image per shape class (seed 77, not trained on).

python scripts/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

from camkit.data import CLASSES, ShapesDataset
from camkit.overlay import to_pil

OUT = Path(__file__).resolve().parents[1] / "src" / "camkit" / "data" / "samples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = ShapesDataset(200, seed=77)
    found: dict[int, int] = {}
    for index in range(len(data)):
        found.setdefault(int(data[index]["label"]), index)
        if len(found) == len(CLASSES):
            break
    for label, index in sorted(found.items()):
        to_pil(data[index]["image"]).save(OUT / f"{CLASSES[label]}.png", optimize=True)
        print(f"{CLASSES[label]}.png: sample {index} of ShapesDataset(seed=77)")


if __name__ == "__main__":
    main()
