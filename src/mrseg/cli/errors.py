"""Every error a command ends with, as one line: ``error: <file>: <reason>`` (``--debug`` shows the traceback).

:func:`error_line` turns an exception into that line: the project's own errors
(:class:`~mrseg.core.errors.MrsegError`, whose messages already name the file) as they are; an
:class:`OSError` (no space, read-only file system, exists, is a directory, not a directory,
permission...) naming its file and what failed; running out of memory, text that is not UTF-8,
nesting too deep, and anything else, in words, with the command's name. Third-party libraries'
log records (tifffile's complaints about a damaged file...) are demoted to debug records of
mrseg's log (:func:`demote_third_party_logs`), so that they never print before the error line.
"""

from __future__ import annotations

import errno
import logging

from mrseg.core.errors import MrsegError

log = logging.getLogger("mrseg")

#: What each errno means for a file, in the words of the error line.
OS_REASONS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device while writing it",
    errno.EDQUOT: "disk quota exceeded while writing it",
    errno.EROFS: "read-only file system: cannot write it",
    errno.EEXIST: "already exists",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
    errno.EIO: "input/output error (a failing disk or network file system?)",
}

#: Loggers of third-party libraries whose records become debug records of mrseg's log.
THIRD_PARTY_LOGGERS = ("tifffile", "tiffslide", "imagecodecs", "zarr", "numcodecs", "py.warnings")


def os_error_line(error: OSError, command: str) -> str:
    """``<file>: <reason> (mrseg <command>)`` for an OSError (its first file, or the command)."""
    reason = OS_REASONS.get(error.errno or 0, error.strerror or str(error))
    files = [str(f) for f in (error.filename, error.filename2) if f is not None]
    where = " -> ".join(files) if files else "a file"
    return f"{where}: {reason} (mrseg {command})"


def error_line(error: BaseException, command: str) -> str:
    """The one line (without ``error:``) that reports ``error`` raised by ``mrseg <command>``."""
    if isinstance(error, MrsegError):
        return str(error)
    if isinstance(error, OSError):
        return os_error_line(error, command)
    if isinstance(error, MemoryError) or _is_allocation_failure(error):
        detail = str(error).splitlines()[0] if str(error) else "an allocation failed"
        return f"out of memory in mrseg {command}: {detail}"
    if isinstance(error, UnicodeError):
        return f"mrseg {command}: a file is not valid UTF-8 text ({error})"
    if isinstance(error, RecursionError):
        return f"mrseg {command}: input nested too deeply to read ({error})"
    first = str(error).splitlines()[0] if str(error) else ""
    return f"unexpected {type(error).__name__} in mrseg {command}: {first} (--debug shows the traceback)"


def _is_allocation_failure(error: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError."""
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


class _Demote(logging.Handler):
    """Re-log a third-party record as a debug record of mrseg's log."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("%s: %s", record.name, record.getMessage())


def demote_third_party_logs() -> None:
    """Route :data:`THIRD_PARTY_LOGGERS` (and Python warnings) to mrseg's log at debug level (idempotent)."""
    logging.captureWarnings(True)
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.propagate = False
        if not any(isinstance(h, _Demote) for h in logger.handlers):
            logger.addHandler(_Demote())


__all__ = ["OS_REASONS", "THIRD_PARTY_LOGGERS", "demote_third_party_logs", "error_line", "os_error_line"]
