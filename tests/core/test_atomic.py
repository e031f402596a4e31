"""Atomic, durable outputs (issue 12 items 1, 8, 9): replace only what a command made, sweep what killed runs left."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from mrseg.cli.errors import error_line
from mrseg.core.atomic import (
    atomic_path,
    atomic_write_text,
    check_new_file,
    check_replaceable,
    sweep_stale,
    temp_prefix,
)
from mrseg.core.errors import ConfigError


def test_a_folder_is_replaced_old_aside_new_in(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with atomic_path(dest, is_dir=True) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (dest / "old.txt").exists()  # the old folder stays until the new one is complete
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing aside is left


def test_a_failed_write_leaves_the_old_output_and_no_temporary(tmp_path: Path) -> None:
    dest = atomic_write_text(tmp_path / "record.json", "old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


@pytest.mark.parametrize("where", ["cwd", "parent", "foreign", "symlink"])
def test_only_a_commands_own_folder_may_be_replaced(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "keep.txt").write_text("keep")
    (real / "synth.json").write_text("{}")
    dest = {"cwd": real, "parent": real, "foreign": real, "symlink": tmp_path / "link"}[where]
    monkeypatch.chdir(real / "sub" if where == "parent" else real if where == "cwd" else tmp_path)
    if where == "foreign":
        (real / "synth.json").unlink()
    if where == "symlink":
        dest.symlink_to(real, target_is_directory=True)
    with pytest.raises(ConfigError, match=r"working directory|no synth\.json|symbolic link"):
        check_replaceable(dest, "synth.json", "mrseg synth")
    assert (real / "keep.txt").read_text() == "keep"


def test_an_own_or_empty_folder_may_be_replaced(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "synth.json").write_text("{}")
    for name in ("empty", "own", "absent"):
        check_replaceable(tmp_path / name, "synth.json", "mrseg synth")


def test_stale_temporaries_are_swept_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder_tmp = tmp_path / (temp_prefix(tmp_path / "s.tif") + "abc")
    folder_tmp.mkdir()
    (folder_tmp / "accumulator.zarr").write_bytes(b"x" * 100)
    file_tmp = tmp_path / (temp_prefix(tmp_path / "s.json") + "def.json")
    file_tmp.write_text("{}")
    other = tmp_path / ".t.tmp-keep"  # another slide's: not swept when sweeping slide s
    other.write_text("")
    with caplog.at_level("INFO", logger="mrseg"):  # a -q CLI test before may have left mrseg at WARNING
        assert sorted(sweep_stale(tmp_path, "s")) == sorted([folder_tmp, file_tmp])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".t.tmp-keep"]
    assert "interrupted run" in caplog.text


def test_atomic_writes_are_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    atomic_write_text(tmp_path / "last.json", "data")
    assert len(synced) >= 2  # the file, then its folder


def _mount_tmpfs(disk: Path, options: str) -> None:
    disk.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_read_only_file_system_is_one_line(tmp_path: Path) -> None:
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "ro,size=64k")
    try:
        with pytest.raises(OSError) as raised:
            atomic_write_text(disk / "record.json", "{}")
        assert raised.value.errno == errno.EROFS
        assert error_line(raised.value, "synth").endswith("read-only file system: cannot write it (mrseg synth)")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_leaves_the_old_file_and_one_line(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=64k")
    try:
        dest = atomic_write_text(disk / "record.json", "old")
        with pytest.raises(OSError) as raised:
            atomic_write_text(dest, "x" * 1_000_000)
        assert raised.value.errno == errno.ENOSPC
        assert dest.read_text() == "old" and [p.name for p in disk.iterdir()] == ["record.json"]
        assert "no space left" in error_line(raised.value, "predict")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_check_new_file_refuses_existing_files_folders_and_links_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    check_new_file(out, overwrite=False)  # nothing there: fine
    out.write_bytes(b"keep")
    with pytest.raises(ConfigError, match="exists; pass --overwrite"):
        check_new_file(out, overwrite=False)
    check_new_file(out, overwrite=True)
    assert out.read_bytes() == b"keep"  # a check only: nothing removed
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        check_new_file(tmp_path / "d", overwrite=True)
    (tmp_path / "link").symlink_to(out)
    with pytest.raises(ConfigError, match="symbolic link"):
        check_new_file(tmp_path / "link", overwrite=True)
