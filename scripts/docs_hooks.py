"""mkdocs hooks: a picture the docs show that a script makes is made again when it is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent


def on_pre_build(config: Any) -> None:
    spec = importlib.util.spec_from_file_location(
        "real_photo_figure", SCRIPTS / "real_photo_figure.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError("cannot load scripts/real_photo_figure.py")
    figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figure)
    if not figure.OUT.exists():
        figure.make(figure.OUT)
