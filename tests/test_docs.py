"""The documentation site builds with every warning an error, and has what its goal promises."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_site_builds_strictly_with_the_api_reference(tmp_path) -> None:
    mkdocs = shutil.which("mkdocs")
    assert mkdocs is not None, "the docs tools are a test dependency: pip install -e '.[test]'"
    site = tmp_path / "site"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    home = (site / "index.html").read_text()
    for page in (
        "getting-started/",
        "howto/model-families/",
        "concepts/#which-method-when",
        "reference/camkit/",
    ):
        assert page in home, f"the home page does not link {page}"
    reference = (site / "reference" / "camkit" / "index.html").read_text()
    import camkit

    for name in camkit.__all__:  # every public name has its entry (signature and example)
        assert f'id="camkit.{name}"' in reference, f"camkit.{name} is missing from the reference"
    metrics = (site / "reference" / "metrics" / "index.html").read_text()
    assert 'id="camkit.metrics.deletion"' in metrics
    assert "&gt;&gt;&gt;" in metrics
