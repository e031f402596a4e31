"""Slide backends: one abstract class, the built-in OpenSlide, tiffslide and plain-image backends, one registry.

Each backend opens one file format, reports its pyramid and metadata, **parses its own mpp** and
reads integer regions of a level; :class:`mrseg.wsi.slide.Slide` does the geometry on top. A user's
backend is a :class:`SlideBackend` subclass, registered by name or passed as a class:

>>> register_backend("npy", NumpyBackend)                  # doctest: +SKIP
>>> Slide.open("scan.npy", backend="npy")                  # doctest: +SKIP
>>> Slide.open("scan.npy", backend=NumpyBackend)           # doctest: +SKIP

See ``docs/slides.md`` (backends) and ``docs/architecture.md`` (worked example).
"""

from __future__ import annotations

from mrseg.wsi.backends.base import (
    ANISOTROPY_TOLERANCE,
    BACKGROUND,
    SlideBackend,
    positive_number,
    properties_mpp,
    resolve_mpp,
    to_rgb,
)
from mrseg.wsi.backends.image_backend import ImageBackend
from mrseg.wsi.backends.openslide_backend import OpenSlideBackend
from mrseg.wsi.backends.openslide_shaped import OpenSlideShapedBackend
from mrseg.wsi.backends.registry import (
    AUTO,
    AUTO_ORDER,
    BackendSpec,
    backend_name,
    backend_names,
    candidates,
    check_backend,
    open_backend,
    register_backend,
    unregister_backend,
)
from mrseg.wsi.backends.tiffslide_backend import TiffSlideBackend

__all__ = [
    "ANISOTROPY_TOLERANCE",
    "AUTO",
    "AUTO_ORDER",
    "BACKGROUND",
    "BackendSpec",
    "ImageBackend",
    "OpenSlideBackend",
    "OpenSlideShapedBackend",
    "SlideBackend",
    "TiffSlideBackend",
    "backend_name",
    "backend_names",
    "candidates",
    "check_backend",
    "open_backend",
    "positive_number",
    "properties_mpp",
    "register_backend",
    "resolve_mpp",
    "to_rgb",
    "unregister_backend",
]
