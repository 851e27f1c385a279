"""Lint, format, types, and a runnable example in every public docstring (the examples
themselves run as doctests: pytest --doctest-modules, configured in pyproject.toml)."""

from __future__ import annotations

import doctest
import importlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args: list[str]) -> None:
    ruff = shutil.which("ruff")
    assert ruff is not None, "ruff is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_types_check() -> None:
    """mypy over src/ (the package ships py.typed, so its annotations are a promise)."""
    mypy = shutil.which("mypy")
    assert mypy is not None, "mypy is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([mypy, "src/camkit"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "package", ["camkit", "camkit.metrics", "camkit.jobs", "camkit.evaluation", "camkit.models"]
)
def test_every_public_name_has_a_runnable_example(package: str) -> None:
    finder = doctest.DocTestFinder()
    module = importlib.import_module(package)
    for name in module.__all__:
        obj = getattr(module, name)
        if name.isupper() or name == "Statistic":
            continue  # constants and type aliases, documented with their definitions
        examples = [t for t in finder.find(obj, name) if t.examples]
        assert examples, f"{package}.{name} has no runnable example in its docstring"
