"""explain_batches: the dataset job as a Python call (what `camkit explain` runs on)."""

from __future__ import annotations

import pytest
import torch

import camkit
from camkit.stream import Unreadable, explain_batches
from helpers.nets import gap_net


def test_batches_are_grouped_by_size_and_equal_the_library_call() -> None:
    model = gap_net()
    images = [torch.rand(3, 12, 10) for _ in range(5)] + [torch.rand(3, 8, 8)] * 2
    images.insert(4, torch.rand(3, 8, 8))
    seen = list(explain_batches(model, images, ["gradcam", "cam"], batch_size=3))
    # Chunks of 3 consecutive inputs, each split by size (never joined across chunks: a batch
    # depends only on its chunk, wherever the chunk is explained).
    assert [len(b.items) for b in seen] == [3, 2, 1, 2]
    assert [tuple(b.inputs.shape[2:]) for b in seen] == [(12, 10), (12, 10), (8, 8), (8, 8)]
    first = seen[0]
    expected = camkit.GradCAM(model)(torch.stack(images[:2]))
    result, row = first.results[1]["gradcam"]
    torch.testing.assert_close(result.maps[row], expected.maps[1])


def test_metadata_rides_along_and_unreadable_inputs_are_reported() -> None:
    items = [{"input": torch.rand(3, 12, 10), "name": f"img{i}"} for i in range(3)]
    items.insert(1, Unreadable("broken.png", "not a readable image"))
    errors = []

    def record(item, method, error):
        errors.append((item, method, str(error)))

    seen = list(explain_batches(gap_net(), items, ["gradcam"], batch_size=4, on_error=record))
    assert [item["name"] for b in seen for item in b.items] == ["img0", "img1", "img2"]
    assert errors == [("broken.png", "read", "not a readable image")]
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        list(explain_batches(gap_net(), items, ["gradcam"]))  # no on_error: raised


def test_a_failure_inside_a_batch_is_retried_input_by_input() -> None:
    real = camkit.GradCAM(gap_net())

    def fails_on_bright(x, targets):
        if bool((x.flatten(1).mean(1) > 0.9).any()):
            raise ValueError("too bright")
        return real(x, targets)

    images = [torch.full((3, 8, 8), v) for v in (0.2, 0.95, 0.4)]
    errors = []

    def record(item, method, error):
        errors.append((float(item.mean()), method, str(error)))

    explainers = {"gradcam": fails_on_bright}
    (batch,) = explain_batches(gap_net(), images, explainers, batch_size=3, on_error=record)
    assert [set(r) for r in batch.results] == [{"gradcam"}, set(), {"gradcam"}]
    assert errors == [(pytest.approx(0.95), "gradcam", "too bright")]
    alone = real(images[2][None]).maps[0]
    result, row = batch.results[2]["gradcam"]
    torch.testing.assert_close(result.maps[row], alone)


def test_worker_processes_read_the_dataset() -> None:
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, index):
            return torch.full((3, 12, 10), index / 10.0), index

    seen = list(explain_batches(gap_net(), Noise(), ["gradcam"], batch_size=4, num_workers=2))
    assert [item[1] for b in seen for item in b.items] == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(explain_batches(gap_net(), Noise(), ["gradcam"], batch_size=0))
