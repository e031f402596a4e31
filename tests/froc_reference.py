"""An independent, slow reference of CAMELYON16's lesion-level FROC and NCRF's NMS, for the tests.

Written from the rules (``docs/evaluation.md``), not from mrseg's code: per-pixel distances instead of a
distance transform, breadth-first labelling, hole filling by flood fill, moments by hand, and the FROC read
with ``numpy.interp`` as the official script does.
"""

from __future__ import annotations

from collections import deque

import numpy as np

FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def components(binary: np.ndarray) -> np.ndarray:
    """8-connected labels by breadth-first search, numbered in row-major order of their first pixel."""
    labels = np.zeros(binary.shape, np.int64)
    h, w = binary.shape
    count = 0
    for r0, c0 in zip(*np.nonzero(binary), strict=True):
        if labels[r0, c0]:
            continue
        count += 1
        labels[r0, c0] = count
        queue = deque([(r0, c0)])
        while queue:
            r, c = queue.popleft()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and binary[rr, cc] and not labels[rr, cc]:
                        labels[rr, cc] = count
                        queue.append((rr, cc))
    return labels


def fill_holes(region: np.ndarray) -> np.ndarray:
    """Background not 4-connected to the border becomes region (flood fill from the border)."""
    h, w = region.shape
    outside = np.zeros(region.shape, bool)
    border = [(r, c) for r in range(h) for c in range(w) if r in (0, h - 1) or c in (0, w - 1)]
    queue = deque((r, c) for r, c in border if not region[r, c])
    for r, c in queue:
        outside[r, c] = True
    while queue:
        r, c = queue.popleft()
        for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= rr < h and 0 <= cc < w and not region[rr, cc] and not outside[rr, cc]:
                outside[rr, cc] = True
                queue.append((rr, cc))
    return ~outside


def lesions(tumour: np.ndarray, pixel_um: float) -> tuple[np.ndarray, set[int], set[int]]:
    """Region labels (37.5 µm growth, holes filled, 8-connected), the lesion labels and the ITC labels."""
    tr, tc = np.nonzero(tumour)
    cols = np.arange(tumour.shape[1])
    d = (
        np.stack([np.sqrt((r - tr) ** 2 + (cols[:, None] - tc) ** 2).min(axis=1) for r in range(tumour.shape[0])])
        * pixel_um
    )  # row by row: memory stays small
    labels = components(fill_holes(d < 37.5))
    found, itc = set(), set()
    for k in range(1, labels.max() + 1):
        ys, xs = np.nonzero(labels == k)
        cov = np.cov(np.stack([ys, xs]), bias=True) if len(ys) > 1 else np.zeros((2, 2))
        major = 4 * np.sqrt(max(np.linalg.eigvalsh(cov).max(), 0.0)) * pixel_um
        (itc if major < 275 else found).add(k)
    return labels, found, itc


def reference_froc(
    slides: list[tuple[np.ndarray | None, np.ndarray, np.ndarray]], pixel_um: float
) -> tuple[list[float], int]:
    """Sensitivity at 1/4 .. 8 FPs per slide and the number of lesions.

    ``slides``: ``(tumour or None, cells (n, 2) of (col, row) on the tumour's grid, probabilities (n,))``.
    """
    fps: list[float] = []
    scores: list[float] = []
    for tumour, cells, probs in slides:
        if tumour is None or not tumour.any():
            fps += list(probs)
            continue
        labels, found, _ = lesions(tumour, pixel_um)
        best = dict.fromkeys(found, 0.0)
        for (col, row), p in zip(cells, probs, strict=True):
            k = labels[row, col]
            if k == 0:
                fps.append(float(p))
            elif k in best:
                best[k] = max(best[k], float(p))
        scores += list(best.values())
    n = len(slides)
    thresholds = sorted(set(fps) | {s for s in scores if s > 0}, reverse=True)
    xs = [0.0] + [sum(f >= t for f in fps) / n for t in thresholds]
    ys = [0.0] + [sum(s >= t for s in scores) / max(len(scores), 1) for t in thresholds]
    return [float(np.interp(rate, xs, ys)) for rate in FP_RATES], len(scores)


def reference_nms(prob: np.ndarray, threshold: float, radius: int) -> list[tuple[int, int, float]]:
    """NCRF's loop: take the maximum while it is above the threshold, zero the square around it."""
    work = prob.copy()
    out = []
    while work.max() > threshold:
        index = int(np.argmax(work))  # first maximum in row-major order
        r, c = divmod(index, work.shape[1])
        out.append((r, c, float(prob[r, c])))
        work[max(0, r - radius) : r + radius + 1, max(0, c - radius) : c + radius + 1] = 0
    return out
