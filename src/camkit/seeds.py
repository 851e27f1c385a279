"""Seeding, written once: every random draw of camkit comes from a seed the caller gave."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator of its own on `device`, seeded: draws from it leave torch's global random
    stream alone.

    Examples:
        >>> torch.rand(2, generator=generator(0)).equal(torch.rand(2, generator=generator(0)))
        True
    """
    return torch.Generator(device=device).manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int | None, *devices: torch.device) -> Iterator[None]:
    """torch's global random streams (the CPU's and those of the CUDA `devices` given) seeded
    with `seed` for the block and restored after it, so the caller's stream is left as it was;
    None: the block draws from the caller's stream.

    For code that draws from the global stream it does not own (a model's dropout, a method's
    noise), where a generator cannot be passed.

    Examples:
        >>> with seeded(3):
        ...     first = torch.rand(2)
        >>> with seeded(3):
        ...     bool(torch.rand(2).equal(first))
        True
    """
    cuda = sorted({d.index or 0 for d in devices if d.type == "cuda"})
    with torch.random.fork_rng(devices=cuda, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def batch_seed(seed: int, position: int) -> int:
    """The seed of the batch that starts at dataset index `position`: a batch's draws depend
    on the run's seed and its place only, not on the batches before it or the process that
    measures it.

    Examples:
        >>> batch_seed(0, 50), batch_seed(1, 0)
        (50, 1000003)
    """
    return seed * 1_000_003 + position
