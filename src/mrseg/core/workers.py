"""Worker processes that end with the command that started them: no orphan, no queued task after a stop.

Every process pool of mrseg (the demo's stage workers, the synthetic generator's slide workers) is a
:func:`worker_pool`, which puts together what stopping a command needs to stop its work:

* :func:`follow_parent` (run in every worker first): the kernel kills the worker when its parent dies
  (Linux ``prctl`` parent-death signal SIGKILL; a no-op elsewhere), so a command killed outright
  (SIGKILL, a crash) leaves nothing running. SIGKILL, not SIGTERM: a worker that stops gracefully on
  SIGTERM (the trainer does) would otherwise go on to take the next queued task.
* :func:`sigterm_raises`: within the block, SIGTERM raises an exception (a one-line error at the
  CLI) instead of ending the process at once, so the code below can stop its workers.
* :func:`kill_workers`, when the block ends by any exception (an error, Ctrl-C, SIGTERM, a generator
  closed early): cancel what has not started, kill the workers (running tasks end now), reap.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Any

#: ``prctl`` option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


@functools.cache
def libc() -> ctypes.CDLL | None:
    """glibc, loaded once per process; None where there is none (macOS, Windows, musl without the name)."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def follow_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux), and exit if it already has.

    ``parent`` is the pid of the process that created the pool (``os.getpid()`` there). Elsewhere (no
    ``prctl``) a no-op.
    """
    c = libc()
    if c is None or not hasattr(c, "prctl"):  # not Linux/glibc
        return
    c.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request
        os._exit(1)


@contextlib.contextmanager
def sigterm_raises(error: Callable[[], BaseException]) -> Iterator[None]:
    """Within the block, SIGTERM raises ``error()`` (main thread only; the old handler is restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise error()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the tasks of ``pool`` that have not started, kill its worker processes and reap them.

    Tasks already running end at once; tasks already handed to the pool's queue never start.
    """
    kill = getattr(pool, "kill_workers", None)  # Python >= 3.14
    if callable(kill):
        kill()
    else:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError, ValueError):
                process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(parent: int, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
    follow_parent(parent)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def worker_pool(
    max_workers: int,
    on_sigterm: Callable[[], BaseException],
    *,
    mp_context: BaseContext | None = None,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[ProcessPoolExecutor]:
    """A :class:`~concurrent.futures.ProcessPoolExecutor` whose workers end with the block's caller.

    Every worker runs :func:`follow_parent`, then ``initializer(*initargs)`` (a module-level function).
    Within the block SIGTERM raises ``on_sigterm()``; whatever exception ends the block, the workers
    are killed (:func:`kill_workers`) before it propagates.
    """
    with (
        sigterm_raises(on_sigterm),
        ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=mp_context,
            initializer=_start_worker,
            initargs=(os.getpid(), initializer, initargs),
        ) as pool,
    ):
        try:
            yield pool
        except BaseException:
            kill_workers(pool)
            raise


__all__ = ["follow_parent", "kill_workers", "libc", "sigterm_raises", "worker_pool"]
