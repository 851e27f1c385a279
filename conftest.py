"""Doctests: every docstring example in src/camkit runs under pytest, each from the same seed
(the examples draw random inputs; a fixed seed makes a failure repeat)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_doctest(request: pytest.FixtureRequest) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        torch.manual_seed(0)
