"""camkit.integrations: overlays logged to TensorBoard, wandb (offline) and from a Lightning run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camkit
from camkit.integrations import log_tensorboard, log_wandb, map_logger, overlays
from camkit.overlay import to_pil


@pytest.fixture(scope="module")
def explained():
    net = camkit.models.example_net()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return x, camkit.GradCAM(net)(x)


def _images_in(folder, tag: str) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0})
    events.Reload()
    return events.Images(tag) if tag in events.Tags()["images"] else []


def test_overlays_blend_the_colour_map_into_the_pictures(explained) -> None:
    x, result = explained
    torch.testing.assert_close(overlays(x, result, alpha=0.0), x)
    heat = overlays(torch.zeros_like(x), result, alpha=1.0, colormap="gray")
    torch.testing.assert_close(heat[:, 0], result.maps[:, 0])  # gray: the map itself
    with pytest.raises(ValueError, match="do not match pictures"):
        overlays(x[:2], result)


def test_tensorboard_gets_one_grid_per_call(explained, tmp_path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    x, result = explained
    with SummaryWriter(tmp_path) as writer:
        log_tensorboard(writer, "maps/gradcam", x, result, step=3)
    logged = _images_in(tmp_path, "maps/gradcam")
    assert [image.step for image in logged] == [3]
    assert logged[0].width > 16
    assert logged[0].height == 16


def test_wandb_offline_run_gets_the_images(explained, tmp_path, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    x, result = explained
    run = wandb.init(mode="offline", dir=str(tmp_path), project="camkit-test")
    try:
        log_wandb(run, "maps", x, result, step=1, captions=["a", "b", "c"])
        media = Path(run.dir) / "media" / "images"
    finally:
        run.finish()
    saved = sorted(media.glob("maps_*.png"))
    assert len(saved) == 3
    expected = {tuple(np.asarray(to_pil(o)).ravel()) for o in overlays(x, result)}
    assert {tuple(np.asarray(Image.open(p).convert("RGB")).ravel()) for p in saved} == expected


def test_lightning_callback_logs_a_fixed_batch_every_n_epochs(tmp_path) -> None:
    lightning = pytest.importorskip("lightning")
    from lightning.pytorch.loggers import TensorBoardLogger

    class Classifier(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = camkit.models.example_net(classes=3).train()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _index):
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.rand(16, 3, 16, 16, generator=generator),
        torch.randint(0, 3, (16,), generator=generator),
    )
    callback = map_logger(
        torch.rand(4, 3, 16, 16, generator=generator), methods=["gradcam", "gradcam++"], every=2
    )
    trainer = lightning.Trainer(
        max_epochs=4,
        logger=TensorBoardLogger(tmp_path, name="run"),
        callbacks=[callback],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
        log_every_n_steps=1,
    )
    model = Classifier()
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=8))
    assert callback.logged == [(1, "gradcam"), (1, "gradcam++"), (3, "gradcam"), (3, "gradcam++")]
    assert model.training  # left in the mode Lightning had it in
    folder = next((tmp_path / "run").iterdir())
    assert [i.step for i in _images_in(folder, "camkit/gradcam")] == [4, 8]  # 2 steps per epoch
    with pytest.raises(ValueError, match="unknown method 'gradcm'"):
        map_logger(torch.rand(1, 3, 8, 8), methods=["gradcm"])
