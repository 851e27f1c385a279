"""Shared fixtures: small random-weight networks (no downloads), built once per session."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers.nets import ARCHITECTURES, gap_net

# Helpers are imported by the tests that need them, never collected: importing one can register
# a plug-in (helpers/peak_metric.py).
collect_ignore_glob = ["helpers/*"]


@pytest.fixture
def tiny() -> nn.Module:
    return gap_net()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 12, 10, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def zoo() -> dict[str, nn.Module]:
    models = {}
    for name, (build, _, _) in ARCHITECTURES.items():
        torch.manual_seed(0)
        # float64, so that comparisons test the formulas, not float32 rounding.
        models[name] = build(num_classes=10).double().eval()
    return models


@pytest.fixture(scope="session")
def zoo_input() -> torch.Tensor:
    return torch.randn(
        2, 3, 96, 80, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )


@pytest.fixture(scope="session")
def real():
    """The real ImageNet model and the real photos, each prepared as the model expects: built
    once per test run."""
    from helpers.photos import photos, prepared, real_model

    loaded = real_model()
    ready = [(photo, *prepared(loaded, photo)) for photo in photos()]
    return loaded, ready
