"""ROAD's imputation against pytorch-grad-cam's port of the original (a SciPy sparse solve)."""

from __future__ import annotations

import pytest
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from camkit.metrics import impute


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 vs their array wrapper
def test_imputation_matches_the_sparse_direct_solve() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 20, 24, generator=generator)
    shares = (0.1, 0.4, 0.7, 0.95)
    removed = torch.stack([torch.rand(20, 24, generator=generator) < s for s in shares])
    ours = impute(images, removed, noise=0.0, tolerance=1e-7)
    reference = NoisyLinearImputer(noise=0.0)
    for image, mask, mine in zip(images, removed, ours, strict=True):
        theirs = reference(image, (~mask).float())  # their mask: 1 = keep
        assert torch.allclose(mine, theirs, atol=1e-4), (mine - theirs).abs().max()
