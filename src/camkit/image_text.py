"""Image-text models (CLIP) explained like classifiers whose classes are text prompts.

`PromptScores` wraps a Hugging Face ``CLIPModel`` (or any model with ``get_image_features``
and ``get_text_features``) or an open_clip model (``encode_image``/``encode_text``): its
output for a batch of images is CLIP's ``logits_per_image``, the scaled cosine similarity of
each image with each prompt, (B, prompts). The prompts are encoded once, when it is built, so
every method explains all prompts of an image from one pass of the vision tower (one map per
prompt: ``targets=TopK(len(prompts))`` or a (B, K) tensor of prompt indices), and finds the
vision tower's layers and blocks by itself (the text tower never runs in a call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

Tokenizer = Callable[..., Any]


def _tensor(value: object, what: str) -> Tensor:
    """A features tensor from what the model returned (a tensor, or an output whose
    ``pooler_output`` or ``image_embeds``/``text_embeds`` holds it)."""
    if isinstance(value, Tensor):
        return value
    for name in ("pooler_output", "image_embeds", "text_embeds"):
        found = getattr(value, name, None)
        if isinstance(found, Tensor):
            return found
    raise TypeError(f"the model's {what} features are a {type(value).__name__}, not a tensor")


def is_image_text(model: nn.Module) -> bool:
    """Whether `model` encodes images and texts apart (Hugging Face CLIP, open_clip).

    Examples:
        >>> is_image_text(torch.nn.Linear(2, 2))
        False
    """
    hugging_face = hasattr(model, "get_image_features") and hasattr(model, "get_text_features")
    return hugging_face or (hasattr(model, "encode_image") and hasattr(model, "encode_text"))


class PromptScores(nn.Module):
    """`model` as a classifier of images into `prompts`: (B, prompts) scaled cosine
    similarities, CLIP's ``logits_per_image`` (SigLIP's too: its learned bias added; each
    prompt's probability is then its own sigmoid, `probabilities`).

    Args:
        model: a Hugging Face ``CLIPModel`` (or a model with ``get_image_features`` and
            ``get_text_features``) or an open_clip ``CLIP``.
        prompts: the texts, one class each.
        tokenizer: turns the prompts into the text tower's input: a Hugging Face tokenizer
            (called with ``padding=True, return_tensors="pt"``) or open_clip's (called on the
            list). None for open_clip: its own BPE tokenizer, at the model's context length.

    Raises `ValueError` for a model that is not image-text, no prompts, or a Hugging Face
    model without its tokenizer.

    Examples:
        >>> import camkit
        >>> class Toy(nn.Module):  # stands in for CLIP: images and texts to 4 numbers
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = nn.Conv2d(3, 4, 3)
        ...     def encode_image(self, x): return self.conv(x).mean(dim=(2, 3))
        ...     def encode_text(self, ids): return torch.eye(4)[ids[:, 0]]
        >>> tokenizer = lambda texts: torch.tensor([[0], [1]])  # "red" -> 0, "green" -> 1
        >>> scores = PromptScores(Toy().eval(), ["red", "green"], tokenizer)
        >>> scores(torch.rand(2, 3, 8, 8)).shape, scores.classes
        (torch.Size([2, 2]), ('red', 'green'))
        >>> camkit.explain(scores, torch.rand(1, 3, 8, 8), "gradcam",
        ...                targets=camkit.TopK(2)).maps.shape  # one map per prompt
        torch.Size([1, 2, 8, 8])
    """

    text: Tensor

    def __init__(
        self, model: nn.Module, prompts: Sequence[str], tokenizer: Tokenizer | None = None
    ) -> None:
        super().__init__()
        if not is_image_text(model):
            raise ValueError(
                f"{type(model).__name__} does not encode images and texts apart: prompts need "
                "an image-text model (a Hugging Face CLIPModel or an open_clip model)"
            )
        if (
            isinstance(prompts, str)
            or not prompts
            or not all(isinstance(p, str) and p.strip() for p in prompts)
        ):
            raise ValueError(
                f"prompts must be a non-empty list of non-blank texts, got {prompts!r}"
            )
        self.model = model
        self.classes: tuple[str, ...] = tuple(prompts)
        with torch.no_grad():
            text = self._encode_text(list(prompts), tokenizer)
        self.register_buffer("text", F.normalize(text.float(), dim=-1), persistent=False)
        self.train(model.training)  # an eval-mode model makes an eval-mode classifier

    def _encode_text(self, prompts: list[str], tokenizer: Tokenizer | None) -> Tensor:
        device = next(self.model.parameters(), torch.empty(0)).device
        model: Any = self.model  # its encoders, found by name
        if hasattr(model, "get_text_features"):
            if tokenizer is None:
                raise ValueError(
                    "a Hugging Face model needs its tokenizer: PromptScores(model, prompts, "
                    "tokenizer=AutoTokenizer.from_pretrained(...))"
                )
            tokens = tokenizer(prompts, padding=True, return_tensors="pt")
            tokens = {k: v.to(device) for k, v in tokens.items() if isinstance(v, Tensor)}
            return _tensor(model.get_text_features(**tokens), "text")
        if tokenizer is None:
            from open_clip.tokenizer import SimpleTokenizer

            length = int(getattr(self.model, "context_length", 77))
            tokenizer = SimpleTokenizer(context_length=length)
        return _tensor(model.encode_text(tokenizer(prompts).to(device)), "text")

    def scale(self) -> Tensor:
        """CLIP's learned temperature, exp(logit_scale) (1 for a model without one)."""
        logit_scale = getattr(self.model, "logit_scale", None)
        if isinstance(logit_scale, Tensor):
            return logit_scale.detach().exp()
        return torch.ones((), device=self.text.device)

    def bias(self) -> Tensor:
        """SigLIP's learned bias, logit_bias (0 for CLIP, which has none)."""
        logit_bias = getattr(self.model, "logit_bias", None)
        if isinstance(logit_bias, Tensor):
            return logit_bias.detach().float()
        return torch.zeros((), device=self.text.device)

    @property
    def sigmoid(self) -> bool:
        """Whether each prompt is scored on its own (SigLIP, trained with a sigmoid per
        image-text pair) rather than against the other prompts (CLIP's softmax)."""
        return isinstance(getattr(self.model, "logit_bias", None), Tensor)

    def probabilities(self, scores: Tensor) -> Tensor:
        """The model's own probabilities for its (..., prompts) scores: a sigmoid per prompt for
        SigLIP, a softmax across the prompts for CLIP.

        Examples:
            >>> class Toy(nn.Module):
            ...     def encode_image(self, x): return x.flatten(1)
            ...     def encode_text(self, ids): return torch.eye(2)[ids[:, 0]]
            >>> prompts = PromptScores(Toy(), ["a", "b"], lambda t: torch.tensor([[0], [1]]))
            >>> prompts.probabilities(torch.tensor([0.0, 0.0])).tolist()  # CLIP: a softmax
            [0.5, 0.5]
        """
        return scores.sigmoid() if self.sigmoid else scores.softmax(dim=-1)

    @override
    def forward(self, images: Tensor) -> Tensor:
        model: Any = self.model
        if hasattr(model, "get_image_features"):
            features = _tensor(model.get_image_features(pixel_values=images), "image")
        else:
            features = _tensor(model.encode_image(images), "image")
        image = F.normalize(features.float(), dim=-1)
        scores: Tensor = self.scale() * image @ self.text.T + self.bias()
        return scores
