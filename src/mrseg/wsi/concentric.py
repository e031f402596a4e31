"""Concentric multi-resolution patches (the MRN input, Gu et al. 2018, Fig. 1).

For mpps ``m1 < m2 < ... < mJ`` and a patch size ``S`` pixels, the concentric sample at a level-0
centre ``c`` is ``J`` patches of ``S x S`` pixels, patch ``j`` read at ``mj`` microns per pixel,
so it covers ``S * mj`` microns around ``c``. Every patch is read with
:meth:`mrseg.wsi.slide.Slide.read` semantics (level choice, exact copies, area/bilinear resampling,
white outside the slide).

:func:`read_concentric_grid` serves many centres with **one backend read per pyramid level per
chunk** of nearby centres: centres are grouped into square cells of ``chunk_px`` pixels at the
finest mpp, the union of the level regions the chunk's patches need is read once, and each patch
is cut from it and rendered by the same code as the one-centre path, so both paths give
bit-identical patches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from mrseg.core.input_spec import InputSpec
from mrseg.wsi import geometry as geo
from mrseg.wsi.slide import Slide

log = logging.getLogger(__name__)

#: Default chunk edge, in pixels at the finest mpp (a few thousand level pixels per read).
DEFAULT_CHUNK_PX = 2048


def concentric_boxes(spec: InputSpec, slide_mpp: float, center_l0: Sequence[float]) -> list[geo.Box]:
    """Level-0 boxes of the ``J`` patches of ``spec`` around ``center_l0`` on a slide of ``slide_mpp``."""
    return [geo.centered_box(center_l0, spec.size_px, m / slide_mpp) for m in spec.mpps]


def chunk_points(points: np.ndarray, cell: float) -> list[np.ndarray]:
    """Group points into square cells of edge ``cell`` (same units), in row-major cell order.

    Returns the index arrays (into ``points``) of each non-empty cell; every index appears in
    exactly one group, and indices keep their original order within a group.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not cell > 0:
        raise ValueError(f"cell must be positive, got {cell!r}")
    if len(pts) == 0:
        return []
    cells = np.floor(pts / cell).astype(np.int64)
    order = np.lexsort((cells[:, 0], cells[:, 1]))
    keys = cells[order]
    breaks = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
    return [np.sort(group) for group in np.split(order, breaks)]


