"""What this machine allows a job: reader processes, memory (a container's limit included),
and whether a Ray address answers: asked before any work, so a job fails in a second rather
than after minutes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from camkit.errors import UsageError


def default_workers() -> int:
    """Reader processes: one core of every two, at most 4, none on one core."""
    return min(4, (os.cpu_count() or 1) // 2)


RAY_PROBE_SECONDS = 5.0
"""How long a Ray address given as HOST:PORT may take to answer before it is said not to."""


def check_reachable(address: str, name: str = "ray") -> None:
    """A usage error, within `RAY_PROBE_SECONDS`, when `address` names a host and port where
    nothing answers (Ray itself would keep retrying for minutes). Other forms ("", "auto",
    "local") are Ray's to resolve.

    Examples:
        >>> check_reachable("127.0.0.1:1", "--ray")
        Traceback (most recent call last):
        ...
        camkit.errors.UsageError: --ray 127.0.0.1:1: no Ray cluster answers there (...); ...
    """
    where = (address or os.environ.get("RAY_ADDRESS", "")).removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), RAY_PROBE_SECONDS):
            return
    except OSError as error:
        why = (
            f"no answer in {RAY_PROBE_SECONDS:.0f} s"
            if isinstance(error, TimeoutError)
            else (error.strerror or str(error)).lower()
        )
    client = address.startswith("ray://")
    raise UsageError(
        f"{name} {address}: no Ray cluster answers there ({why}); check that "
        "`ray start --head` runs on that machine and "
        f"that the port is its {'Ray Client port (10001)' if client else 'GCS port (6379)'}, "
        "or leave out the address to start a local cluster"
    )


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def check_memory(what: str, images: int, side: int) -> None:
    """A usage error when `images` float32 RGB inputs of `side` x `side` pixels, with the
    copies a job keeps of each (picture, input, maps: about four), would fill more than half of
    this machine's memory: found now, not as a crash after minutes of work."""
    need = images * side * side * 3 * 4 * 4
    have = machine_memory()
    if need > have // 2:
        raise UsageError(
            f"{what}: about {need / 2**30:.1f} GiB of images at once, over half of this "
            f"machine's {have / 2**30:.1f} GiB: choose smaller values"
        )
