"""Exception hierarchy. Every error a user can cause derives from :class:`MrsegError`.

The CLI prints ``str(error)`` as one line and exits non-zero; messages therefore name the
file (and, where relevant, the location) and the reason.
"""

from __future__ import annotations


class MrsegError(Exception):
    """Base class of all errors mrseg raises for bad input or bad configuration."""


class SlideError(MrsegError):
    """A slide file cannot be opened or read (not a slide, corrupt, unsupported, region unreadable)."""


class MissingMppError(SlideError):
    """A slide has no microns-per-pixel metadata and no override was given."""


class AnnotationError(MrsegError):
    """An annotation file is malformed, unsafe or unsupported."""


class ConfigError(MrsegError):
    """A configuration value or combination of values is invalid."""


class ModelConfigError(ConfigError):
    """A model cannot be built with the requested hyper-parameters."""


class CheckpointError(MrsegError):
    """A checkpoint file is missing, corrupt or incompatible."""


class DataError(MrsegError):
    """A training/evaluation data set is invalid (missing files, mismatched slide sets...)."""
