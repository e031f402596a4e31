"""Resampling one level's pixels onto a read grid (pure numpy, no I/O): the filter of every slide read.

Separable, per axis: **exact area averaging** when shrinking (each output pixel is the mean of the
level area it covers, fractional pixels weighted by their overlap: anti-aliased, and consistent
with mean-reduced pyramid levels) and **bilinear interpolation** at pixel centres when enlarging.
Both honour sub-pixel box positions and agree at scale 1. See ``docs/slides.md``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mrseg.wsi.geometry import Box, Size, box_scale


@functools.lru_cache(maxsize=64)
def _offsets(n: int) -> np.ndarray:
    """``0, 1, ..., n - 1`` as float64 (shared and read-only: never write to it)."""
    a = np.arange(n, dtype=np.float64)
    a.flags.writeable = False
    return a


def _axis_taps(start: float, scale: float, n_out: int, n_src: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights (``(K, n_out)`` each) of a 1-D resampling.

    Output pixel ``u`` covers source ``[start + u*scale, start + (u+1)*scale)`` (source pixel ``i``
    covers ``[i, i + 1)``). ``scale >= 1``: exact area average, each covered source pixel weighted
    by its overlap / scale (``K = ceil(scale) + 1`` taps). ``scale < 1``: bilinear interpolation at
    the output pixel centre (2 taps). Indices are clipped to the source; taps outside it have
    zero weight whenever the source covers the output interval.
    """
    u = _offsets(n_out)
    if scale >= 1.0:
        lo = u * scale
        lo += start
        hi = lo + scale
        taps = math.ceil(scale) + 1
        index = np.floor(lo)[None, :] + _offsets(taps)[:, None]
        overlap = np.minimum(hi[None, :], index + 1)
        overlap -= np.maximum(lo[None, :], index)
        np.maximum(overlap, 0.0, out=overlap)
        overlap /= scale
        weights = overlap
    else:
        centre = u + 0.5  # start + (u + 0.5) * scale - 0.5
        centre *= scale
        centre += start
        centre -= 0.5
        first = np.floor(centre)
        frac = centre - first
        index = np.stack([first, first + 1])
        weights = np.stack([1.0 - frac, frac])
    np.minimum(index, n_src - 1, out=index)
    np.maximum(index, 0, out=index)
    return index.astype(np.intp), weights.astype(np.float32)


def _resample_axis(src: np.ndarray, axis: int, start: float, scale: float, n_out: int) -> np.ndarray:
    """Resample ``src`` along ``axis`` (see :func:`_axis_taps`); returns float32.

    Taps whose indices form an arithmetic run with one constant weight (integer scales, e.g. a
    sub-pixel shift at scale 1) use strided slices and a scalar weight instead of a gather.
    """
    index, weights = _axis_taps(start, scale, n_out, src.shape[axis])
    shape = [1] * src.ndim
    shape[axis] = n_out
    out = np.zeros([n_out if a == axis else d for a, d in enumerate(src.shape)], dtype=np.float32)
    for k in range(index.shape[0]):
        idx, w = index[k], weights[k]
        w0 = w[0]
        if n_out > 1:
            step = int(idx[1] - idx[0])
            run = step > 0 and bool((w == w0).all()) and bool((idx[1:] - idx[:-1] == step).all())
        else:
            step, run = 1, True
        if run:
            if w0 == 0:
                continue
            sl = [slice(None)] * src.ndim
            sl[axis] = slice(int(idx[0]), int(idx[0]) + step * (n_out - 1) + 1, step)
            out += src[tuple(sl)] * w0
        elif w.any():
            out += np.take(src, idx, axis=axis) * w.reshape(shape)
    return out


def resample(canvas: np.ndarray, origin: tuple[int, int], box: Box, size_px: Size) -> np.ndarray:
    """Resample ``canvas`` (pixels of one level starting at ``origin``) onto the output grid of ``box``.

    Parameters
    ----------
    canvas
        ``uint8 (h, w, 3)`` level pixels; ``canvas[0, 0]`` is level pixel ``origin``.
    origin
        ``(ix0, iy0)`` level-pixel index of ``canvas[0, 0]``.
    box
        ``(x0, y0, x1, y1)`` in continuous level pixels; must lie inside the canvas.
    size_px
        Output ``(width, height)``.

    Returns
    -------
    numpy.ndarray
        ``uint8 (height, width, 3)``, rounded half up.
    """
    sx, sy = box_scale(box, size_px)
    out = _resample_axis(canvas, 1, box[0] - origin[0], sx, size_px[0])
    out = _resample_axis(out, 0, box[1] - origin[1], sy, size_px[1])
    out += 0.5
    np.floor(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


__all__ = ["resample"]
