"""Polygon scan conversion on the shared read grid (pure numpy, no I/O).

The grid is the one of ``docs/architecture.md``: a request ``(box_l0, size_px)`` with
``box_l0 = (x0, y0, x1, y1)`` (level-0 pixels) and ``size_px = (width, height)`` has output pixel
``(u, v)`` centred at the level-0 point ``(x0 + (u + 0.5) * sx, y0 + (v + 0.5) * sy)`` with
``sx = (x1 - x0) / width`` and ``sy = (y1 - y0) / height``. A pixel is inside a region when its
centre is (even-odd rule over all rings, so holes and disjoint parts need no special case).

Only the edges that cross the rows of the request are expanded, so the cost is proportional to the
number of edge/row crossings plus the output size, whatever the size of the slide: a polygon
spanning a 100k x 200k slide never materialises a level-0 mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in level-0 pixels."""


def check_request(box_l0: Sequence[float], size_px: Sequence[int]) -> tuple[Box, tuple[int, int]]:
    """Validate a read request and return it as ``((x0, y0, x1, y1), (width, height))``.

    Raises
    ------
    ValueError
        When the box is empty/inverted or not finite, or the size is not two positive integers.
    """
    if len(box_l0) != 4:
        raise ValueError(f"box_l0 must be (x0, y0, x1, y1), got {box_l0!r}")
    x0, y0, x1, y1 = (float(c) for c in box_l0)
    if not all(np.isfinite([x0, y0, x1, y1])) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"box_l0 must be finite with x1 > x0 and y1 > y0, got {box_l0!r}")
    if len(size_px) != 2:
        raise ValueError(f"size_px must be (width, height), got {size_px!r}")
    width, height = (int(s) for s in size_px)
    if width <= 0 or height <= 0 or width != size_px[0] or height != size_px[1]:
        raise ValueError(f"size_px must be two positive integers, got {size_px!r}")
    return (x0, y0, x1, y1), (width, height)


def pixel_centers(box_l0: Box, size_px: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the level-0 x coordinates (``width``,) and y coordinates (``height``,) of the pixel centres."""
    x0, y0, x1, y1 = box_l0
    width, height = size_px
    sx, sy = (x1 - x0) / width, (y1 - y0) / height
    return x0 + (np.arange(width) + 0.5) * sx, y0 + (np.arange(height) + 0.5) * sy


def ring_edges(rings: Iterable[np.ndarray]) -> np.ndarray:
    """Edges ``float64 (n, 4)`` of ``(xa, ya, xb, yb)`` of closed rings given as ``(k, 2)`` vertex arrays."""
    parts = []
    for ring in rings:
        pts = np.asarray(ring, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] < 3:
            continue
        pts = pts[:, :2]
        parts.append(np.hstack([pts, np.roll(pts, -1, axis=0)]))
    return np.concatenate(parts) if parts else np.zeros((0, 4), dtype=np.float64)


def fill_rings(rings: Iterable[np.ndarray], box_l0: Box, size_px: tuple[int, int]) -> np.ndarray:
    """Rasterise closed rings with the even-odd rule at the pixel centres of a request.

    Parameters
    ----------
    rings
        Arrays ``(k, 2)`` of ``(x, y)`` vertices in level-0 pixels; each ring is closed implicitly
        (a repeated last vertex is harmless). Exteriors and holes of any number of disjoint polygons
        may be mixed.
    box_l0, size_px
        The request (see module docstring).

    Returns
    -------
    numpy.ndarray
        ``bool (height, width)``: True where the pixel centre lies inside an odd number of rings.
        Centres exactly on an edge follow a half-open rule (consistent, no double counting).
    """
    return fill_edges(ring_edges(rings), box_l0, size_px)


def fill_edges(edges_l0: np.ndarray, box_l0: Box, size_px: tuple[int, int]) -> np.ndarray:
    """Like :func:`fill_rings` for the edges ``(n, 4)`` of closed rings (see :func:`ring_edges`)."""
    x0, y0, x1, y1 = box_l0
    width, height = size_px
    sx, sy = (x1 - x0) / width, (y1 - y0) / height
    # Only edges spanning some row of the request matter (also those left of the box: parity).
    e = np.asarray(edges_l0, dtype=np.float64)
    e = e[(np.maximum(e[:, 1], e[:, 3]) >= y0) & (np.minimum(e[:, 1], e[:, 3]) <= y1)]
    if e.shape[0] == 0:
        return np.zeros((height, width), dtype=bool)
    # Continuous output-pixel frame: centre of pixel (u, v) is at (u + 0.5, v + 0.5).
    xa, ya = (e[:, 0] - x0) / sx, (e[:, 1] - y0) / sy
    xb, yb = (e[:, 2] - x0) / sx, (e[:, 3] - y0) / sy
    lo, hi = np.minimum(ya, yb), np.maximum(ya, yb)
    # Rows v whose centre v + 0.5 lies in [lo, hi): v in [ceil(lo - 0.5), ceil(hi - 0.5)).
    v_start = np.clip(np.ceil(lo - 0.5), 0, height).astype(np.int64)
    v_end = np.clip(np.ceil(hi - 0.5), 0, height).astype(np.int64)
    counts = np.maximum(v_end - v_start, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((height, width), dtype=bool)
    edge = np.repeat(np.arange(e.shape[0]), counts)
    offsets = np.cumsum(counts) - counts
    v = v_start[edge] + (np.arange(total) - offsets[edge])
    t = (v + 0.5 - ya[edge]) / (yb[edge] - ya[edge])
    xc = xa[edge] + t * (xb[edge] - xa[edge])
    # Pixels with centre u + 0.5 > xc are right of the crossing: the first is floor(xc + 0.5).
    k = np.clip(np.floor(xc + 0.5), 0, width).astype(np.int64)
    toggles = np.bincount(v * (width + 1) + k, minlength=height * (width + 1))
    parity = np.cumsum(toggles.reshape(height, width + 1)[:, :width], axis=1) & 1
    return parity.astype(bool)
