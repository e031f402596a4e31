"""The overlay PNG (writer ``overlay``): the foreground probability as a heatmap over the slide thumbnail.

``<stem>_overlay.png`` (key ``overlay``): the slide's thumbnail with its longest side at most
:data:`OVERLAY_MAX_SIDE` pixels, the foreground probability sampled onto it (nearest) and blended
as a jet heatmap whose opacity grows with the probability, so background stays visible.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image

from mrseg.core.label_spec import LabelSpec
from mrseg.core.png import write_png
from mrseg.inference.merger import ProbabilityMap
from mrseg.inference.writers.base import WriteJob, Writer, register_writer
from mrseg.wsi.geometry import ReadGrid, sample_nearest

#: Longest side of the overlay PNG in pixels.
OVERLAY_MAX_SIDE = 2048
#: Overlay pixels blended at once (a band of rows).
BLEND_BAND_PIXELS = 1 << 18


def thumbnail_mpp(slide_dimensions: tuple[int, int], slide_mpp: float, max_side: int = OVERLAY_MAX_SIDE) -> float:
    """The mpp at which the slide's longest side is ``max_side`` pixels (never finer than level 0)."""
    return max(slide_mpp, slide_mpp * max(slide_dimensions) / max_side)


def write_overlay(
    path: str | os.PathLike[str],
    thumbnail: np.ndarray,
    prob: np.ndarray,
    *,
    alpha: float = 0.6,
    cmap: str = "jet",
) -> Path:
    """Blend ``prob`` (float ``(h, w)`` in [0, 1]) as a heatmap over ``thumbnail`` (uint8 ``(h', w', 3)``); write a PNG.

    The probability is resampled (bilinear) to the thumbnail's size when the sizes differ.
    """
    th, tw = thumbnail.shape[:2]
    if prob.shape != (th, tw):
        prob = np.asarray(
            Image.fromarray(prob.astype(np.float32), mode="F").resize((tw, th), Image.Resampling.BILINEAR)
        )
    table = blend_table(alpha, cmap)
    # in bands of rows, by lookup: a few MB of work arrays (numpy's int64 indices of one band),
    # not the float32 blend's 40 bytes per pixel (160 MB for a 2048 px overlay)
    blended = np.empty((th, tw, 3), dtype=np.uint8)
    rows = max(1, BLEND_BAND_PIXELS // max(1, tw))
    for v0 in range(0, th, rows):
        band = slice(v0, min(th, v0 + rows))
        scaled = np.clip(prob[band], 0.0, 1.0)
        scaled *= 255  # 256 colour levels
        index = np.left_shift(np.rint(scaled, out=scaled).astype(np.uint8), 8, dtype=np.uint16)
        for c in range(3):
            blended[band, :, c] = table[c][index | thumbnail[band, :, c]]
    return write_png(path, blended)


def blend_table(alpha: float, cmap: str) -> np.ndarray:
    """``uint8 (3, 65536)``: channel ``c`` of a thumbnail value ``t`` blended at colour level ``k``, at ``k * 256 + t``.

    The blend of level ``k`` (probability ``k / 255``) is ``t * (1 - a) + colour * a`` with
    ``a = k / 255 * alpha``, in float32 and rounded, so looking it up gives the bytes the per-pixel
    arithmetic gives.
    """
    a = np.arange(256, dtype=np.float32) / 255 * alpha
    lut = colormaps[cmap](np.arange(256), bytes=True)[:, :3].astype(np.float32)
    values = np.arange(256, dtype=np.float32)
    blended = values[None, :, None] * (1 - a)[:, None, None] + lut[:, None, :] * a[:, None, None]
    return np.ascontiguousarray(np.rint(blended).astype(np.uint8).reshape(65536, 3).T)


def overlay_from_map(
    path: str | os.PathLike[str],
    thumbnail: np.ndarray,
    pmap: ProbabilityMap,
    slide_dimensions: tuple[int, int],
    slide_mpp: float,
) -> Path:
    """Write the overlay PNG of ``pmap``'s foreground over ``thumbnail`` (the whole slide, level-0 dimensions)."""
    w0, h0 = slide_dimensions
    thumb_grid = ReadGrid((0.0, 0.0, float(w0), float(h0)), (thumbnail.shape[1], thumbnail.shape[0]))
    map_grid = ReadGrid.of_map(pmap.shape, pmap.mpp / slide_mpp)
    prob = pmap.to_probability(sample_nearest(pmap.foreground(), map_grid, thumb_grid))
    return write_overlay(path, thumbnail, prob)


@register_writer
class OverlayWriter(Writer):
    """``<stem>_overlay.png``."""

    name = "overlay"
    concurrent = True

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        return {"overlay": f"{stem}_overlay.png"}

    def write(self, job: WriteJob) -> dict[str, Any]:
        pred = job.prediction
        thumbnail = job.slide.thumbnail(thumbnail_mpp(pred.slide_dimensions, pred.slide_mpp))
        overlay_from_map(job.path("overlay"), thumbnail, pred.map, pred.slide_dimensions, pred.slide_mpp)
        return {}


__all__ = [
    "BLEND_BAND_PIXELS",
    "OVERLAY_MAX_SIDE",
    "OverlayWriter",
    "blend_table",
    "overlay_from_map",
    "thumbnail_mpp",
    "write_overlay",
]