def _check_centers(centers_l0: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    centers = np.asarray(centers_l0, dtype=np.float64)
    if centers.size == 0:
        return centers.reshape(0, 2)
    if centers.ndim != 2 or centers.shape[1] != 2:
        raise ValueError(f"centres must be an (n, 2) array of level-0 (x, y), got shape {centers.shape}")
    if not np.all(np.isfinite(centers)):
        raise ValueError("centres must be finite")
    return centers


def read_concentric(slide: Slide, center_l0: Sequence[float], spec: InputSpec) -> np.ndarray:
    """Read the ``J`` concentric patches around one centre.

    Parameters
    ----------
    slide
        An open slide.
    center_l0
        ``(x, y)`` in continuous level-0 pixels.
    spec
        Resolutions and patch size (its normalisation is not used here).

    Returns
    -------
    numpy.ndarray
        ``uint8 (J, size_px, size_px, 3)``; patch ``j`` at ``spec.mpps[j]``.
    """
    return np.stack([slide.read(center_l0, m, spec.size_px) for m in spec.mpps])


def iter_concentric_grid(
    slide: Slide,
    centers_l0: np.ndarray | Sequence[Sequence[float]],
    spec: InputSpec,
    *,
    chunk_px: int = DEFAULT_CHUNK_PX,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices, patches)`` chunk by chunk, reading each level's covering region once per chunk.

    Parameters
    ----------
    slide
        An open slide.
    centers_l0
        ``(n, 2)`` level-0 ``(x, y)`` centres.
    spec
        Resolutions and patch size (its normalisation is not used here).
    chunk_px
        Edge of a chunk cell in pixels at the finest mpp. Memory per read is about
        ``(chunk_px + size_px)**2 * 3`` bytes.

    Yields
    ------
    indices : numpy.ndarray
        ``int64 (k,)`` positions in ``centers_l0`` (ascending within a chunk).
    patches : numpy.ndarray
        ``uint8 (k, J, size_px, size_px, 3)``, identical to :func:`read_concentric` per centre.
    """
    if chunk_px <= 0:
        raise ValueError(f"chunk_px must be positive, got {chunk_px}")
    centers = _check_centers(centers_l0)
    cell_l0 = chunk_px * spec.mpps[0] / slide.mpp
    size = spec.size_px
    for indices in chunk_points(centers, cell_l0):
        out = np.empty((len(indices), spec.num_resolutions, size, size, 3), dtype=np.uint8)
        for j, mpp in enumerate(spec.mpps):
            plans = [slide.plan(slide.box(centers[i], mpp, size), size) for i in indices]
            for level in sorted({p.level for p in plans}):
                members = [k for k, p in enumerate(plans) if p.level == level]
                union = geo.union_region([plans[k].region for k in members])
                canvas = slide.read_level_region(level, union)
                for k in members:
                    r = plans[k].region
                    crop = canvas[r[1] - union[1] : r[3] - union[1], r[0] - union[0] : r[2] - union[0]]
                    out[k, j] = slide.render(plans[k], crop)
        log.debug("concentric chunk of %d centres read", len(indices))
        yield indices, out


def read_concentric_grid(
    slide: Slide,
    centers_l0: np.ndarray | Sequence[Sequence[float]],
    spec: InputSpec,
    *,
    chunk_px: int = DEFAULT_CHUNK_PX,
) -> np.ndarray:
    """Concentric patches for many centres with shared level reads.

    Returns ``uint8 (n, J, size_px, size_px, 3)`` in the order of ``centers_l0``, equal to
    stacking :func:`read_concentric` for each centre. For very many centres prefer
    :func:`iter_concentric_grid`, which keeps only one chunk in memory.
    """
    centers = _check_centers(centers_l0)
    size = spec.size_px
    result = np.empty((len(centers), spec.num_resolutions, size, size, 3), dtype=np.uint8)
    for indices, patches in iter_concentric_grid(slide, centers, spec, chunk_px=chunk_px):
        result[indices] = patches
    return result


#: Outline colours of the fields of view, finest first (RGB).
FOV_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
)


def concentric_figure(patches: np.ndarray, mpps: Sequence[float], *, gap_px: int = 8) -> np.ndarray:
    """The paper's Fig. 1: the ``J`` patches side by side, each finer field of view outlined on the coarser ones.

    Parameters
    ----------
    patches
        ``uint8 (J, S, S, 3)`` from :func:`read_concentric`.
    mpps
        Their microns per pixel, finest first.
    gap_px
        White gap between panels, pixels.

    Returns
    -------
    numpy.ndarray
        ``uint8 (S + label band, J * S + (J - 1) * gap_px, 3)`` RGB image; panel ``j`` is titled
        with its mpp and field of view in microns, and carries a rectangle (in the colour of
        panel ``i``) for every finer patch ``i < j``: ``S * mpps[i] / mpps[j]`` pixels, centred.
    """
    count, size = patches.shape[0], patches.shape[1]
    if count != len(mpps):
        raise ValueError(f"{count} patches but {len(mpps)} mpps")
    band = 18
    width = count * size + (count - 1) * gap_px
    canvas = Image.new("RGB", (width, size + band), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    line = max(1, size // 128)
    for j in range(count):
        left = j * (size + gap_px)
        canvas.paste(Image.fromarray(np.ascontiguousarray(patches[j])), (left, band))
        colour = FOV_COLOURS[j % len(FOV_COLOURS)]
        draw.rectangle([left, band, left + size - 1, band + size - 1], outline=colour, width=line)
        draw.text((left + 2, 3), f"{mpps[j]:g} um/px, {size * mpps[j]:g} um", fill=colour)
        for i in range(j):
            edge = size * mpps[i] / mpps[j]
            lo = (size - edge) / 2
            draw.rectangle(
                [left + lo, band + lo, left + lo + edge - 1, band + lo + edge - 1],
                outline=FOV_COLOURS[i % len(FOV_COLOURS)],
                width=line,
            )
    return np.asarray(canvas)
