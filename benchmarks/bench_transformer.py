"""Speed of the transformer methods (LeGrad, GAE, attention rollout) against their limits, and
LeGrad against torchcam's.

Usage:
    python -m pip install -e ".[bench]"
    python benchmarks/bench_transformer.py [--rounds 5] [--batch 2]

torchvision's vit_b_16 (random weights, the head made non-zero), 224 x 224, and the bundled
ViT (96 x 96, batch 16); one process, rounds interleaved, median. The limits, as plain PyTorch:

- rollout: one forward pass (inference mode);
- LeGrad and GAE: one forward pass and one backward pass, from the predicted class's score down
  to the first block's input (what gradients with respect to every block's attention need).
  The forward pass is the model's own, on its own (fused) attention kernel.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch
import torchvision
from common import goal, interleaved
from torch import Tensor, nn

import camkit

Run = Callable[[], object]


def forward_limit(model: nn.Module, x: Tensor) -> Run:
    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def backward_limit(model: nn.Module, x: Tensor, first_block: nn.Module) -> Run:
    """Forward, then the gradient of the top score to the first block's input."""

    def run() -> object:
        kept: list[Tensor] = []

        def leaf(_m: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            kept.append(args[0].detach().requires_grad_())
            return (kept[0], *args[1:])

        handle = first_block.register_forward_pre_hook(leaf)
        try:
            with torch.no_grad():
                torch.set_grad_enabled(True)  # as camkit does: record from the first block on
                out = model(x)
        finally:
            handle.remove()
        return torch.autograd.grad(out.gather(1, out.argmax(1, keepdim=True)).sum(), kept[0])

    return run


def ours(method: str, model: nn.Module, x: Tensor) -> Run:
    explainer = camkit.METHODS[method](model)
    return lambda: explainer(x)


def torchcam_legrad(model: nn.Module, x: Tensor) -> Run:
    from torchcam.methods import LeGrad

    def head(tokens: Tensor) -> Tensor:
        return model.heads(model.encoder.ln(tokens)[:, 0])

    def run() -> object:
        with LeGrad(model, list(model.encoder.layers), score_projection=head) as extractor:
            out = model(x)
            return extractor(out.argmax(dim=1).tolist(), out)

    return run


def table(title: str, runs: dict[str, Run], rounds: int) -> dict[str, float]:
    seconds = interleaved(runs, rounds)
    print(f"\n### {title}\n\n| run | median s | x its limit |\n|---|---|---|")
    limits = {"forward": seconds[next(iter(runs))], "backward": seconds[list(runs)[1]]}
    for name, value in seconds.items():
        limit = limits["forward"] if "rollout" in name else limits["backward"]
        ratio = "" if name.startswith("limit") else f"{value / limit:.2f}"
        print(f"| {name} | {value:.4f} | {ratio} |")
    return {
        name: value / (limits["forward"] if "rollout" in name else limits["backward"])
        for name, value in seconds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore", camkit.CamkitWarning)
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16().eval()
    nn.init.normal_(vit.heads.head.weight, std=0.01)  # torchvision initialises it to zero
    x = torch.rand(args.batch, 3, 224, 224)
    first = vit.encoder.layers[0]
    ratios = table(
        f"torchvision vit_b_16, batch {args.batch}, 224 x 224 ({torch.get_num_threads()} threads)",
        {
            "limit: one forward pass": forward_limit(vit, x),
            "limit: forward + backward to the first block": backward_limit(vit, x, first),
            "camkit rollout": ours("rollout", vit, x),
            "camkit LeGrad": ours("legrad", vit, x),
            "camkit GAE": ours("gae", vit, x),
            "camkit Grad-CAM (last block's norm)": ours("gradcam", vit, x),
            "torchcam LeGrad": torchcam_legrad(vit, x),
        },
        args.rounds,
    )
    small = camkit.models.load_vit_model()
    y = torch.rand(16, 3, 96, 96)
    small_first = small.blocks[0]
    table(
        "bundled ViT, batch 16, 96 x 96",
        {
            "limit: one forward pass": forward_limit(small, y),
            "limit: forward + backward to the first block": backward_limit(small, y, small_first),
            "camkit rollout": ours("rollout", small, y),
            "camkit LeGrad": ours("legrad", small, y),
            "camkit GAE": ours("gae", small, y),
        },
        args.rounds,
    )
    print()
    goal("vit_b_16: LeGrad / its limit", ratios["camkit LeGrad"], 1.3)
    goal("vit_b_16: GAE / its limit", ratios["camkit GAE"], 1.3)
    goal("vit_b_16: rollout / one forward pass", ratios["camkit rollout"], 1.3)
    speedup = ratios["torchcam LeGrad"] / ratios["camkit LeGrad"]
    goal("vit_b_16: torchcam LeGrad / camkit LeGrad", speedup, 1.0, at_least=True)


if __name__ == "__main__":
    main()
