"""Output files: written whole or not at all, never through a planted link."""

from __future__ import annotations

import errno
import os

import pytest

from camkit.files import OutputError, check_output_folder, shown, write_file, write_text


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
