"""The figures the README and the docs quote are the committed results files' (so they cannot
go stale): every results table in the README equals its results file row by row, and every
number docs/concepts.md quotes from a benchmark is that benchmark's, rounded as quoted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = {
    "bundled": ROOT / "docs/evaluation/results.md",
    "shortcut": ROOT / "docs/evaluation/shortcut/results.md",
    "deep": ROOT / "docs/evaluation/deep/results.md",
    "vit": ROOT / "docs/evaluation/vit/results.md",
    "vit-shortcut": ROOT / "docs/evaluation/vit-shortcut/results.md",
    "relevance-vit": ROOT / "docs/evaluation/relevance/vit/results.md",
    "relevance-shapes": ROOT / "docs/evaluation/relevance/shapes/results.md",
}


def tables(text: str) -> list[list[list[str]]]:
    """Every markdown table whose header starts with "| Method |": rows of cells."""
    found, current = [], None
    for line in text.splitlines():
        if line.startswith("| Method |"):
            current = [_cells(line)]
            found.append(current)
        elif current is not None and line.startswith("|"):
            if not set(line) <= set("|-: "):
                current.append(_cells(line))
        else:
            current = None
    return found


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def results(name: str) -> dict[str, dict[str, float]]:
    """The first table of a results file: method -> column -> its number (before the ±)."""
    header, *rows = tables(RESULTS[name].read_text())[0]
    values: dict[str, dict[str, float]] = {}
    for row in rows:
        values[row[0]] = {}
        for column, cell in zip(header[1:], row[1:], strict=True):
            number = re.match(r"-?\d+(\.\d+)?", cell)
            if number:
                values[row[0]][column] = float(number.group())
    return values


def test_every_results_table_in_the_readme_is_its_results_files() -> None:
    readme = tables((ROOT / "README.md").read_text())
    files = {name: tables(path.read_text())[0] for name, path in RESULTS.items()}
    matched = []
    for table in readme:
        methods = {row[0] for row in table[1:]}
        name = next(
            (
                n
                for n, f in files.items()
                if f[0] == table[0] and methods == {row[0] for row in f[1:]}
            ),
            None,
        )
        if name is None:
            continue
        assert table == files[name], f"the README's {name} table differs from {RESULTS[name]}"
        matched.append(name)
    assert sorted(matched) == sorted(RESULTS)  # every results file is in the README


def test_the_readmes_catalogue_table_is_the_default_runs_results_file() -> None:
    # the columns of the Quantus catalogue, cut from the default run's table cell for cell
    header, *rows = tables((ROOT / "docs/evaluation/default/results.md").read_text())[0]
    readme = next(t for t in tables((ROOT / "README.md").read_text()) if "ADCC % ↑" in t[0])
    full = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert [row[0] for row in readme[1:]] == list(full)
    for row in readme[1:]:
        assert row[1:] == [full[row[0]][column] for column in readme[0][1:]], row[0]


# (the words around the number in docs/concepts.md, the benchmark, method, column)
CLAIMS = [
    ("sanity rank correlation {}", "bundled", "gradcam", "Sanity rho ↓"),
    ("the weights are randomised ({} to", "bundled", "gradcam++", "Sanity rho ↓"),
    ("randomised (0.75 to {})", "bundled", "scorecam", "Sanity rho ↓"),
    ("lowest drop ({}%,", "bundled", "scorecam", "Avg drop % ↓"),
    ("lowest drop (0.08%, {}%)", "bundled", "gradcam++", "Avg drop % ↓"),
    ("highest increase ({}%,", "bundled", "scorecam", "Increase % ↑"),
    ("highest increase (9.0%, {}%)", "bundled", "gradcam++", "Increase % ↑"),
    ("MaxBoxAcc {}% and", "bundled", "scorecam", "MaxBoxAcc % ↑"),
    ("and {}% against", "bundled", "eigencam", "MaxBoxAcc % ↑"),
    ("against {}% for Grad-CAM", "bundled", "gradcam", "MaxBoxAcc % ↑"),
    ("peak on the tag in {}% and", "shortcut", "scorecam", "Pointing % ↑"),
    ("and {}% of the images where", "shortcut", "smoothgradcam++", "Pointing % ↑"),
    ("Grad-CAM's in {}%", "shortcut", "gradcam", "Pointing % ↑"),
    ("tag in {}% of the conflict images", "shortcut", "guided-gradcam", "Pointing % ↑"),
    ("mass in its box", "shortcut", "guided-gradcam", "Energy % ↑"),
    ("put {}%, 46%", "shortcut", "lrp", "Energy % ↑"),
    ("85%, {}%, 37%", "shortcut", "guided-gradcam", "Energy % ↑"),
    ("46%, {}% and", "shortcut", "guided-backprop", "Energy % ↑"),
    ("and {}% of their mass", "shortcut", "refinecam", "Energy % ↑"),
    ("(Grad-CAM: {}%)", "shortcut", "gradcam", "Energy % ↑"),
    ("Grad-CAM's ({}% against", "shortcut", "sobel", "Pointing % ↑"),
    ("against {}%), so pointing", "shortcut", "gradcam", "Pointing % ↑"),
    ("GAE {}%", "vit", "gae", "Pointing % ↑"),
    ("rollout {}%", "vit", "rollout", "Pointing % ↑"),
    ("LeGrad {}%", "vit", "legrad", "Pointing % ↑"),
    ("last block's tokens {}%", "vit", "gradcam", "Pointing % ↑"),
    ("AttnLRP peaks on the tag in {}%", "vit-shortcut", "attnlrp", "Pointing % ↑"),
    ("AttnLRP {}% on the first 100", "relevance-vit", "attnlrp", "Pointing % ↑"),
    ("best deletion AUC ({})", "relevance-vit", "attnlrp", "Deletion AUC ↓"),
    ("GAE in {}%;", "vit-shortcut", "gae", "Pointing % ↑"),
    ("last block's tokens in {}%", "vit-shortcut", "gradcam", "Pointing % ↑"),
    ("LeGrad in {}%", "vit-shortcut", "legrad", "Pointing % ↑"),
    ("Sobel edges in {}%", "vit-shortcut", "sobel", "Pointing % ↑"),
]


@pytest.mark.parametrize(("words", "source", "method", "column"), CLAIMS)
def test_what_concepts_quotes_is_the_benchmarks(words, source, method, column) -> None:
    text = (ROOT / "docs/concepts.md").read_text()
    if "{}" not in words:
        assert words in text
        return
    pattern = re.escape(words).replace(r"\{\}", r"(-?\d+(?:\.\d+)?)")
    quoted = re.search(pattern, text)
    assert quoted, f"docs/concepts.md no longer says {words!r}"
    number = quoted.group(1)
    decimals = len(number.partition(".")[2])
    value = results(source)[method][column]
    assert round(value, decimals) == pytest.approx(float(number)), (
        f"docs/concepts.md quotes {number} for {method}'s {column} on the {source} "
        f"benchmark, whose results file says {value}"
    )


def test_the_citation_names_the_packages_version_and_the_changelogs_last_release() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    citation = (ROOT / "CITATION.cff").read_text()
    released = re.search(
        r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d\d-\d\d)",
        (ROOT / "CHANGELOG.md").read_text(),
        re.MULTILINE,
    )
    assert released is not None
    assert f"version: {version}\n" in citation
    assert released.group(1) == version
    assert f"date-released: {released.group(2)}\n" in citation


@pytest.mark.slow
def test_the_readmes_test_counts_are_the_suites() -> None:
    import subprocess
    import sys

    said = re.search(
        r"([\d,]+) tests in about .*the whole suite, ([\d,]+) tests",
        (ROOT / "README.md").read_text().replace("\n", " "),
    )
    assert said is not None
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "not slow",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout.splitlines()[-1]
    counted = re.match(r"(\d+)/(\d+) tests collected", collected)
    assert counted is not None, collected
    quick, whole = (int(said.group(i).replace(",", "")) for i in (1, 2))
    assert abs(quick - int(counted.group(1))) <= 0.05 * quick, collected
    assert abs(whole - int(counted.group(2))) <= 0.05 * whole, collected


def test_the_readmes_whole_catalogue_tables_are_the_catalogue_runs_results_file() -> None:
    # the named-only metrics, one README table per kind, each cut from the catalogue run's
    # table (docs/evaluation/catalogue/) cell for cell
    header, *rows = tables((ROOT / "docs/evaluation/catalogue/results.md").read_text())[0]
    full = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    named = set(header[1:]) - {"Explain s ↓"}
    cut = [t for t in tables((ROOT / "README.md").read_text()) if set(t[0][1:]) <= named]
    assert {c for t in cut for c in t[0][1:]} == set(header[1:]) - {"Explain s ↓"}
    for table in cut:
        assert [row[0] for row in table[1:]] == list(full)
        for row in table[1:]:
            assert row[1:] == [full[row[0]][column] for column in table[0][1:]], row[0]
