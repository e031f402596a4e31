"""The resampler of slide reads (mrseg.wsi.resample): constants, identity, area averages, bilinear enlarging."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mrseg.wsi.resample import resample


@given(value=st.integers(0, 255), scale=st.floats(0.2, 5.0), offset=st.floats(0.0, 1.0), n=st.integers(1, 20))
def test_resample_constant_stays_constant(value: int, scale: float, offset: float, n: int) -> None:
    canvas = np.full((int(n * scale) + 4, int(n * scale) + 4, 3), value, np.uint8)
    box = (1 + offset, 1 + offset, 1 + offset + n * scale, 1 + offset + n * scale)
    out = resample(canvas, (0, 0), box, (n, n))
    assert out.shape == (n, n, 3)
    assert (out == value).all()


@given(ix=st.integers(0, 10), iy=st.integers(0, 10), w=st.integers(1, 12), h=st.integers(1, 12))
def test_resample_identity_at_unit_scale(ix: int, iy: int, w: int, h: int) -> None:
    canvas = np.random.default_rng(ix + 7 * iy).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    out = resample(canvas, (0, 0), (ix, iy, ix + w, iy + h), (w, h))
    np.testing.assert_array_equal(out, canvas[iy : iy + h, ix : ix + w])


def test_resample_area_average_of_integer_factor() -> None:
    canvas = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = resample(canvas, (0, 0), (0, 0, 16, 16), (4, 4))
    expected = canvas.reshape(4, 4, 4, 4, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(out, np.floor(expected + 0.5).astype(np.uint8))


def test_resample_half_pixel_shift_blends_neighbours() -> None:
    canvas = np.zeros((1, 6, 3), np.uint8)
    canvas[0, :, 0] = [0, 100, 200, 50, 0, 0]
    # the origin offset is honoured: canvas starts at level pixel 10
    out = resample(canvas, (10, 0), (10.5, 0, 13.5, 1), (3, 1))
    assert out[0, :, 0].tolist() == [50, 150, 125]


def test_resample_bilinear_when_enlarging() -> None:
    canvas = np.zeros((1, 4, 3), np.uint8)
    canvas[0, :, 0] = [0, 100, 200, 200]
    out = resample(canvas, (0, 0), (1, 0, 3, 1), (4, 1))
    # output centres at 1.25, 1.75, 2.25, 2.75 -> between pixel centres 0.5 .. 3.5
    assert out[0, :, 0].tolist() == [75, 125, 175, 200]
