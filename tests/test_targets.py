from __future__ import annotations

import pytest
import torch

import camkit
from camkit.targets import TopK, score_targets, select_output
from helpers.nets import gap_net

LOGITS = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, -1.0, 4.0, 0.0]])


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (None, [[1], [0]]),
        (2, [[2], [2]]),
        ([3, 1], [[3], [1]]),
        ((3, 1), [[3], [1]]),
        (torch.tensor([3, 1]), [[3], [1]]),
        (torch.tensor([[0, 1], [2, 3]]), [[0, 1], [2, 3]]),
        ([[0, 1], [2, 3]], [[0, 1], [2, 3]]),
        (TopK(2), [[1, 3], [0, 2]]),
    ],
)
def test_target_forms(targets, expected) -> None:
    indices, scores, _ = score_targets(LOGITS, targets, batch_size=2)
    assert indices.tolist() == expected
    assert indices.dtype == torch.long
    assert scores.tolist() == LOGITS.gather(1, torch.tensor(expected)).tolist()


def test_softmax_scores() -> None:
    _, scores, _ = score_targets(LOGITS, [1, 0], score="softmax", batch_size=2)
    torch.testing.assert_close(scores[:, 0], LOGITS.softmax(1)[[0, 1], [1, 0]])


@pytest.mark.parametrize(
    ("targets", "error", "pattern"),
    [
        (4, ValueError, "target class 4 is out of range: .* 4 classes, .* 0 to 3"),
        ([0, -1], ValueError, "target class -1 is out of range"),
        ([1.0, 2.0], TypeError, "whole numbers, got a torch.float32"),
        (True, TypeError, "ambiguous"),
        ([1, 2, 3], ValueError, "shape \\(3, 1\\) for a batch of 2"),
        (TopK(5), ValueError, "TopK\\(5\\) asks for more classes than the 4"),
    ],
)
def test_bad_targets(targets, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        score_targets(LOGITS, targets, batch_size=2)


def test_bad_topk_and_score_names() -> None:
    with pytest.raises(ValueError, match="positive whole number"):
        TopK(0)
    with pytest.raises(ValueError, match="'logit' or 'softmax'"):
        score_targets(LOGITS, None, score="probability", batch_size=2)  # type: ignore[arg-type]


def test_score_function() -> None:
    indices, scores, _ = score_targets(LOGITS, lambda out: out[:, 1] - out[:, 0], batch_size=2)
    assert indices is None
    assert scores.tolist() == [[3.0], [-6.0]]
    with pytest.raises(TypeError, match="returned list"):
        score_targets(LOGITS, lambda out: [1, 2], batch_size=2)


def test_output_selection() -> None:
    class WithLogits:
        logits = LOGITS

    assert select_output(WithLogits()) is LOGITS
    assert select_output({"out": LOGITS}) is LOGITS
    assert select_output((LOGITS, 0)) is LOGITS
    assert select_output({"a": 0, "b": LOGITS}, "b") is LOGITS
    assert select_output((0, LOGITS), 1) is LOGITS
    assert select_output([LOGITS], lambda out: out[0]) is LOGITS
    with pytest.raises(TypeError, match="pass output=callable"):
        select_output(42)
    with pytest.raises(TypeError, match="is int, not a tensor"):
        select_output((0, LOGITS))


def test_softmax_score_applies_to_target_functions_too() -> None:
    """score="softmax" with Contrast explains p_a - p_b, not the logit difference."""
    model = gap_net()
    x = torch.rand(2, 3, 10, 10)
    explainer = camkit.GradCAM(model)
    probabilities = explainer(x, camkit.Contrast(1, 3), score="softmax")
    logits = explainer(x, camkit.Contrast(1, 3))
    with torch.no_grad():
        p = model(x).softmax(dim=1)
    torch.testing.assert_close(probabilities.scores[:, 0], p[:, 1] - p[:, 3])
    assert not torch.allclose(probabilities.scores, logits.scores)
    by_index = explainer(x, 1, score="softmax").scores[:, 0]
    torch.testing.assert_close(
        explainer(x, lambda out: out[:, 1], score="softmax").scores[:, 0], by_index
    )
    structured = camkit.GradCAM(_DictOutput(model).eval(), layer="inner.3")
    with pytest.raises(ValueError, match="score='softmax' with a target function needs tensor"):
        structured(x, lambda out: out["logits"][:, 0], score="softmax")
    # Picking the tensor first makes it well defined.
    picked = camkit.GradCAM(_DictOutput(model).eval(), layer="inner.3", output="logits")
    torch.testing.assert_close(
        picked(x, lambda out: out[:, 1], score="softmax").scores[:, 0], by_index
    )


class _DictOutput(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.inner(x)}


def test_a_probabilities_and_logits_pair_explains_the_logits() -> None:
    """ultralytics' classifiers return (softmax, logits): the logits are explained, not the
    saturating probabilities; a pair that is not a softmax keeps the first element."""
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    assert select_output((logits.softmax(1), logits)) is not None
    assert torch.equal(select_output((logits.softmax(1), logits)), logits)
    other = torch.tensor([[0.1, 0.2, 0.7]])
    assert torch.equal(select_output((other, logits)), other)
    nested = ((logits, torch.zeros(1, 4)), {"extras": 1})  # a segment head's nesting
    assert torch.equal(select_output(nested), logits)


def test_a_detector_without_targets_is_explained_for_its_top_detection() -> None:
    import torchvision

    torch.manual_seed(0)
    detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, box_score_thresh=0.0
    ).eval()
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        top = detector(x)[0]["scores"][0]
    result = camkit.GradCAMElementWise(detector)(x)
    assert result.scores.item() == pytest.approx(top.item())
    with pytest.raises(ValueError, match=r"the model is a detector .*camkit\.Box"):
        camkit.GradCAM(detector)(x, targets=1)
