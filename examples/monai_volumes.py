"""Explain MONAI networks on 3-D volumes: a segmentation region and a classification.

Run: python examples/monai_volumes.py   (random weights: nothing is downloaded).
"""

import torch
from monai.networks.nets import DenseNet, UNet

import camkit

torch.manual_seed(0)
volumes = torch.rand(1, 1, 32, 48, 48)  # (B, C, D, H, W)

# A 3-D UNet: the region is a (D, H, W) mask (or (B, D, H, W), one per volume) at the output's
# resolution; the automatic layer is the bottleneck, and the map keeps the depth.
unet = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(8, 16, 32),
            strides=(2, 2)).eval()  # fmt: skip
mask = torch.zeros(32, 48, 48, dtype=torch.bool)
mask[8:24, 10:30, 10:30] = True
result = camkit.GradCAM(unet)(volumes, targets=camkit.Region(1, mask))
print("unet layer:", result.layers[0], "maps:", tuple(result.maps.shape))

# A 3-D classifier: the last feature map before global pooling, as MONAI's own GradCAM takes
# it (target_layers="class_layers.relu"); camkit's map is MONAI's with its normaliser, which
# maps the maximum to 0, turned the right way up (tests/test_model_zoo.py).
densenet = DenseNet(spatial_dims=3, in_channels=1, out_channels=2, init_features=8,
                    growth_rate=8, block_config=(2, 2, 2, 2)).eval()  # fmt: skip
volume = torch.rand(1, 1, 64, 64, 64)
for method in ("gradcam", "gradcam++", "scorecam"):
    result = camkit.explain(densenet, volume, method)
    print(f"densenet {method:9s} layer: {result.layers[0]}  maps: {tuple(result.maps.shape)}")
