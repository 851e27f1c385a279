"""A tiny Hugging Face CLIP with random weights and a real tokenizer, saved as users save one
(``save_pretrained``): what the command and the app load offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

WORDS = ["a</w>", "photo</w>", "of</w>", "dog</w>", "cat</w>", "red</w>", "car</w>"]


def tiny_clip(folder: Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer), both also saved into `folder`. Words outside the tiny
    vocabulary become the tokenizer's unknown token."""
    import transformers

    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": 64,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1} | {w: i + 2 for i, w in enumerate(WORDS)}
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer
