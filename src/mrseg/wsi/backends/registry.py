"""The one registry of slide backends, and opening a file with the first backend that reads it.

A backend is named by a string (``"auto"``, ``"openslide"``, ``"tiffslide"``, ``"image"`` or a name
given to :func:`register_backend`) or given as a :class:`~mrseg.wsi.backends.base.SlideBackend`
subclass directly. ``"auto"`` tries OpenSlide, then tiffslide, then plain images (:data:`AUTO_ORDER`).

>>> backend_names()
('auto', 'openslide', 'tiffslide', 'image')
>>> check_backend("tiffslide")
'tiffslide'
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TypeAlias

from mrseg.core.errors import ConfigError, SlideError
from mrseg.wsi.backends.base import SlideBackend
from mrseg.wsi.backends.image_backend import ImageBackend
from mrseg.wsi.backends.openslide_backend import OpenSlideBackend
from mrseg.wsi.backends.tiffslide_backend import TiffSlideBackend
from mrseg.wsi.tiff import check_tiff_integrity

log = logging.getLogger(__name__)

#: A backend as the library takes it: a registered name (or ``"auto"``), or a backend class.
BackendSpec: TypeAlias = str | type[SlideBackend]

AUTO = "auto"
#: The backends ``"auto"`` tries, in order.
AUTO_ORDER: tuple[str, ...] = ("openslide", "tiffslide", "image")
_BUILT_IN: dict[str, type[SlideBackend]] = {
    "openslide": OpenSlideBackend,
    "tiffslide": TiffSlideBackend,
    "image": ImageBackend,
}
_NAME = re.compile(r"[a-z][a-z0-9_-]*")

_registry: dict[str, type[SlideBackend]] = dict(_BUILT_IN)


def register_backend(name: str, cls: type[SlideBackend], *, replace: bool = False) -> type[SlideBackend]:
    """Make ``cls`` available as ``Slide.open(path, backend=name)`` (and ``--backend name``); returns ``cls``.

    Parameters
    ----------
    name
        Lower-case letters, digits, ``-`` and ``_``, starting with a letter; not ``"auto"``.
    cls
        A subclass of :class:`~mrseg.wsi.backends.base.SlideBackend`.
    replace
        Allow replacing another class already registered under ``name`` (built-ins included).

    Raises
    ------
    ConfigError
        A malformed or reserved name, or one taken by another class without ``replace``.
    TypeError
        ``cls`` is not a ``SlideBackend`` subclass.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"backend name must be lower-case letters, digits, '-' or '_', starting with a letter; got {name!r}"
        )
    if name == AUTO:
        raise ConfigError(f"backend name {AUTO!r} is reserved (it tries {' then '.join(AUTO_ORDER)})")
    if not (isinstance(cls, type) and issubclass(cls, SlideBackend)):
        raise TypeError(f"a slide backend must be a subclass of mrseg.wsi.backends.SlideBackend, got {cls!r}")
    existing = _registry.get(name)
    if existing is not None and existing is not cls and not replace:
        raise ConfigError(
            f"backend {name!r} is already registered ({existing.__module__}.{existing.__qualname__}); "
            "pass replace=True to replace it"
        )
    _registry[name] = cls
    log.debug("registered slide backend %r: %s", name, cls.__qualname__)
    return cls


def unregister_backend(name: str) -> None:
    """Remove a backend added with :func:`register_backend` (a replaced built-in gets its own class back)."""
    if name not in _registry:
        raise ConfigError(f"no backend {name!r} is registered (registered: {', '.join(_registry)})")
    if name in _BUILT_IN:
        _registry[name] = _BUILT_IN[name]
    else:
        del _registry[name]


def backend_names() -> tuple[str, ...]:
    """Every name a backend may be given by: ``"auto"``, the built-ins, then registered ones."""
    return (AUTO, *_registry)


def _choices() -> str:
    names = backend_names()
    return f"{', '.join(names[:-1])} or {names[-1]}"


def check_backend(backend: BackendSpec) -> BackendSpec:
    """Return ``backend`` when it names a backend (or is a backend class): the check for settings and the CLI.

    Raises
    ------
    ConfigError
        An unknown name (the message lists the known ones).
    TypeError
        Neither a string nor a ``SlideBackend`` subclass.
    """
    if isinstance(backend, str):
        if backend != AUTO and backend not in _registry:
            raise ConfigError(f"unknown backend {backend!r} (use {_choices()})")
        return backend
    if isinstance(backend, type) and issubclass(backend, SlideBackend):
        return backend
    raise TypeError(f"backend must be a name or a SlideBackend subclass, got {backend!r}")


def backend_name(cls: type[SlideBackend]) -> str:
    """What ``Slide.backend`` reports for ``cls``: its registered name, else ``cls.name``, else the class name."""
    for name, registered in _registry.items():
        if registered is cls:
            return name
    return cls.name or cls.__name__


def candidates(backend: BackendSpec) -> list[type[SlideBackend]]:
    """The backend classes to try, in order, for ``backend`` (see :func:`check_backend`)."""
    checked = check_backend(backend)
    if isinstance(checked, type):
        return [checked]
    names = AUTO_ORDER if checked == AUTO else (checked,)
    return [_registry[name] for name in names]


def _probe(backend: SlideBackend) -> None:
    """Check the reported pyramid and decode one pixel of the coarsest level (catches truncated files)."""
    levels = len(backend.level_dimensions)
    if levels == 0 or len(backend.level_downsamples) != levels:
        raise SlideError(f"{levels} level size(s) but {len(backend.level_downsamples)} downsample(s)")
    backend.read_level(levels - 1, (0, 0, 1, 1))


def open_backend(path: Path, backend: BackendSpec = AUTO) -> SlideBackend:
    """Open ``path`` with the first candidate of ``backend`` that reads it.

    A TIFF is first checked for data past its end (:func:`mrseg.wsi.tiff.check_tiff_integrity`);
    each candidate must then open the file and decode one pixel of its coarsest level.

    Raises
    ------
    SlideError
        An unknown backend name, a truncated TIFF, or no candidate reads the file (the message
        gives every candidate's reason).
    """
    try:
        classes = candidates(backend)
    except ConfigError as error:
        raise SlideError(f"{path}: {error}") from None
    check_tiff_integrity(path)
    reasons: list[str] = []
    for cls in classes:
        name = backend_name(cls)
        opened: SlideBackend | None = None
        try:
            opened = cls(path)
            _probe(opened)
        except Exception as error:  # third-party errors are turned into one SlideError below
            if opened is not None:
                opened.close()
            reasons.append(f"{name}: {str(error).strip() or type(error).__name__}")
            log.debug("%s cannot open %s: %r", name, path, error)
            continue
        return opened
    raise SlideError(f"{path}: not a readable slide ({'; '.join(reasons)})")
