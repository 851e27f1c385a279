"""Speed of the methods added in 0.3 against the passes their definitions need, and their peers.

Usage:
    python -m pip install -e ".[bench]"
    python benchmarks/bench_family_more.py [--rounds 3]

resnet18 (random weights), batch 4, 224 x 224, layer4 unless said; one process, rounds
interleaved, median. Each method's limit is what its definition needs, timed as plain PyTorch:

- one forward pass (class-agnostic rules, baselines);
- forward + `torch.autograd.grad` to layer4 (Grad-CAM's limit: counterfactual, Finer-CAM,
  Seg-Eigen-CAM), or to layer2 (RefineCAM's deepest layer);
- forward + gradient to layer4 with its graph + one Hessian-vector product (ShapleyCAM);
- forward + gradient to the input (guided backprop, FullGrad; goal 1.1x), plus Grad-CAM's limit
  for Guided Grad-CAM;
- SESS: Grad-CAM's limit on all its windows (3 scales here) as one batch;
- SS-CAM and IS-CAM (batch 1, 2 samples): 2 x 512 masked forward passes, batches of 64.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch
import torchvision
from common import goal, interleaved, layer4_limit
from torch import Tensor, nn

import camkit

Run = Callable[[], object]
Case = Callable[[nn.Module, Tensor], Run]


def forward_limit(model: nn.Module, x: Tensor) -> Run:
    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def layer_limit(name: str) -> Case:
    def build(model: nn.Module, x: Tensor) -> Run:
        def run() -> object:
            kept: list[Tensor] = []
            handle = model.get_submodule(name).register_forward_hook(lambda m, i, o: kept.append(o))
            out = model(x)
            handle.remove()
            score = out.gather(1, out.argmax(1, keepdim=True)).sum()
            return torch.autograd.grad(score, kept[0])

        return run

    return build


def hessian_limit(model: nn.Module, x: Tensor) -> Run:
    def run() -> object:
        kept: list[Tensor] = []
        handle = model.layer4.register_forward_hook(lambda m, i, o: kept.append(o))
        out = model(x)
        handle.remove()
        score = (out.gather(1, out.argmax(1, keepdim=True)) + out.log_softmax(1).amax(1)).sum()
        (g,) = torch.autograd.grad(score, kept[0], create_graph=True)
        return torch.autograd.grad(g, kept[0], grad_outputs=kept[0].detach())

    return run


def input_limit(model: nn.Module, x: Tensor) -> Run:
    def run() -> object:
        leaf = x.detach().requires_grad_()
        out = model(leaf)
        return torch.autograd.grad(out.gather(1, out.argmax(1, keepdim=True)).sum(), leaf)

    return run


def both_limits(model: nn.Module, x: Tensor) -> Run:
    first, second = input_limit(model, x), layer4_limit(model, x)
    return lambda: (first(), second())


def sess_windows(x: Tensor, scales: int = 3) -> Tensor:
    """The windows camkit's SESS explains for `x` (all images, all scales)."""
    sess = camkit.SESS(nn.Identity(), num_scales=scales)
    patches, _ = sess._patches(x, min(x.shape[2:]))
    return patches.flatten(0, 1)


def sess_limit(model: nn.Module, x: Tensor) -> Run:
    return layer4_limit(model, sess_windows(x))


