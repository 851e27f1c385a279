"""Writing output files safely, and naming files in messages.

Every output is written to a temporary name in its own folder and renamed into place, so a
reader (or an interrupted run) never sees a partial file, and the rename replaces what is at
the name rather than writing through it. An existing symbolic link at the name is refused, never
followed: a planted link cannot redirect camkit's output onto another file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class OutputError(OSError):
    """An output file could not be written; the message names the file and the reason."""


def shown(name: object) -> str:
    """`name` as text safe to print: control characters (terminal escapes) are escaped.

    Examples:
        >>> shown("evil\\x1b[2Jname.png")
        'evil\\\\x1b[2Jname.png'
    """
    text = str(name)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def write_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` by calling `write(handle)` on a temporary file, then rename it into place.

    Raises `OutputError` when `path` is a symbolic link, or when writing fails (disk full, no
    permission); no temporary file is left behind in either case.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     target = Path(folder) / "a.txt"
        ...     write_file(target, lambda handle: handle.write(b"done"))
        ...     target.read_text(), sorted(p.name for p in Path(folder).iterdir())
        ('done', ['a.txt'])
    """
    if path.is_symlink():
        raise OutputError(f"{shown(path)} is a symbolic link: refused (remove it to write there)")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(temporary, flags, 0o666)  # the user's umask applies, as for open()
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            reason = error.strerror or str(error)
            raise OutputError(f"cannot write {shown(path)}: {reason}") from error
        raise


def write_text(path: Path, text: str) -> None:
    """`write_file` for text (UTF-8)."""
    data = text.encode()

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    write_file(path, write)


def check_output_folder(folder: Path) -> None:
    """Raise `OutputError` unless `folder` is, or can be made, a writable folder.

    Nothing is created: the first existing folder on the way up must be a writable folder.

    Examples:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as f:
        ...     check_output_folder(Path(f.name) / "out")
        Traceback (most recent call last):
        ...
        camkit.files.OutputError: ... is a file, not a folder: choose another output folder
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link
            raise OutputError(f"{shown(existing)} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"{shown(existing)} is a file, not a folder: choose another output folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{shown(existing)} is not writable: choose another output folder")
