"""Cost of LRP and AttnLRP against one forward and one backward pass, and LRP against zennit.

Usage:
    python -m pip install -e ".[test]"
    python benchmarks/bench_relevance.py [--rounds 5] [--batch 2]

Both methods are one forward and one backward pass with rules in place of some gradients, so
their limit is the plain pass: forward, then the gradient of the top score down to where the
relevance is read (the input for LRP; the first block's input for AttnLRP). torchvision's
resnet18 and vit_b_16 (random weights, the ViT's head made non-zero; 224 x 224), the bundled
CNN and ViT (96 x 96, batch 16); one process, rounds interleaved, median.
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torchvision
from bench_family_more import input_limit
from bench_transformer import Run, backward_limit, ours
from common import goal, interleaved
from torch import Tensor, nn

import camkit


def zennit_lrp(model: nn.Module, x: Tensor) -> Run:
    """zennit's composite of the rules camkit's `lrp` uses, on the same model."""
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon, Gamma, Norm, Pass
    from zennit.types import Activation, AvgPool, Convolution, Linear

    composite = LayerMapComposite(
        layer_map=[
            (Activation, Pass()),
            (AvgPool, Norm()),
            (Convolution, Gamma(gamma=0.25)),
            (Linear, Epsilon(epsilon=1e-6)),
        ],
        canonizers=[SequentialMergeBatchNorm()],
    )

    def run() -> object:
        with Gradient(model=model, composite=composite) as attributor:
            out = model(x)
            start = torch.zeros_like(out).scatter(1, out.argmax(1, keepdim=True), 1.0)
            return attributor(x, start)

    return run


def table(title: str, runs: dict[str, Run], rounds: int) -> dict[str, float]:
    seconds = interleaved(runs, rounds)
    limit = seconds[next(iter(runs))]
    print(f"\n### {title}\n\n| run | median s | x the limit |\n|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.4f} | {value / limit:.2f} |")
    return {name: value / limit for name, value in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore", camkit.CamkitWarning)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    x = torch.rand(args.batch, 3, 224, 224)
    resnet = torchvision.models.resnet18().eval()
    cnn = table(
        f"torchvision resnet18, batch {args.batch}, 224 x 224 ({threads} threads)",
        {
            "limit: forward + backward to the input": input_limit(resnet, x),
            "camkit lrp": ours("lrp", resnet, x),
            "camkit Grad-CAM": ours("gradcam", resnet, x),
            "zennit, the same rules": zennit_lrp(resnet, x),
        },
        args.rounds,
    )
    vit = torchvision.models.vit_b_16().eval()
    nn.init.normal_(vit.heads.head.weight, std=0.01)  # torchvision initialises it to zero
    transformer = table(
        f"torchvision vit_b_16, batch {args.batch}, 224 x 224",
        {
            "limit: forward + backward to the first block": backward_limit(
                vit, x, vit.encoder.layers[0]
            ),
            "camkit attnlrp": ours("attnlrp", vit, x),
            "camkit GAE": ours("gae", vit, x),
        },
        args.rounds,
    )
    y = torch.rand(16, 3, 96, 96)
    small = camkit.models.load_shapes_model()
    table(
        "bundled CNN, batch 16, 96 x 96",
        {
            "limit: forward + backward to the input": input_limit(small, y),
            "camkit lrp": ours("lrp", small, y),
        },
        args.rounds,
    )
    small_vit = camkit.models.load_vit_model()
    table(
        "bundled ViT, batch 16, 96 x 96",
        {
            "limit: forward + backward to the first block": backward_limit(
                small_vit, y, small_vit.blocks[0]
            ),
            "camkit attnlrp": ours("attnlrp", small_vit, y),
        },
        args.rounds,
    )
    print()
    goal("resnet18: lrp / its limit", cnn["camkit lrp"], 2.0)
    goal(
        "resnet18: zennit / camkit lrp",
        cnn["zennit, the same rules"] / cnn["camkit lrp"],
        1.0,
        at_least=True,
    )
    goal("vit_b_16: attnlrp / its limit", transformer["camkit attnlrp"], 1.5)


if __name__ == "__main__":
    main()
