"""Explain Hugging Face image classifiers: the output's .logits are found, keyword inputs work.

Run: python examples/hugging_face.py   (built from configs: random weights, nothing downloaded;
use from_pretrained(...) for a trained model).
"""

import torch
import transformers

import camkit

torch.manual_seed(0)
vit = transformers.ViTForImageClassification(
    transformers.ViTConfig(
        image_size=64,
        patch_size=16,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=5,
    )
).eval()
convnext = transformers.ConvNextForImageClassification(
    transformers.ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=5)
).eval()
pixel_values = torch.rand(2, 3, 64, 64)

for name, model in (("ViT", vit), ("ConvNeXt", convnext)):
    # As the model is called by Hugging Face code: keyword inputs, passed on as they are.
    result = camkit.GradCAMElementWise(model)({"pixel_values": pixel_values})
    print(f"{name:9s} layer {result.layers[0]:32s} maps {tuple(result.maps.shape)}")
