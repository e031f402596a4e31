"""The OpenSlide backend: every vendor format OpenSlide reads (SVS, NDPI, MRXS, generic TIFF...).

openslide-python is imported when a file is opened, not at import time: it loads OpenSlide's native
library, and a missing library is reported with its install hint.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mrseg.core.errors import SlideError
from mrseg.wsi.backends.base import to_rgb
from mrseg.wsi.backends.openslide_shaped import OpenSlideShapedBackend
from mrseg.wsi.geometry import Region

INSTALL_HINT = "pip install openslide-python openslide-bin"
#: Bytes of decoded tiles an OpenSlide handle keeps (OpenSlide's own default, 32 MiB).
CACHE_BYTES = 32 << 20


def _openslide() -> Any:
    """The ``openslide`` module, or a :class:`SlideError` with the install hint."""
    try:
        import openslide
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SlideError(f"OpenSlide is not available ({error}); {INSTALL_HINT}") from error
    return openslide


class OpenSlideBackend(OpenSlideShapedBackend):
    """A slide read by OpenSlide.

    mpp: the ``openslide.mpp-x`` / ``openslide.mpp-y`` properties, else the TIFF resolution tags
    (:class:`~mrseg.wsi.backends.openslide_shaped.OpenSlideShapedBackend`).

    Attributes
    ----------
    fast_path
        Read into a buffer owned by numpy through ``openslide.lowlevel`` (premultiplied ARGB),
        skipping the RGBA conversion and the PIL round trip of the public API, when that function
        exists. A subclass with ``fast_path = False`` uses the public ``read_region`` only.
    """

    name = "openslide"
    metadata_prefix = "openslide"
    fast_path: ClassVar[bool] = True

    def __init__(self, path: Path) -> None:
        openslide = _openslide()
        super().__init__(path, openslide.OpenSlide(str(path)))
        lowlevel = getattr(openslide, "lowlevel", None)
        self._raw_read = getattr(lowlevel, "_read_region", None) if self.fast_path else None
        self._osr = getattr(self._handle, "_osr", None)

    def drop_cache(self) -> None:
        """Give the handle a new, empty tile cache (OpenSlide 4.0+; older libraries keep theirs)."""
        openslide = _openslide()
        cache = getattr(openslide, "OpenSlideCache", None)
        if cache is None:  # openslide-python < 1.3
            return
        try:
            self._handle.set_cache(cache(CACHE_BYTES))
        except openslide.OpenSlideVersionError:  # the C library is older than 4.0
            pass

    @property
    def uses_fast_path(self) -> bool:
        """Whether reads go through the buffer fast path (see :attr:`fast_path`)."""
        return self._raw_read is not None and self._osr is not None and sys.byteorder == "little"

    def read_level(self, level: int, region: Region) -> np.ndarray:
        # OpenSlide takes level-0 locations and maps them to level pixels by dividing by its own
        # (averaged) downsample; rounding picks the location landing closest to the wanted pixel.
        ds = self._downsamples[level]
        x, y = round(region[0] * ds), round(region[1] * ds)
        w, h = region[2] - region[0], region[3] - region[1]
        if not self.uses_fast_path:
            return to_rgb(np.asarray(self._handle.read_region((x, y), level, (w, h))))
        buffer = np.empty((h, w, 4), dtype=np.uint8)  # B, G, R, A (native uint32 ARGB)
        assert self._raw_read is not None
        self._raw_read(self._osr, buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), x, y, level, w, h)
        alpha = buffer[:, :, 3:4]
        rgb = buffer[:, :, 2::-1]
        if alpha.min() == 255:
            # one contiguous swizzle here makes every later crop a fast row copy
            return np.ascontiguousarray(rgb)
        # premultiplied colour: compositing on white adds the missing coverage
        return np.minimum(rgb.astype(np.uint16) + (255 - alpha), 255).astype(np.uint8)
