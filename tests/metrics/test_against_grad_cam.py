"""Metrics against pytorch-grad-cam: ROAD's imputation against its port of the original (a
SciPy sparse solve), ADCC's terms against its coherency and complexity."""

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


def test_adcc_terms_equal_pytorch_grad_cams_coherency_complexity_and_drop() -> None:
    # pytorch-grad-cam 1.5.7 ships coherency and complexity (inside its ARCC, which uses ROAD
    # where ADCC uses the confidence drop); fed camkit's maps, its Grad-CAM re-explains the
    # masked inputs for coherency. Average drop: the same x * map, probabilities.
    from pytorch_grad_cam import GradCAM as TheirGradCAM
    from pytorch_grad_cam.metrics.arcc import Coherency, Complexity
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import camkit
    from camkit.data import ShapesDataset
    from camkit.metrics.confidence import adcc
    from camkit.models import load_shapes_model

    model = load_shapes_model()
    data = ShapesDataset(8, seed=3).stack()
    x, labels = data["image"], data["label"]
    explainer = camkit.GradCAM(model)
    explained = explainer(x, labels)
    maps = explained.maps[:, 0]
    ours = adcc(model, x, maps, lambda i, t: explainer(i, t).maps[:, 0], labels)
    layer = dict(model.named_modules())[explained.layers[0]]
    targets = [ClassifierOutputTarget(int(c)) for c in labels]
    with TheirGradCAM(model, target_layers=[layer]) as theirs:
        coherency = Coherency()(x, maps.numpy(), targets, model, theirs)
    complexity = Complexity()(maps.numpy())
    with torch.no_grad():
        clean = model(x).softmax(1).gather(1, labels[:, None])[:, 0]
        masked = model(x * maps[:, None]).softmax(1).gather(1, labels[:, None])[:, 0]
    drop = ((clean - masked) / clean).clamp_min(0)
    differences = {
        "coherency": float((ours.coherency - torch.as_tensor(coherency)).abs().max()),
        "complexity": float((ours.complexity - torch.as_tensor(complexity)).abs().max()),
        "drop": float((ours.drop - drop).abs().max()),
    }
    print("ADCC terms, camkit against pytorch-grad-cam:", differences)
    assert differences["coherency"] < 1e-5
    assert differences["complexity"] < 1e-6
    assert differences["drop"] < 1e-6
    harmonic = 3 / (
        1 / torch.as_tensor(coherency) + 1 / (1 - torch.as_tensor(complexity)) + 1 / (1 - drop)
    )
    assert torch.allclose(ours.score.double(), harmonic.double(), atol=1e-5)
