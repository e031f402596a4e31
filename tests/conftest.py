"""Shared test fixtures. Module-specific fixtures live in their own test files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mrseg.wsi.tiff import write_pyramidal_tiff

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MRSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of small real slides and annotations (``../shared/data``); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not found at {SHARED_DATA} (set MRSEG_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture()
def rgb_tiff(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a small pyramidal RGB TIFF: ``rgb_tiff(image=None, mpp=0.5, name='s.tif', **kw)``.

    Without ``image`` a seeded random-texture 600x400 image is written (lossless zlib).
    """

    def make(image: np.ndarray | None = None, mpp: float = 0.5, name: str = "slide.tif", **kw: object) -> Path:
        if image is None:
            image = np.random.default_rng(0).integers(0, 256, size=(400, 600, 3), dtype=np.uint8)
        kw.setdefault("compression", "zlib")
        return write_pyramidal_tiff(tmp_path / name, image, mpp, **kw)  # type: ignore[arg-type]

    return make
