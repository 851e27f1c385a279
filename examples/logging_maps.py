"""Log maps while training: TensorBoard, Weights & Biases (offline here) and a Lightning callback.

Needs: pip install tensorboard wandb lightning. Run: python examples/logging_maps.py
"""

import os
import tempfile
from pathlib import Path

import lightning
import torch
import wandb
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter

import camkit
from camkit.integrations import log_tensorboard, log_wandb, map_logger

torch.manual_seed(0)  # the same random data and training every run
folder = Path(tempfile.mkdtemp(prefix="camkit-logging-"))
net = camkit.models.example_net(classes=3)
x = torch.rand(4, 3, 32, 32)
result = camkit.GradCAM(net)(x)

# 1. TensorBoard: one grid of overlays per call.
with SummaryWriter(folder / "tensorboard") as writer:
    log_tensorboard(writer, "maps/gradcam", x, result, step=0)
print("tensorboard: logged maps/gradcam")

# 2. Weights & Biases: a list of images under one key (offline: no account, no network).
os.environ["WANDB_SILENT"] = "true"
run = wandb.init(mode="offline", dir=str(folder), project="camkit-example")
log_wandb(run, "maps", x, result, step=0)
run.finish()
print("wandb: logged maps (offline run)")


# 3. Lightning: explain a fixed batch every 2 epochs, logged to the trainer's loggers.
class Classifier(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = camkit.models.example_net(classes=3).train()  # it comes in eval mode

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _index):
        inputs, labels = batch
        return torch.nn.functional.cross_entropy(self(inputs), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


data = torch.utils.data.TensorDataset(torch.rand(16, 3, 32, 32), torch.randint(0, 3, (16,)))
callback = map_logger(x, methods=["gradcam", "gradcam++"], every=2)
trainer = lightning.Trainer(
    max_epochs=4,
    logger=TensorBoardLogger(folder, name="lightning"),
    callbacks=[callback],
    enable_progress_bar=False,
    enable_checkpointing=False,
    enable_model_summary=False,
    accelerator="cpu",
    log_every_n_steps=1,
)
trainer.fit(Classifier(), torch.utils.data.DataLoader(data, batch_size=8))
epochs = sorted({epoch for epoch, _ in callback.logged})
print(f"lightning: logged {len(callback.logged)} grids at epochs {epochs}")
