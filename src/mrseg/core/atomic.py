"""Atomic, durable file output: write to a temporary name in the destination folder, sync, then rename.

A half-written output never carries the final name, so an interrupted run leaves nothing that
looks finished; the data and the rename are synced to disk (``fsync`` of the file and of its
folder), so a power cut cannot leave a zero-length file at the final name either.

A folder is replaced in three renames (the old one aside, the new one in, the old one removed),
and only after :func:`check_replaceable` agreed that it holds a previous output of the same
command (its marker file). Temporary names start with ``.<stem>.tmp-``; a killed run may leave
them behind, and :func:`sweep_stale` removes them on the next run (under that output's lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mrseg.core.errors import ConfigError

log = logging.getLogger(__name__)


def temp_prefix(dest: str | os.PathLike[str]) -> str:
    """The prefix of the temporary names of ``dest`` (``.<stem>.tmp-``)."""
    return f".{Path(dest).stem}.tmp-"


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; sync it and rename it to ``dest`` when the block succeeds.

    Parameters
    ----------
    dest
        Final path of the file (or folder when ``is_dir``).
    is_dir
        Create a temporary folder instead of reserving a file name. An existing folder at
        ``dest`` is replaced (old aside, new in, old removed); callers check first that it may be
        (:func:`check_replaceable`).

    On an exception the temporary file/folder is removed and ``dest`` is left untouched.
    The suffix of ``dest`` is kept on the temporary name so libraries that infer the format from
    the extension behave the same.

    Raises
    ------
    IsADirectoryError, NotADirectoryError
        A file output whose ``dest`` is a folder, a folder output whose ``dest`` is a file, or a
        ``dest`` below a file.
    ConfigError
        ``dest`` is a symbolic link (an output is never written through one).
    """
    dest = Path(dest)
    if dest.is_symlink():
        raise ConfigError(f"{dest}: is a symbolic link; give the real path ({os.path.realpath(dest)})")
    if not is_dir and dest.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(dest))
    if is_dir and dest.exists() and not dest.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(dest))
    blocking = next((p for p in dest.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:  # mkdir would say "exists", which hides the reason
        raise NotADirectoryError(20, "Not a directory", str(blocking))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest), suffix=dest.suffix, dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=temp_prefix(dest), suffix=dest.suffix, dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():
            # mkstemp/mkdtemp create private (0600/0700) entries; give the output normal permissions.
            tmp.chmod((0o777 if tmp.is_dir() else 0o666) & ~_umask())
            fsync_tree(tmp)
        _replace(tmp, dest)
    except BaseException:
        remove(tmp)
        raise


def _replace(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; a folder already there is renamed aside first and removed after."""
    if tmp.is_dir() and dest.is_dir():
        aside = Path(tempfile.mkdtemp(prefix=temp_prefix(dest), suffix=".old", dir=dest.parent))
        os.replace(dest, aside / dest.name)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        shutil.rmtree(aside, ignore_errors=True)
        return
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike[str]) -> None:
    """:func:`fsync_file` a file, or every file and folder under a folder (the folder last)."""
    path = Path(path)
    if not path.is_dir():
        fsync_file(path)
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                fsync_file(os.path.join(root, name))
        fsync_dir(root)
        del dirs


def remove(path: str | os.PathLike[str]) -> None:
    """Remove a file or a folder tree if it exists (never following a symbolic link)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``dest`` atomically and durably and return the final path."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def sweep_stale(folder: str | os.PathLike[str], stem: str = "*") -> list[Path]:
    """Remove the temporary files and folders (``.<stem>.tmp-*``) that killed runs left in ``folder``.

    Call it only while holding the lock of the outputs named ``stem`` (:mod:`mrseg.core.locks`),
    so that no running process still writes them. Each removal is logged.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(folder.glob(f".{stem}.tmp-*"))
    for path in stale:
        log.info("removing %s, left by an interrupted run", path)
        remove(path)
    return stale


def check_replaceable(dest: str | os.PathLike[str], marker: str, command: str) -> None:
    """Raise unless the folder ``dest`` may be replaced by ``command``'s new output.

    It may when it does not exist, is empty, or holds ``marker`` (the file ``command`` writes in
    every output folder, e.g. ``synth.json``) — and is neither a symbolic link, nor the current
    working directory, nor a folder containing it.

    Raises
    ------
    ConfigError
        Naming ``dest`` and the reason.
    """
    dest = Path(dest)
    if dest.is_symlink():
        raise ConfigError(f"{dest}: is a symbolic link; give the real folder ({os.path.realpath(dest)})")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise ConfigError(f"output {dest} exists and is not a folder")
    here, real = Path.cwd().resolve(), dest.resolve()
    if real == here or real in here.parents:
        raise ConfigError(f"{dest}: is the current working directory or contains it; {command} will not replace it")
    if any(dest.iterdir()) and not (dest / marker).is_file():
        raise ConfigError(
            f"{dest}: not a folder {command} wrote (no {marker}); it will not be replaced: "
            "move its files or choose another folder"
        )


def check_new_file(out: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Raise :class:`ConfigError` when the output file ``out`` exists and ``overwrite`` is not given.

    Single-file outputs (``export``, ``patch``) never replace an existing file unasked, and never a
    folder or a symbolic link even with ``overwrite``.
    """
    out_path = Path(out)
    if out_path.is_symlink():
        raise ConfigError(f"{out}: is a symbolic link; give the real file ({os.path.realpath(out_path)})")
    if out_path.is_dir():
        raise ConfigError(f"{out}: is a directory; give a file name")
    if out_path.exists() and not overwrite:
        raise ConfigError(f"{out}: exists; pass --overwrite to replace it")


def check_not_input(out: str | os.PathLike[str], *inputs: str | os.PathLike[str]) -> None:
    """Raise :class:`ConfigError` when the output ``out`` is one of the command's input files."""
    out_path = Path(out)
    for source in inputs:
        if out_path.exists() and Path(source).exists() and os.path.samefile(out_path, source):
            raise ConfigError(f"{out}: is also an input of this command ({source}); choose another output")


__all__ = [
    "atomic_path",
    "atomic_write_text",
    "check_new_file",
    "check_not_input",
    "check_replaceable",
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
    "remove",
    "sweep_stale",
    "temp_prefix",
]
