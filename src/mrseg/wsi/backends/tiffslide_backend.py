"""The tiffslide backend: TIFF-based slides (SVS, generic and pyramidal TIFF...) read through tifffile.

tiffslide is imported when a file is opened, not at import time: it loads zarr and fsspec (about
1.5 s), which neither ``mrseg --help`` nor a slide OpenSlide reads should pay for.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mrseg.core.errors import SlideError
from mrseg.wsi.backends.base import to_rgb
from mrseg.wsi.backends.openslide_shaped import OpenSlideShapedBackend
from mrseg.wsi.geometry import Region


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


class TiffSlideBackend(OpenSlideShapedBackend):
    """A slide read by tiffslide.

    mpp: the ``tiffslide.mpp-x`` / ``tiffslide.mpp-y`` properties, else the TIFF resolution tags
    (:class:`~mrseg.wsi.backends.openslide_shaped.OpenSlideShapedBackend`). Reduced levels are read
    exactly in their own pixel grid.
    """

    name = "tiffslide"
    metadata_prefix = "tiffslide"
    default_vendor = "generic-tiff"

    def __init__(self, path: Path) -> None:
        super().__init__(path, _tiffslide().TiffSlide(str(path)))

    def read_level(self, level: int, region: Region) -> np.ndarray:
        ds = self._downsamples[level]
        location = (level_location(region[0], ds), level_location(region[1], ds))
        size = (region[2] - region[0], region[3] - region[1])
        return to_rgb(self._handle.read_region(location, level, size, as_array=True))
