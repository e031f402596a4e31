"""Tests of mrseg.core.png: lossless PNGs any reader opens, written atomically, bad arrays refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrseg.core.png import encode_png, write_png


@pytest.mark.parametrize(
    ("shape", "mode"), [((37, 53), "L"), ((37, 53, 3), "RGB"), ((37, 53, 4), "RGBA"), ((1, 1, 3), "RGB")]
)
def test_png_round_trips_through_pillow(shape: tuple[int, ...], mode: str) -> None:
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(encode_png(image)))
    assert decoded.format == "PNG" and decoded.mode == mode
    np.testing.assert_array_equal(np.asarray(decoded), image)


def test_png_of_a_non_contiguous_view_is_its_pixels() -> None:
    image = np.arange(40 * 30 * 3, dtype=np.uint32).reshape(40, 30, 3).astype(np.uint8)
    view = image[::2, ::-1]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(view)))), view)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((2, 4, 4, 3), np.uint8)]
)
def test_png_refuses_what_it_cannot_store(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="a PNG takes uint8"):
        encode_png(bad)


def test_write_png_leaves_no_temporary_and_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", np.full((8, 9, 3), 7, np.uint8))
    assert np.asarray(Image.open(path)).shape == (8, 9, 3)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_png(path, np.zeros((8, 9), np.float64))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
