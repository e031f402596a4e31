"""The tiffslide backend: TIFF-based slides (SVS, generic and pyramidal TIFF...) read through tifffile.

tiffslide is imported when a file is opened, not at import time: it loads zarr and fsspec (about
1.5 s), which neither ``mrseg --help`` nor a slide OpenSlide reads should pay for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrseg.core.errors import SlideError
from mrseg.wsi.backends.base import SlideBackend, properties_mpp, to_rgb
from mrseg.wsi.geometry import Region, Size
from mrseg.wsi.tiff import resolution_mpp


def _tiffslide() -> Any:
    """The ``tiffslide`` module, or a :class:`SlideError` with the install hint."""
    try:
        import tiffslide
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SlideError(f"tiffslide is not available ({error}); pip install tiffslide") from error
    return tiffslide


def level_location(index: int, downsample: float) -> int:
    """The level-0 location that tiffslide maps (``int(loc / downsample)``) to level pixel ``index``.

    >>> level_location(3, 1.9958)
    6
    """
    loc = math.ceil(index * downsample)
    while int(loc / downsample) > index:
        loc -= 1
    while int(loc / downsample) < index:
        loc += 1
    return loc


class TiffSlideBackend(SlideBackend):
    """A slide read by tiffslide.

    mpp: the ``tiffslide.mpp-x`` / ``tiffslide.mpp-y`` properties, else the TIFF resolution tags
    (:func:`mrseg.wsi.tiff.resolution_mpp`). Reduced levels are read exactly in their own pixel grid.
    """

    name = "tiffslide"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._handle = _tiffslide().TiffSlide(str(path))
        self._dimensions = [(int(w), int(h)) for w, h in self._handle.level_dimensions]
        self._downsamples = [float(d) for d in self._handle.level_downsamples]
        self._properties = dict(self._handle.properties)
        self._associated = sorted(self._handle.associated_images)

    @property
    def level_dimensions(self) -> Sequence[Size]:
        return self._dimensions

    @property
    def level_downsamples(self) -> Sequence[float]:
        return self._downsamples

    @property
    def properties(self) -> Mapping[str, Any]:
        return self._properties

    @property
    def vendor(self) -> str:
        return self._properties.get("tiffslide.vendor") or "generic-tiff"

    @property
    def associated_names(self) -> Sequence[str]:
        return self._associated

    @property
    def mpp(self) -> tuple[float, float] | None:
        return properties_mpp(self._properties, "tiffslide") or resolution_mpp(self.path)

    def read_level(self, level: int, region: Region) -> np.ndarray:
        ds = self._downsamples[level]
        location = (level_location(region[0], ds), level_location(region[1], ds))
        size = (region[2] - region[0], region[3] - region[1])
        return to_rgb(self._handle.read_region(location, level, size, as_array=True))

    def associated(self, name: str) -> np.ndarray:
        return to_rgb(np.asarray(self._handle.associated_images[name]))

    def close(self) -> None:
        self._handle.close()
