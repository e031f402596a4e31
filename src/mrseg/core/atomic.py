"""Atomic file output: write to a temporary name in the destination folder, then rename.

A half-written output never carries the final name, so an interrupted run leaves nothing that
looks finished.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` when the block succeeds.

    Parameters
    ----------
    dest
        Final path of the file (or folder when ``is_dir``).
    is_dir
        Create a temporary folder instead of reserving a file name.

    On an exception the temporary file/folder is removed and ``dest`` is left untouched.
    The suffix of ``dest`` is kept on the temporary name so libraries that infer the format from
    the extension behave the same.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.stem}.tmp-"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=dest.suffix, dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=dest.suffix, dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():
            # mkstemp/mkdtemp create private (0600/0700) entries; give the output normal permissions.
            tmp.chmod((0o777 if tmp.is_dir() else 0o666) & ~_umask())
        if is_dir and dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``dest`` atomically and return the final path."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)
