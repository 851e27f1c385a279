"""Writing output files safely, and naming files in messages.

Every output is written to a temporary name in its own folder and renamed into place, so a
reader (or an interrupted run) never sees a partial file, and the rename replaces what is at
the name rather than writing through it. An existing symbolic link at the name is refused, never
followed: a planted link cannot redirect camkit's output onto another file.

An `OutputFolder` replaces only files that camkit wrote there: it keeps the names it wrote in a
ledger inside the folder (`.camkit-files`), and refuses to write over any other file (a user's
own `x_gradcam.png`, an input of the run, a file from another tool).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

LEDGER = ".camkit-files"
"""The file in an output folder that lists, one JSON string a line, the names camkit wrote."""


class OutputError(OSError):
    """An output file could not be written; the message names the file and the reason."""


def shown(name: object) -> str:
    r"""`name` as text safe to print: control characters (terminal escapes) are escaped.

    Examples:
        >>> shown("evil\x1b[2Jname.png")
        'evil\\x1b[2Jname.png'
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


class OutputFolder:
    """An output folder that camkit writes into without ever replacing a file it did not write.

    A name is camkit's once it is in the folder's ledger (`LEDGER`): it is added there before
    the file is first written, so a rerun (or `--skip-existing`) replaces camkit's own outputs
    (also one cut short or edited since: the name is camkit's) and nothing else. Writing a name
    that is taken by a file camkit did not write, or by one of `inputs`, raises `OutputError`.
    Names may hold sub-folders (``"a/img_gradcam.png"``); a sub-folder that is a symbolic link
    is refused. Safe to share between threads.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as root:
        ...     (Path(root) / "x_gradcam.png").write_bytes(b"the user's own file")
        ...     out = OutputFolder(Path(root))
        ...     out.write_text("a/x.json", "{}")  # new: written, and recorded as camkit's
        ...     out.write_text("a/x.json", "{ }")  # camkit's own: replaced
        ...     try:
        ...         out.write_text("x_gradcam.png", "overlay")
        ...     except OutputError as error:
        ...         print(str(error).split(": ", 1)[1])
        19
        camkit did not write it, so it is not replaced (move it, or choose another output folder)
    """

    def __init__(self, root: Path, inputs: Iterable[Path] = ()) -> None:
        self.root = root
        self.inputs = {identity(p) for p in inputs}
        self.owned = read_ledger(root)
        self._folders: set[Path] = set()  # made (or found) and checked already
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        """Where `name` is written, once it is free for camkit (see `claim`)."""
        return self.root / name

    def claim(self, name: str) -> Path:
        """The path of `name`, made free for camkit: its folders made, the name recorded in the
        ledger. Raises `OutputError` when a file camkit did not write is there, or an input."""
        path = self.root / name
        with self._lock:
            self._make_folders(path.parent)
            if identity(path) in self.inputs:
                raise OutputError(
                    f"{shown(path)} is an input of this run: it is not replaced (choose another "
                    "output folder)"
                )
            if path.is_symlink():
                raise OutputError(
                    f"{shown(path)} is a symbolic link: refused (remove it to write there)"
                )
            if name not in self.owned:
                if path.exists():
                    raise OutputError(
                        f"{shown(path)}: camkit did not write it, so it is not replaced (move "
                        "it, or choose another output folder)"
                    )
                self._record(name)
        return path

    def taken(self, names: Iterable[str]) -> list[str]:
        """The names among `names` where a file is that camkit did not write (checked before
        a long job, so that it does not end in a refusal)."""
        return [n for n in names if n not in self.owned and (self.root / n).exists()]

    def write(self, name: str, write: Callable[[BinaryIO], None]) -> None:
        """`write_file` at `name`, refused where `claim` refuses."""
        write_file(self.claim(name), write)

    def write_text(self, name: str, text: str) -> None:
        """`write_text` at `name`, refused where `claim` refuses."""
        write_text(self.claim(name), text)

    def _make_folders(self, folder: Path) -> None:
        if folder in self._folders:  # each folder is checked and made once per run
            return
        current = self.root
        for part in ("", *folder.relative_to(self.root).parts):
            current = current / part if part else current
            if current.is_symlink():
                raise OutputError(f"{shown(current)} is a symbolic link: refused as a folder")
            try:
                current.mkdir(exist_ok=True)
            except FileExistsError:
                raise OutputError(f"{shown(current)} is a file, not a folder") from None
            except OSError as error:
                raise OutputError(f"cannot create {shown(current)}: {error.strerror}") from None
        self._folders.add(folder)

    def _record(self, name: str) -> None:
        ledger = self.root / LEDGER
        # Non-blocking: a named pipe planted there fails at once instead of waiting for a reader.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        flags |= getattr(os, "O_NONBLOCK", 0)
        try:
            descriptor = os.open(ledger, flags, 0o666)
            with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(name) + "\n")  # one write: whole lines when appended
        except OSError as error:
            raise OutputError(
                f"cannot record {shown(name)} in {shown(ledger)}: {error.strerror or error}"
            ) from error
        self.owned.add(name)


def read_ledger(root: Path) -> set[str]:
    """The names camkit wrote in `root` (empty when it has no ledger). A line that is not a
    JSON string (a torn write, an edit), or a name that leaves the folder, names nothing: an
    edited ledger can make camkit no bolder outside its folder."""
    ledger = root / LEDGER
    try:
        if ledger.is_symlink() or (ledger.exists() and not ledger.is_file()):
            # A named pipe there would block the read; a link could point anywhere.
            raise OutputError(f"{shown(ledger)} is not a regular file: remove it")
        lines = ledger.read_text(encoding="utf-8", errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return set()
    except OSError as error:
        if isinstance(error, OutputError):
            raise
        raise OutputError(f"cannot read {shown(ledger)}: {error.strerror}") from error
    return {name for name in map(_ledger_name, lines) if name is not None}


def _ledger_name(line: str) -> str | None:
    """The name a ledger line records, or None for a line camkit does not write."""
    try:
        name = json.loads(line)
    except ValueError:
        return None
    if not isinstance(name, str):
        return None
    path = Path(name)
    if not path.parts or path.is_absolute() or ".." in path.parts or name == LEDGER:
        return None
    return name


def identity(path: Path) -> Path:
    """A path with `..` and links resolved, for comparing files (the name itself not followed
    when it is a link: writing replaces the link, not its target)."""
    return Path(os.path.realpath(path.parent)) / path.name
