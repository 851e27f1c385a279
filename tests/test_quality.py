"""Lint, format and the runnable example in every public docstring."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import camkit

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(camkit.__path__, "camkit.") if m.name != "camkit.__main__"
)


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args: list[str]) -> None:
    ruff = shutil.which("ruff")
    assert ruff is not None, "ruff is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    torch.manual_seed(0)  # examples build random networks: make them the same every run
    outcome = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0


@pytest.mark.parametrize("package", ["camkit", "camkit.metrics"])
def test_every_public_name_has_a_runnable_example(package: str) -> None:
    finder = doctest.DocTestFinder()
    module = importlib.import_module(package)
    for name in module.__all__:
        obj = getattr(module, name)
        if name == "METHODS":
            continue  # a mapping, documented with its definition
        examples = [t for t in finder.find(obj, name) if t.examples]
        assert examples, f"{package}.{name} has no runnable example in its docstring"
