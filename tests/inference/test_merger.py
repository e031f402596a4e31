"""On-disk merger: blending weights, constant tiles stay constant, overlaps and borders handled; map views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrseg.inference.merger import MIN_WEIGHT, Merger, OnDiskMerger, tile_weight
from mrseg.inference.settings import Ramp


@pytest.mark.parametrize("ramp", list(Ramp))
def test_tile_weight_is_symmetric_positive_and_peaks_in_the_centre(ramp: Ramp) -> None:
    w = tile_weight(16, 12, ramp)
    assert w.shape == (16, 12) and w.dtype == np.float32
    assert w.min() >= MIN_WEIGHT * 0.999
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w[8, 6] == pytest.approx(w.max())
    if ramp is not Ramp.CONSTANT:
        assert w[0, 0] < 0.1 * w.max()


def _grid_boxes(size: int, tile: int, stride: int) -> np.ndarray:
    starts = np.arange(0, size - tile + stride, stride)
    return np.array([(x, y, x + tile, y + tile) for y in starts for x in starts])


@pytest.mark.parametrize("ramp", ["linear", "gaussian"])
def test_constant_tiles_blend_to_a_constant_map(tmp_path: Path, ramp: str) -> None:
    boxes = _grid_boxes(70, 16, 12)  # tiles overhang the right/bottom border
    merger = OnDiskMerger(tmp_path / "m", (70, 70), 1, ramp=ramp, chunk=32, out_dtype="float16")
    batch = np.full((len(boxes), 1, 16, 16), 0.7, np.float32)
    merger.aggregate(batch[:5], boxes[:5])
    merger.aggregate(batch[5:], boxes[5:])
    result = merger.finalize()
    values = np.asarray(result.channels[0][:]).astype(np.float32)
    assert values.shape == (70, 70)
    np.testing.assert_allclose(values, 0.7, atol=1e-3)


def test_overlap_is_a_weighted_average_not_a_hard_cut(tmp_path: Path) -> None:
    merger = OnDiskMerger(tmp_path / "m", (8, 24), 1, ramp="linear", chunk=8, out_dtype="float16")
    left = np.zeros((1, 1, 8, 16), np.float32)
    right = np.ones((1, 1, 8, 16), np.float32)
    merger.aggregate(np.concatenate([left, right]), [(0, 0, 16, 8), (8, 0, 24, 8)])
    row = np.asarray(merger.finalize().channels[0][4]).astype(np.float32)
    assert np.all(row[:8] == 0) and np.all(row[16:] == 1)  # covered by one tile only
    overlap = row[8:16]
    assert np.all(np.diff(overlap) > 0)  # a smooth ramp from the left tile to the right one
    np.testing.assert_allclose(overlap, (np.arange(8) + 0.5) / 8, atol=2e-3)  # linear ramps cross linearly


def test_uncovered_pixels_are_zero_and_uint8_scales_to_255(tmp_path: Path) -> None:
    merger = OnDiskMerger(tmp_path / "m", (40, 40), 2, chunk=16)
    batch = np.stack([np.full((1, 8, 8), 1.0), np.full((1, 8, 8), 0.5)], axis=1).reshape(1, 2, 8, 8)
    merger.aggregate(batch.astype(np.float32), [(4, 4, 12, 12)])
    result = merger.finalize()
    a, b = (np.asarray(c[:]) for c in result.channels)
    assert a.dtype == np.uint8
    assert a[4:12, 4:12].min() == 255 and b[4:12, 4:12].max() == 128
    assert a.sum() == 255 * 64 and b[20:, 20:].max() == 0
    np.testing.assert_allclose(result.to_probability(a[4:6, 4:6]), 1.0)


def test_scattered_batch_and_tiles_outside_the_map(tmp_path: Path) -> None:
    merger = OnDiskMerger(tmp_path / "m", (600, 600), 1, chunk=64, out_dtype="float16")
    boxes = [(0, 0, 8, 8), (590, 590, 598, 598), (700, 700, 708, 708), (-4, 300, 4, 308)]
    merger.aggregate(np.full((4, 1, 8, 8), 0.25, np.float32), boxes)
    values = np.asarray(merger.finalize().channels[0][:]).astype(np.float32)
    assert merger.tiles_aggregated == 3
    np.testing.assert_allclose(values[0:8, 0:8], 0.25, atol=1e-3)
    np.testing.assert_allclose(values[590:598, 590:598], 0.25, atol=1e-3)
    np.testing.assert_allclose(values[300:308, 0:4], 0.25, atol=1e-3)
    assert np.count_nonzero(values) == 64 + 64 + 32


def test_bad_batches_are_refused(tmp_path: Path) -> None:
    merger = OnDiskMerger(tmp_path / "m", (32, 32), 1)
    with pytest.raises(ValueError, match="boxes"):
        merger.aggregate(np.zeros((1, 1, 8, 8), np.float32), [(0, 0, 9, 8)])
    with pytest.raises(ValueError, match="expected batch"):
        merger.aggregate(np.zeros((2, 1, 8, 8), np.float32), [(0, 0, 8, 8)])
    merger.finalize()
    with pytest.raises(RuntimeError):
        merger.aggregate(np.zeros((1, 1, 8, 8), np.float32), [(0, 0, 8, 8)])


def test_on_disk_merger_is_a_merger() -> None:
    assert issubclass(OnDiskMerger, Merger)
    with pytest.raises(TypeError):
        Merger()  # type: ignore[abstract]


def _two_class_map(tmp_path: Path, out_dtype: str) -> tuple[np.ndarray, np.ndarray, object]:
    """A 2-foreground-class map whose pixels cover: background wins, class 1 wins, class 2 wins, a tie."""
    p1 = np.array([[0.1, 0.7, 0.2, 0.4]], np.float32)
    p2 = np.array([[0.2, 0.1, 0.6, 0.4]], np.float32)
    merger = OnDiskMerger(tmp_path / "m", (1, 4), 2, ramp="constant", out_dtype=out_dtype)
    merger.aggregate(np.stack([p1, p2])[None], [(0, 0, 4, 1)])
    return p1, p2, merger.finalize()


@pytest.mark.parametrize("out_dtype", ["uint8", "float16"])
def test_label_view_is_the_most_probable_class_with_background(tmp_path: Path, out_dtype: str) -> None:
    _, _, pmap = _two_class_map(tmp_path, out_dtype)
    labels = pmap.labels()  # type: ignore[attr-defined]
    assert labels.shape == (1, 4) and labels.dtype == np.uint8
    # background 0.7 > 0.1, 0.2; class 1 0.7; class 2 0.6; tie 0.4 / 0.4 (background 0.2): the lower label
    np.testing.assert_array_equal(labels[:], [[0, 1, 2, 1]])
    np.testing.assert_array_equal(labels[:, 2:], [[2, 1]])


def test_foreground_view_sums_the_classes(tmp_path: Path) -> None:
    p1, p2, pmap = _two_class_map(tmp_path, "float16")
    fg = pmap.foreground()  # type: ignore[attr-defined]
    assert fg.shape == (1, 4) and fg.dtype == np.float16
    np.testing.assert_allclose(np.asarray(fg[:], np.float32), p1 + p2, atol=2e-3)


def _reference_map(batch: np.ndarray, boxes: np.ndarray, shape: tuple[int, int], ramp: str) -> np.ndarray:
    """Dense weighted average in float32, tile after tile (what the chunked merger must equal bit for bit)."""
    h, w = shape
    sums = np.zeros((batch.shape[1] + 1, h + 64, w + 64), np.float32)
    weight = tile_weight(batch.shape[2], batch.shape[3], ramp)
    for tile, (x0, y0, x1, y1) in zip(batch, boxes, strict=True):
        sums[:-1, y0:y1, x0:x1] += tile * weight
        sums[-1, y0:y1, x0:x1] += weight
    sums = sums[:, :h, :w]
    covered = sums[-1] > 0
    safe = np.where(covered, sums[-1], 1.0)
    return np.stack([np.where(covered, s / safe, 0.0) for s in sums[:-1]])


@pytest.mark.parametrize(
    ("chunk", "expected", "memory"), [(32, False, 1 << 30), (16, True, 1 << 30), (24, True, 1), (40, False, 1)]
)
def test_map_does_not_depend_on_chunks_expected_tiles_or_memory(
    tmp_path: Path, chunk: int, expected: bool, memory: int
) -> None:
    rng = np.random.default_rng(0)
    boxes = _grid_boxes(100, 20, 15)
    boxes = boxes[rng.permutation(len(boxes))][:-3]  # any order; some tiles missing
    batch = rng.random((len(boxes), 2, 20, 20), dtype=np.float32)
    merger = OnDiskMerger(
        tmp_path / "m",
        (90, 100),
        2,
        chunk=chunk,
        out_dtype="float16",
        expected=boxes if expected else None,
        memory_bytes=memory,
    )
    for start in range(0, len(boxes), 7):
        merger.aggregate(batch[start : start + 7], boxes[start : start + 7])
    if memory == 1:
        assert merger.chunks_spilled > 0
    result = merger.finalize()
    reference = _reference_map(batch, boxes, (90, 100), "linear").astype(np.float16)
    for k in range(2):
        np.testing.assert_array_equal(np.asarray(result.channels[k][:]), reference[k])
    assert not list((tmp_path / "m" / "spill").iterdir())


def test_chunks_are_finished_when_their_last_expected_tile_is_in(tmp_path: Path) -> None:
    boxes = np.array([(0, 0, 8, 8), (8, 0, 16, 8), (40, 40, 48, 48)])
    merger = OnDiskMerger(tmp_path / "m", (64, 64), 1, chunk=16, expected=boxes)
    merger.aggregate(np.ones((1, 1, 8, 8), np.float32), boxes[:1])
    store = merger._out[0]
    assert store.chunks_written == 0  # chunk (0, 0) still waits for the second tile
    merger.aggregate(np.ones((1, 1, 8, 8), np.float32), boxes[1:2])
    assert store.chunks_written == 1 and not store.region_is_fill(0, 8, 0, 16) and store.region_is_fill(16, 64, 0, 64)
    with pytest.raises(RuntimeError, match="after its expected tiles"):
        merger.aggregate(np.ones((1, 1, 8, 8), np.float32), [(2, 2, 10, 10)])
    merger.aggregate(np.ones((1, 1, 8, 8), np.float32), boxes[2:])
    pmap = merger.finalize()
    assert store.chunks_written == 2 and np.asarray(pmap.channels[0][:]).sum() == 255 * 3 * 64