def masked_limit(samples: int) -> Case:
    def build(model: nn.Module, x: Tensor) -> Run:
        chunk = x[:1].expand(64, *x.shape[1:]).contiguous()

        def run() -> object:
            with torch.inference_mode():
                return [model(chunk) for _ in range(samples * 512 // 64)]

        return run

    return build


def ours(method: str, layer: object = "layer4", **options: object) -> Case:
    def build(model: nn.Module, x: Tensor) -> Run:
        explainer = camkit.METHODS[method](model, layer=layer, **options)
        return lambda: explainer(x)

    return build


def grad_cam_lib(name: str, layers: tuple[str, ...] = ("layer4",), **options: object) -> Case:
    def build(model: nn.Module, x: Tensor) -> Run:
        import pytorch_grad_cam

        modules = [model.get_submodule(n) for n in layers]
        cam = getattr(pytorch_grad_cam, name)(model, modules, **options)
        return lambda: cam(x, None)

    return build


def grad_cam_guided(model: nn.Module, x: Tensor) -> Run:
    import pytorch_grad_cam

    guided = pytorch_grad_cam.GuidedBackpropReLUModel(model, device="cpu")
    return lambda: [guided(x[i : i + 1]) for i in range(len(x))]


def captum(name: str, *layer: str, **options: object) -> Case:
    def build(model: nn.Module, x: Tensor) -> Run:
        from captum import attr

        method = getattr(attr, name)(model, *[model.get_submodule(n) for n in layer])

        def run() -> object:
            with torch.no_grad():
                target = model(x).argmax(1)
            return method.attribute(x.clone(), target=target, **options)

        return run

    return build


def torchcam_lib(name: str, **options: object) -> Case:
    def build(model: nn.Module, x: Tensor) -> Run:
        from torchcam import methods

        def run() -> object:
            cls = getattr(methods, name)
            with cls(model, "layer4", input_shape=tuple(x.shape[1:]), **options) as extractor:
                out = model(x)
                return extractor(out.argmax(dim=1).tolist(), out)

        return run

    return build


# (case name, its limit) in tables; the first row of each table is its limit.
TABLES: dict[str, dict[str, Case]] = {
    "forward": {
        "limit: one forward pass": forward_limit,
        "camkit KPCA-CAM (sigmoid)": ours("kpcacam"),
        "camkit FEM": ours("fem"),
        "camkit DFF (5 concepts)": ours("dff"),
        "camkit RandomCAM": ours("randomcam"),
        "camkit Sobel": ours("sobel"),
        "grad-cam KPCA_CAM": grad_cam_lib("KPCA_CAM"),
        "grad-cam FEM": grad_cam_lib("FEM"),
        "grad-cam RandomCAM": grad_cam_lib("RandomCAM"),
    },
    "layer4": {
        "limit: forward + autograd.grad to layer4": layer4_limit,
        "camkit counterfactual Grad-CAM": ours("gradcam-counterfactual"),
        "camkit Finer-CAM": ours("finercam"),
        "camkit Seg-Eigen-CAM": ours("segeigencam"),
        "torchcam FinerCAM": torchcam_lib("FinerCAM"),
        "grad-cam SegEigenCAM": grad_cam_lib("SegEigenCAM"),
    },
    "hessian": {
        "limit: forward + gradient with graph + Hessian-vector product": hessian_limit,
        "camkit ShapleyCAM": ours("shapleycam"),
        "grad-cam ShapleyCAM": grad_cam_lib("ShapleyCAM"),
    },
    "layer2": {
        "limit: forward + autograd.grad to layer2": layer_limit("layer2"),
        "camkit RefineCAM (layer2-4)": ours("refinecam", layer=["layer2", "layer3", "layer4"]),
        "grad-cam RefineCAM (layer2-4)": grad_cam_lib("RefineCAM", ("layer2", "layer3", "layer4")),
    },
    "input": {
        "limit: forward + gradient to the input": input_limit,
        "camkit guided backprop": ours("guided-backprop"),
        "camkit FullGrad": ours("fullgrad"),
        "Captum GuidedBackprop": captum("GuidedBackprop"),
        "grad-cam GuidedBackpropReLUModel": grad_cam_guided,
        "grad-cam FullGrad": grad_cam_lib("FullGrad", ()),
    },
    "guided-gradcam": {
        "limit: gradient to the input + gradient to layer4": both_limits,
        "camkit Guided Grad-CAM": ours("guided-gradcam"),
        "Captum GuidedGradCam": captum("GuidedGradCam", "layer4"),
    },
    "sess": {
        "limit: Grad-CAM's on all windows (3 scales)": sess_limit,
        "camkit SESS (3 scales)": ours("sess", num_scales=3),
        "grad-cam SESS (3 scales)": grad_cam_lib("SESS", num_scales=3),
    },
}
MASKED_TABLES: dict[str, dict[str, Case]] = {
    "score": {
        "limit: 2 x 512 masked passes, batches of 64": masked_limit(2),
        "camkit SS-CAM (2 samples)": ours("sscam", samples=2),
        "camkit IS-CAM (2 samples)": ours("iscam", samples=2),
        "torchcam SSCAM (2 samples)": torchcam_lib("SSCAM", num_samples=2, batch_size=64),
        "torchcam ISCAM (2 samples)": torchcam_lib("ISCAM", num_samples=2, batch_size=64),
    },
}


def timed(cases: dict[str, Case], batch: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    model, x = torchvision.models.resnet18().eval(), torch.randn(batch, 3, 224, 224)
    return interleaved({name: build(model, x) for name, build in cases.items()}, rounds)


def table(medians: dict[str, float]) -> None:
    limit = next(iter(medians.values()))
    print("\n| case | median s | x limit |")
    print("|---|---:|---:|")
    for name, value in medians.items():
        print(f"| {name} | {value:.3f} | {value / limit:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    threads, version = torch.get_num_threads(), torch.__version__
    print(f"CPU, {threads} threads, torch {version}, median of {args.rounds} interleaved rounds")
    print("\nresnet18, batch 4, 224 x 224:")
    results = {}
    for name, cases in TABLES.items():
        results[name] = timed(cases, 4, args.rounds)
        table(results[name])
    print("\nresnet18, batch 1, 224 x 224, layer4 (512 channels):")
    for cases in MASKED_TABLES.values():
        table(timed(cases, 1, args.rounds))
    inputs = results["input"]
    limit = inputs["limit: forward + gradient to the input"]
    print()
    goal("guided backprop / its limit", inputs["camkit guided backprop"] / limit, 1.1)
    goal("FullGrad / its limit", inputs["camkit FullGrad"] / limit, 1.1)


if __name__ == "__main__":
    main()
