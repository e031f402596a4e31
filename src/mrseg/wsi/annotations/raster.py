"""Polygon scan conversion on the shared read grid (pure numpy, no I/O).

The grid is :class:`mrseg.wsi.geometry.ReadGrid`: output pixel ``(u, v)`` of a request
``(box_l0, size_px)`` is centred at the level-0 point ``(x0 + (u + 0.5) * sx, y0 + (v + 0.5) * sy)``.
A pixel is inside a region when its centre is (even-odd rule over all rings, so holes and disjoint
parts need no special case).

Only the edges that cross the rows of the request are expanded, so the cost is proportional to the
number of edge/row crossings plus the output size, whatever the size of the slide: a polygon
spanning a 100k x 200k slide never materialises a level-0 mask.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mrseg.wsi.geometry import ReadGrid


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


def fill_rings(rings: Iterable[np.ndarray], grid: ReadGrid) -> np.ndarray:
    """Rasterise closed rings with the even-odd rule at the pixel centres of a request.

    Parameters
    ----------
    rings
        Arrays ``(k, 2)`` of ``(x, y)`` vertices in level-0 pixels; each ring is closed implicitly
        (a repeated last vertex is harmless). Exteriors and holes of any number of disjoint polygons
        may be mixed.
    grid
        The request (see module docstring).

    Returns
    -------
    numpy.ndarray
        ``bool (height, width)``: True where the pixel centre lies inside an odd number of rings.
        Centres exactly on an edge follow a half-open rule (consistent, no double counting).
    """
    return fill_edges(ring_edges(rings), grid)


def fill_edges(edges_l0: np.ndarray, grid: ReadGrid) -> np.ndarray:
    """Like :func:`fill_rings` for the edges ``(n, 4)`` of closed rings (see :func:`ring_edges`)."""
    x0, y0, _, y1 = grid.box_l0
    width, height = grid.size_px
    sx, sy = grid.scale
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


__all__ = ["fill_edges", "fill_rings", "ring_edges"]
