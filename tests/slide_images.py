"""Test images whose pixels encode their own level-0 coordinates, and the pyramid mrseg writes of them.

Pixel ``(x, y)`` is ``R = x % 256, G = y % 256, B = x // 256 + 16 * (y // 256)``, so any read can be
checked exactly against arrays computed here (shared by the slide, backend and concentric tests).
"""

from __future__ import annotations

import numpy as np


def coord_image(width: int, height: int) -> np.ndarray:
    """``uint8 (height, width, 3)`` whose pixel (x, y) encodes x and y."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, (x // 256 + 16 * (y // 256)) % 256], axis=-1).astype(np.uint8)


def reduce2(a: np.ndarray) -> np.ndarray:
    """The 2x2 mean reduction of write_pyramidal_tiff (edge-replicated odd sides, round half even)."""
    h, w = a.shape[:2]
    a = np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge").astype(np.float32)
    return np.rint((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4).astype(np.uint8)


def levels_of(image: np.ndarray, count: int) -> list[np.ndarray]:
    """``image`` and its ``count - 1`` reduced levels."""
    levels = [image]
    for _ in range(count - 1):
        levels.append(reduce2(levels[-1]))
    return levels
