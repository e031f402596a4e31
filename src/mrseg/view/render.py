"""Tiles as image bytes: slide tiles (JPEG) and probability overlays (PNG with alpha) in a colormap.

An overlay pixel of probability ``p`` takes the colour ``cmap(p)`` of a perceptually uniform
matplotlib colormap over ``[0, 1]`` (the same colour means the same probability in every model and
at every threshold) and is opaque where ``p >= max(threshold, NEAR_ZERO)``, transparent elsewhere;
the layer's opacity is the browser's (no new tiles when it changes). Values are quantised to the 256
levels of the ``uint8`` encoding and coloured by one table lookup. A tile with no opaque pixel is
one shared, pre-encoded transparent PNG.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from PIL import Image

from mrseg.core.encoding import UINT8, ProbabilityEncoding
from mrseg.core.png import encode_png

#: Perceptually uniform colormaps offered (matplotlib names); the first is the default.
COLORMAPS: tuple[str, ...] = ("viridis", "magma", "inferno", "plasma", "cividis")
#: Probabilities below this are always transparent (about 5 / 255), whatever the threshold.
NEAR_ZERO = 0.02
#: JPEG quality of slide tiles.
JPEG_QUALITY = 90


def check_colormap(name: str) -> str:
    """``name`` if it is one of :data:`COLORMAPS`, else ``ValueError``."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r} (one of {', '.join(COLORMAPS)})")
    return name


@lru_cache(maxsize=64)
def rgba_table(cmap: str, threshold: float) -> np.ndarray:
    """``uint8 (256, 4)``: the RGBA of each stored ``uint8`` value ``v`` (probability ``v / 255``)."""
    table = np.asarray(colormaps[check_colormap(cmap)](np.linspace(0.0, 1.0, 256), bytes=True), dtype=np.uint8)
    table = table.copy()
    p = np.arange(256) / 255.0
    table[:, 3] = np.where(p >= max(threshold, NEAR_ZERO) - 1e-9, 255, 0)
    return table


def colormap_stops(cmap: str, count: int = 11) -> list[str]:
    """``count`` evenly spaced colours ``#rrggbb`` of ``cmap`` over ``[0, 1]`` (the colour bar's gradient)."""
    table = rgba_table(cmap, 0.0)
    return ["#{:02x}{:02x}{:02x}".format(*table[round(i * 255 / (count - 1)), :3]) for i in range(count)]


def overlay_rgba(values: np.ndarray, encoding: ProbabilityEncoding, cmap: str, threshold: float) -> np.ndarray:
    """``uint8 (h, w, 4)`` overlay pixels of stored map ``values`` (see the module docstring)."""
    index = values if encoding.dtype == "uint8" else UINT8.encode(encoding.decode(values))
    return rgba_table(cmap, float(threshold))[index]


def png_bytes(rgba: np.ndarray) -> bytes:
    """``uint8 (h, w, 4)`` as PNG (:func:`mrseg.core.png.encode_png`, fast: tiles are made on request)."""
    return encode_png(rgba)


@lru_cache(maxsize=16)
def blank_png(width: int, height: int) -> bytes:
    """A fully transparent ``width x height`` PNG (encoded once per size)."""
    return png_bytes(np.zeros((height, width, 4), np.uint8))


def overlay_png(values: np.ndarray, encoding: ProbabilityEncoding, cmap: str, threshold: float) -> bytes:
    """The overlay tile of stored ``values`` as PNG; the shared blank tile when no pixel is opaque."""
    rgba = overlay_rgba(values, encoding, cmap, threshold)
    if not rgba[..., 3].any():
        return blank_png(values.shape[1], values.shape[0])
    return png_bytes(rgba)


def jpeg_bytes(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``uint8 (h, w, 3)`` as JPEG."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


__all__ = [
    "COLORMAPS",
    "JPEG_QUALITY",
    "NEAR_ZERO",
    "blank_png",
    "check_colormap",
    "colormap_stops",
    "jpeg_bytes",
    "overlay_png",
    "overlay_rgba",
    "png_bytes",
    "rgba_table",
]
