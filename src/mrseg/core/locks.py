"""Advisory locks on outputs: two runs never write one output at once.

:func:`output_lock` holds an OS file lock (:mod:`filelock`: ``flock`` on POSIX, ``msvcrt`` on
Windows; released by the kernel when the process dies, so a killed run leaves no stale lock) on
``LOCK`` and writes who holds it (process id, host, command line, start time) to ``LOCK.info``. A
second run that finds the lock taken stops at once with an :class:`OutputLockedError` naming that
process. Locks are per output: a ``mrseg train`` run folder, one slide's outputs in a ``mrseg
predict`` folder, a ``mrseg synth`` data set, a ``mrseg demo`` folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from mrseg.core.errors import MrsegError


class OutputLockedError(MrsegError):
    """Another process holds the lock of an output."""


def _holder(info: Path) -> str:
    """``process 123 on host (mrseg train ..., since ...)``, or what is known of it."""
    try:
        data = json.loads(info.read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(data["started"])))
        return f"process {data['pid']} on {data['host']} ({data['command']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (no holder information)"


@contextlib.contextmanager
def output_lock(lock_path: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold the lock ``lock_path`` while writing ``what`` (e.g. ``"run folder runs/unet"``).

    Yields the lock file's path. Its folder is created.

    Raises
    ------
    OutputLockedError
        Another process holds the lock; the message names it and ``what``.
    """
    path = Path(lock_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = path.with_name(path.name + ".info")
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputLockedError(
            f"{what} is in use by {_holder(info)}: wait for that run to finish or choose another output"
        ) from None
    try:
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": time.time()}
        info.write_text(json.dumps(holder))
        yield path
    finally:
        with contextlib.suppress(OSError):
            info.unlink()
        lock.release()


__all__ = ["OutputLockedError", "output_lock"]
