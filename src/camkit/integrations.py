"""Maps in the tools people train with: TensorBoard, Weights & Biases, and a Lightning callback.

Each logger takes the pictures shown (B, 3, H, W) in [0, 1] and an `Explanation` of the same
batch, and logs one overlay per image (the first target). Nothing here imports TensorBoard,
wandb or Lightning until it is used: they are the user's dependencies, not camkit's.

Examples:
    >>> import torch, camkit
    >>> from camkit.integrations import overlays
    >>> net = camkit.models.example_net()
    >>> x = torch.rand(2, 3, 16, 16)
    >>> overlays(x, camkit.GradCAM(net)(x)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from camkit.explanation import Explanation
from camkit.methods import method_class
from camkit.overlay import colourise


def overlays(
    pictures: Tensor, explanation: Explanation, *, alpha: float = 0.5, colormap: str = "jet"
) -> Tensor:
    """(B, 3, H, W) overlays in [0, 1] of each picture's first map, on the pictures' device."""
    if pictures.dim() != 4 or pictures.shape[1] != 3:
        raise ValueError(f"pictures must be (B, 3, H, W) in [0, 1], got {tuple(pictures.shape)}")
    maps = explanation.maps[:, 0]
    if maps.shape[0] != pictures.shape[0] or maps.shape[1:] != pictures.shape[2:]:
        raise ValueError(
            f"maps {tuple(maps.shape)} do not match pictures {tuple(pictures.shape)}: explain "
            "the same batch"
        )
    heat = torch.stack([colourise(m, colormap) for m in maps.float()]).to(pictures)
    return ((1 - alpha) * pictures.clamp(0, 1) + alpha * heat).clamp(0, 1)


def log_tensorboard(
    writer: Any,
    tag: str,
    pictures: Tensor,
    explanation: Explanation,
    step: int,
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> None:
    """Log the overlays as one image grid to a `torch.utils.tensorboard.SummaryWriter`."""
    writer.add_images(
        tag,
        overlays(pictures, explanation, alpha=alpha, colormap=colormap).cpu(),
        step,
        dataformats="NCHW",
    )


def log_wandb(
    run: Any,
    key: str,
    pictures: Tensor,
    explanation: Explanation,
    step: int,
    *,
    captions: Sequence[str] | None = None,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> None:
    """Log the overlays as a list of `wandb.Image` under `key` to a wandb run."""
    import wandb

    shown = overlays(pictures, explanation, alpha=alpha, colormap=colormap)
    images = [
        wandb.Image(
            (o.permute(1, 2, 0) * 255).round().byte().cpu().numpy(),
            caption=None if captions is None else captions[i],
        )
        for i, o in enumerate(shown)
    ]
    run.log({key: images}, step=step)


def _lightning_callback_base() -> type:
    try:
        from lightning.pytorch import Callback
    except ImportError:  # the older package name
        from pytorch_lightning import Callback  # type: ignore[assignment]  # same class, old name
    return Callback


def _log_with(logger: Any) -> Callable[[str, Tensor, Explanation, int], None] | None:
    """How to log overlays to a Lightning logger: its TensorBoard writer or its wandb run."""
    experiment = getattr(logger, "experiment", None)
    if experiment is None:
        return None
    if hasattr(experiment, "add_images"):
        return lambda tag, pictures, result, step: log_tensorboard(
            experiment, tag, pictures, result, step
        )
    if hasattr(experiment, "log") and type(logger).__name__ == "WandbLogger":
        return lambda tag, pictures, result, step: log_wandb(
            experiment, tag, pictures, result, step
        )
    return None


def map_logger(
    batch: Tensor,
    *,
    methods: Sequence[str] = ("gradcam",),
    every: int = 1,
    layer: Any = None,
    pictures: Tensor | None = None,
    tag: str = "camkit",
) -> Any:
    """A Lightning callback that explains the same `batch` every `every` epochs and logs one
    overlay grid per method to the trainer's loggers (TensorBoard or wandb).

    `pictures`: what to draw the maps on, (B, 3, H, W) in [0, 1] (default: `batch` itself,
    which suits inputs in [0, 1]; give the un-normalised pictures otherwise). The model is left
    in the mode it was in.

    Examples:
        >>> import torch
        >>> callback = map_logger(torch.rand(4, 3, 32, 32), methods=["gradcam", "gradcam++"],
        ...                       every=5)
        >>> type(callback).__name__, callback.every
        ('MapLogger', 5)
    """
    if every < 1:
        raise ValueError(f"every must be at least 1 epoch, got {every}")
    for method in methods:
        method_class(method)
    base = _lightning_callback_base()

    class MapLogger(base):  # type: ignore[valid-type, misc]  # found at run time
        """Explains a fixed batch at the end of every `every`-th training epoch."""

        def __init__(self) -> None:
            super().__init__()
            self.batch, self.every, self.methods = batch, every, list(methods)
            self.layer, self.tag = layer, tag
            self.pictures = batch if pictures is None else pictures
            self.logged: list[tuple[int, str]] = []  # (epoch, method) of each logged grid

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            epoch = trainer.current_epoch
            if (epoch + 1) % self.every:
                return
            x = self.batch.to(module.device)
            was_training = module.training
            module.eval()
            try:
                for method in self.methods:
                    result = method_class(method)(module, layer=self.layer)(x)
                    for logger in trainer.loggers:
                        log = _log_with(logger)
                        if log is not None:
                            log(
                                f"{self.tag}/{method}",
                                self.pictures.to(x.device),
                                result,
                                trainer.global_step,
                            )
                    self.logged.append((epoch, method))
            finally:
                module.train(was_training)

    return MapLogger()
