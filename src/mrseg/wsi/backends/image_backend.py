"""The plain-image backend (``image``): a JPEG, PNG, BMP or other file Pillow reads, as a one-level slide.

For exported regions and tiles from other tools. The image is decoded once, when the file is opened,
and kept in memory as RGB (alpha composited on white; grey repeated to three channels); Pillow's
decompression-bomb limit applies (about 179 million pixels: convert larger images to a pyramidal
TIFF). Such files rarely say how large a pixel is: their DPI is screen or print density (72, 96,
300 dpi). The backend reports an mpp only when the DPI gives a plausible microscope resolution
(:data:`mrseg.wsi.tiff.MPP_RANGE`, the rule for TIFF resolution tags); otherwise give it with
``--slide-mpp`` (``Slide.open(path, mpp=...)``). TIFFs are left to tiffslide (single-level TIFFs
are one-level slides there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mrseg.wsi.backends.base import SlideBackend, positive_number, to_rgb
from mrseg.wsi.geometry import Region, Size
from mrseg.wsi.tiff import MPP_RANGE, is_tiff

#: Microns per inch: an image of ``d`` dots per inch has ``25400 / d`` µm per pixel.
MICRONS_PER_INCH = 25400.0


def dpi_mpp(dpi: Any) -> tuple[float, float] | None:
    """``(mpp-x, mpp-y)`` of a Pillow ``dpi`` pair, or None when missing or outside :data:`MPP_RANGE`.

    >>> dpi_mpp((50800, 50800))
    (0.5, 0.5)
    >>> dpi_mpp((72, 72)) is None  # screen density, not a scan
    True
    """
    if not isinstance(dpi, tuple | list) or len(dpi) != 2:
        return None
    values = [positive_number(d) for d in dpi]
    if values[0] is None or values[1] is None:
        return None
    mpp = (MICRONS_PER_INCH / values[0], MICRONS_PER_INCH / values[1])
    return mpp if all(MPP_RANGE[0] <= m <= MPP_RANGE[1] for m in mpp) else None


class ImageBackend(SlideBackend):
    """A plain image read by Pillow: one level, mpp from a plausible DPI or none."""

    name = "image"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        if is_tiff(self.path):
            raise ValueError("a TIFF (read by the tiffslide backend)")
        with Image.open(self.path) as image:
            self._format = str(image.format or "image").lower()
            self._info = {k: v for k, v in image.info.items() if isinstance(v, str | int | float | tuple)}
            mode = "RGBA" if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info else "RGB"
            self._pixels = to_rgb(np.asarray(image.convert(mode)))

    @property
    def level_dimensions(self) -> Sequence[Size]:
        return [(int(self._pixels.shape[1]), int(self._pixels.shape[0]))]

    @property
    def mpp(self) -> tuple[float, float] | None:
        return dpi_mpp(self._info.get("dpi"))

    @property
    def vendor(self) -> str:
        return self._format

    @property
    def properties(self) -> Mapping[str, Any]:
        return {f"image.{k}": v for k, v in self._info.items()}

    def read_level(self, level: int, region: Region) -> np.ndarray:
        ix0, iy0, ix1, iy1 = region
        return self._pixels[iy0:iy1, ix0:ix1]


__all__ = ["MICRONS_PER_INCH", "ImageBackend", "dpi_mpp"]
