"""Clean interruption of a training run: SIGINT/SIGTERM set a flag the loop checks between steps.

The trainer owns interruption: DataLoader workers ignore both signals
(:func:`mrseg.training.sampling.worker_init`), the loop finishes the current step, keeps
``last.pt`` at the last completed epoch and raises :class:`TrainingInterrupted`. A second Ctrl-C
gives up at once (``KeyboardInterrupt``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from mrseg.core.errors import MrsegError

log = logging.getLogger(__name__)


class TrainingInterrupted(MrsegError):
    """SIGINT/SIGTERM stopped the run; ``last.pt`` holds the last completed epoch."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopFlag:
    """SIGINT/SIGTERM set :attr:`signum`; :meth:`installed` puts the handlers in place and restores them.

    Outside the main thread (where Python cannot install signal handlers) the flag is never set.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signum is not None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, _frame: object) -> None:
            if self.signum is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # second Ctrl-C: give up at once
            self.signum = signum
            log.warning("%s received: stopping after the current step", signal.Signals(signum).name)

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def worker_error(error: MrsegError) -> MrsegError:
    """Re-wrap an mrseg error re-raised by a DataLoader worker (message + traceback) as one clean line."""
    last = [ln for ln in str(error).strip().splitlines() if ln.strip()][-1]
    text = last.split(": ", 1)[1] if ": " in last else last
    return type(error)(text)


__all__ = ["StopFlag", "TrainingInterrupted", "worker_error"]
