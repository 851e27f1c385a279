"""Output files: written whole or not at all, never through a planted link."""

from __future__ import annotations

import errno
import os

import pytest

from camkit.files import (
    LEDGER,
    OutputError,
    OutputFolder,
    check_output_folder,
    read_ledger,
    shown,
    write_file,
    write_text,
)


def test_a_file_is_written_whole_with_no_temporary_left(tmp_path) -> None:
    write_text(tmp_path / "a.json", "{}\n")
    assert (tmp_path / "a.json").read_text() == "{}\n"
    assert os.listdir(tmp_path) == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_existing_symbolic_link_is_refused_not_followed(tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "good1.json").symlink_to(victim)
    with pytest.raises(OutputError, match="good1.json is a symbolic link: refused"):
        write_text(tmp_path / "out" / "good1.json", "overwritten")
    assert victim.read_text() == "precious"
    assert os.listdir(tmp_path / "out") == ["good1.json"]


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path) -> None:
    target = tmp_path / "map.png"
    target.write_bytes(b"old complete file")

    def disk_full(handle) -> None:
        handle.write(b"half a png")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match="cannot write .*map.png: No space left on device"):
        write_file(target, disk_full)
    assert target.read_bytes() == b"old complete file"
    assert os.listdir(tmp_path) == ["map.png"]
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle: no partial file either
        write_file(tmp_path / "new.png", lambda handle: (_ for _ in ()).throw(KeyboardInterrupt))
    assert os.listdir(tmp_path) == ["map.png"]


def test_output_folder_checks(tmp_path) -> None:
    check_output_folder(tmp_path / "new" / "deeper")  # creatable: fine, nothing made
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    for folder in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(OutputError, match="is a file, not a folder"):
            check_output_folder(folder)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="broken symbolic link"):
        check_output_folder(tmp_path / "dangling" / "out")


def test_names_with_control_characters_are_shown_escaped() -> None:
    assert shown("a\x1b]0;pwned\x07b\nc.png") == "a\\x1b]0;pwned\\x07b\\nc.png"
    assert shown("plain café.png") == "plain café.png"


def test_a_broken_or_edited_ledger_can_only_make_camkit_more_careful(tmp_path) -> None:
    (tmp_path / "user.png").write_text("the user's")
    (tmp_path / "mine.png").write_text("camkit's")
    lines = [
        '"mine.png"',  # a name camkit recorded
        '"user.pn',  # a line cut short
        "\udcff garbage \x00",  # not JSON
        '["user.png", 1, 2]',  # not a name
        '"../user.png"',  # names that leave the folder, or the ledger itself
        '"/etc/passwd"',
        '""',
        f'"{LEDGER}"',
    ]
    (tmp_path / LEDGER).write_text("\n".join(lines) + "\n", errors="surrogateescape")
    assert read_ledger(tmp_path) == {"mine.png"}
    out = OutputFolder(tmp_path)
    out.write_text("mine.png", "replaced")
    with pytest.raises(OutputError, match="user.png: camkit did not write it"):
        out.write_text("user.png", "overwritten")
    assert (tmp_path / "user.png").read_text() == "the user's"
    (tmp_path / LEDGER).write_text("")  # empty: nothing is camkit's
    with pytest.raises(OutputError, match="mine.png: camkit did not write it"):
        OutputFolder(tmp_path).write_text("mine.png", "again")


def test_a_ledger_that_is_a_link_is_refused(tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text('"victim.png"\n')
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LEDGER).symlink_to(elsewhere)
    with pytest.raises(OutputError, match="is not a regular file: remove it"):
        OutputFolder(tmp_path / "out")
    assert elsewhere.read_text() == '"victim.png"\n'


def test_a_large_ledger_is_read_whole(tmp_path) -> None:
    names = [f"d{i % 97}/img{i}_gradcam.png" for i in range(100_000)]
    (tmp_path / LEDGER).write_text("".join(f'"{n}"\n' for n in names))
    assert read_ledger(tmp_path) == set(names)


def test_a_sub_folder_that_is_a_link_is_refused(tmp_path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match="a is a symbolic link: refused as a folder"):
        OutputFolder(tmp_path / "out").write_text("a/img.json", "{}")
    assert not list((tmp_path / "elsewhere").iterdir())
