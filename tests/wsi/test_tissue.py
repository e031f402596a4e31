"""Tests of mrseg.wsi.tissue: detection on real and synthetic slides, queries, save/load."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.filters import gaussian, threshold_otsu
from skimage.morphology import remove_small_objects

from mrseg.core.errors import DataError
from mrseg.core.tissue_spec import TissueSettings
from mrseg.wsi.slide import Slide
from mrseg.wsi.tissue import TissueMask, clean_tissue, detect_tissue, saturation, tissue_mask

PINK = np.array([220, 140, 190])
PURPLE = np.array([130, 70, 160])


def he_disc(size: int = 800, radius: float = 250.0, seed: int = 0, pen: bool = False) -> tuple[np.ndarray, float]:
    """White image with an H&E-coloured textured disc; returns the image and the disc's area fraction."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2
    image = np.full((size, size, 3), 245, dtype=np.float64) + rng.normal(0, 3, (size, size, 3))
    nuclei = rng.random((size, size)) < 0.2
    tissue = np.where(nuclei[..., None], PURPLE, PINK) + rng.normal(0, 12, (size, size, 3))
    image[disc] = tissue[disc]
    if pen:  # a blue-green marker line across the background
        image[40:60, 50:750] = (20, 120, 170)
    return np.clip(image, 0, 255).astype(np.uint8), float(disc.mean())


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("name", "mpp", "low", "high"),
    [("CMU-1-Small-Region.svs", None, 0.25, 0.55), ("tcga-cr-7395-01a-01-ts1.svs", 0.5, 0.5, 0.8)],
)
def test_real_slides_reasonable_fraction(
    shared_data: Path, name: str, mpp: float | None, low: float, high: float
) -> None:
    # Checked by eye on overlays: CMU ~0.37 (a strip of skin), TCGA ~0.66 (a large tumour section).
    with Slide.open(shared_data / "slides" / name, mpp=mpp) as slide:
        tm = tissue_mask(slide, TissueSettings(mpp=8.0))
        thumb = slide.thumbnail(8.0)
    assert tm.mask.shape == thumb.shape[:2]
    assert low < tm.fraction < high
    assert tm.box_l0 == (0.0, 0.0, *map(float, slide.dimensions))
    # Tissue pixels are darker and more coloured than the rest on average.
    assert thumb[tm.mask].mean() < thumb[~tm.mask].mean() - 20


def test_known_disc_fraction(rgb_tiff: Callable[..., Path]) -> None:
    image, truth = he_disc(pen=True)
    with Slide.open(rgb_tiff(image, mpp=0.5)) as slide:
        tm = tissue_mask(slide, TissueSettings(mpp=2.0))  # 4x coarser: a 200 x 200 mask
    assert tm.mask.shape == (200, 200)
    assert tm.fraction == pytest.approx(truth, abs=0.02)
    assert not tm.mask[10:15, 12:188].any()  # the pen line is not tissue
    centre, corner = np.array([[400.0, 400.0]]), np.array([[20.0, 780.0]])
    assert tm.contains(centre)[0] and not tm.contains(corner)[0]
    assert tm.fraction_in_box((300, 300, 500, 500)) == pytest.approx(1.0)
    assert tm.fraction_in_box((0, 700, 100, 800)) == 0.0


@pytest.mark.parametrize("value", [255, 0, 250])
def test_blank_slides_give_empty_mask_and_warning(
    rgb_tiff: Callable[..., Path], caplog: pytest.LogCaptureFixture, value: int
) -> None:
    image = np.full((300, 400, 3), value, dtype=np.uint8)
    with Slide.open(rgb_tiff(image, mpp=0.5)) as slide, caplog.at_level(logging.WARNING, logger="mrseg"):
        tm = tissue_mask(slide, TissueSettings(mpp=4.0))
    assert not tm.mask.any() and tm.fraction == 0.0
    assert "no tissue found" in caplog.text


def test_noisy_background_is_not_tissue() -> None:
    rng = np.random.default_rng(3)
    image = np.clip(240 + rng.normal(0, 4, (200, 200, 3)), 0, 255).astype(np.uint8)
    assert not detect_tissue(image, mpp=8.0).any()


class StandIn:
    """Minimal slide-like object: a fixed thumbnail for a 1000 x 600 level-0 slide at 0.5 mpp."""

    def __init__(self, thumb: np.ndarray) -> None:
        self.thumb = thumb
        self.dimensions = (1000, 600)
        self.mpp = 0.5
        self.path = Path("standin.tif")

    def thumbnail(self, mpp: float) -> np.ndarray:
        return self.thumb


def test_queries_follow_the_read_grid() -> None:
    thumb = np.full((60, 100, 3), 255, dtype=np.uint8)
    thumb[20:40, 30:70] = PURPLE  # 10 level-0 px per mask pixel
    params = TissueSettings(min_object_um2=1.0, smooth_um=0.0)
    tm = tissue_mask(StandIn(thumb), dataclasses.replace(params, mpp=5.0))
    assert tm.scale == (10.0, 10.0)
    assert tm.mask.sum() == 20 * 40
    pts = np.array([[300.0, 200.0], [299.9, 200.0], [699.9, 399.9], [700.0, 350.0], [-5.0, 250.0], [350.0, 1e6]])
    np.testing.assert_array_equal(tm.contains(pts), [True, False, True, False, False, False])
    assert tm.fraction_in_box((295, 200, 305, 210)) == pytest.approx(0.5)
    assert tm.fraction_in_box((300, 200, 700, 400)) == pytest.approx(1.0)
    assert tm.fraction_in_box((600, 300, 800, 500)) == pytest.approx(0.25)
    assert tm.fraction_in_box((900, 500, 1100, 700)) == 0.0
    grid = tm.rasterize((0, 0, 1000, 600), (200, 120))
    np.testing.assert_array_equal(grid, np.kron(tm.mask, np.ones((2, 2), dtype=bool)))
    with pytest.raises(ValueError):
        tm.fraction_in_box((10, 10, 5, 20))


@pytest.mark.parametrize("suffix", [".png", ".npz"])
def test_save_load_roundtrip(tmp_path: Path, suffix: str) -> None:
    mask = np.random.default_rng(0).random((30, 40)) > 0.5
    tm = TissueMask(mask=mask, mpp=8.0, box_l0=(0.0, 0.0, 640.0, 480.0))
    path = tm.save(tmp_path / f"tissue{suffix}")
    loaded = TissueMask.load(path)
    np.testing.assert_array_equal(loaded.mask, mask)
    assert loaded.mpp == 8.0 and loaded.box_l0 == tm.box_l0


def test_load_rejects_foreign_file(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "plain.png")
    with pytest.raises(DataError, match="not a tissue mask"):
        TissueMask.load(tmp_path / "plain.png")


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        TissueMask(mask=np.zeros((0, 3), bool), mpp=8.0, box_l0=(0, 0, 1, 1))
    with pytest.raises(ValueError):
        detect_tissue(np.zeros((5, 5), np.uint8), mpp=8.0)


def test_fraction_in_boxes_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    mask = rng.random((12, 16)) > 0.6
    tm = TissueMask(mask=mask, mpp=8.0, box_l0=(0.0, 0.0, 160.0, 120.0))  # 10 level-0 px per mask pixel
    x0 = rng.uniform(-30, 150, 40)
    y0 = rng.uniform(-30, 110, 40)
    boxes = np.column_stack([x0, y0, x0 + rng.uniform(1, 60, 40), y0 + rng.uniform(1, 60, 40)])
    fast = tm.fraction_in_boxes(boxes)
    for box, value in zip(boxes, fast, strict=True):
        # Brute force: the box's own fine grid of 0.05 level-0 px, counting centres on tissue.
        fine = tm.rasterize(box, (max(1, round((box[2] - box[0]) * 20)), max(1, round((box[3] - box[1]) * 20))))
        assert value == pytest.approx(fine.mean(), abs=0.01)
    assert tm.fraction_in_box(boxes[0]) == pytest.approx(fast[0])


def _fraction_with_whole_table(tm: TissueMask, boxes: np.ndarray) -> np.ndarray:
    """The fractions from the summed-area table of the whole mask (the method before the table was cropped)."""
    h, w = tm.mask.shape
    table = np.zeros((h + 1, w + 1), dtype=np.int64)
    table[1:, 1:] = tm.mask.cumsum(axis=0).cumsum(axis=1)
    sx, sy = tm.scale
    u = np.clip((boxes[:, [0, 2]] - tm.box_l0[0]) / sx, 0, w)
    v = np.clip((boxes[:, [1, 3]] - tm.box_l0[1]) / sy, 0, h)

    def cumulative(uu: np.ndarray, vv: np.ndarray) -> np.ndarray:
        i0 = np.minimum(np.floor(uu).astype(np.int64), w - 1)
        j0 = np.minimum(np.floor(vv).astype(np.int64), h - 1)
        a, b = uu - i0, vv - j0
        f00, f10 = table[j0, i0], table[j0, i0 + 1]
        f01, f11 = table[j0 + 1, i0], table[j0 + 1, i0 + 1]
        return (1 - a) * (1 - b) * f00 + a * (1 - b) * f10 + (1 - a) * b * f01 + a * b * f11

    covered = (
        cumulative(u[:, 1], v[:, 1])
        - cumulative(u[:, 0], v[:, 1])
        - cumulative(u[:, 1], v[:, 0])
        + cumulative(u[:, 0], v[:, 0])
    )
    covered[covered <= 64 * float(np.finfo(np.float64).eps) * float(table[-1, -1])] = 0.0
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (sx * sy)
    return np.clip(covered / area, 0.0, 1.0)


@pytest.mark.parametrize("where", ["centre", "top-left", "bottom-right", "one pixel", "everywhere", "none"])
def test_fraction_in_boxes_is_bytewise_that_of_the_whole_table(where: str) -> None:
    """The table is built over the tissue's bounding box only: the fractions are the whole table's, to the bit."""
    rng = np.random.default_rng(11)
    mask = np.zeros((40, 56), dtype=bool)
    region = {
        "centre": np.s_[12:25, 20:41],
        "top-left": np.s_[0:9, 0:7],
        "bottom-right": np.s_[30:40, 45:56],
        "one pixel": np.s_[17:18, 3:4],
        "everywhere": np.s_[:, :],
        "none": np.s_[0:0, 0:0],
    }[where]
    mask[region] = rng.random(mask[region].shape) > 0.4
    if where == "one pixel":
        mask[region] = True
    # 0.243 µm/px slide, 8 µm/px mask: tile corners fall inside mask pixels (the rounding case)
    scale = 8.0 / 0.243
    tm = TissueMask(mask=mask, mpp=8.0, box_l0=(0.0, 0.0, 56 * scale, 40 * scale))
    x0 = rng.uniform(-3 * scale, 58 * scale, 500)
    y0 = rng.uniform(-3 * scale, 42 * scale, 500)
    boxes = np.column_stack([x0, y0, x0 + rng.uniform(0.5, 20, 500) * scale, y0 + rng.uniform(0.5, 20, 500) * scale])
    got = tm.fraction_in_boxes(boxes)
    np.testing.assert_array_equal(got, _fraction_with_whole_table(tm, boxes))
    if where == "none":
        assert not got.any()


@pytest.mark.slow
def test_synthetic_slide_tissue_covers_its_annotations(tmp_path: Path) -> None:
    synth = pytest.importorskip("mrseg.synth")
    from mrseg.wsi.annotations import load_annotations

    manifest = synth.generate(tmp_path / "synth", 1, seed=0, size_px=1024)
    row = manifest.read_text().splitlines()[1].split(",")
    root = manifest.parent
    with Slide.open(root / row[0]) as slide:
        tm = tissue_mask(slide, TissueSettings(mpp=4.0))
        ann = load_annotations(root / row[1], slide_dimensions=slide.dimensions)
    assert 0.1 < tm.fraction < 0.95
    if not ann.labels:
        pytest.skip("the generator drew a slide without tumour for this seed")
    for label in ann.labels:
        points = ann.sample_points(label, 200, np.random.default_rng(0))
        assert tm.contains(points).mean() > 0.95


# ------------------------------------------------------------------ banded detection = whole image
def _reference_detect(rgb: np.ndarray, mpp: float, p: TissueSettings) -> np.ndarray:
    """The whole-image method as it was before banding (the oracle)."""
    hsv = rgb2hsv(rgb[..., :3])
    hue, sat = hsv[..., 0], hsv[..., 1]
    dark = rgb[..., :3].max(axis=2) < p.dark_threshold
    pen = (hue >= p.pen_hue[0]) & (hue <= p.pen_hue[1]) & (sat > p.pen_saturation)
    valid = ~(dark | pen)
    sigma = p.smooth_um / mpp
    smooth = gaussian(sat, sigma=sigma) if sigma >= 0.5 else sat
    values = smooth[valid]
    if values.size == 0:
        return np.zeros(sat.shape, dtype=bool)
    otsu = threshold_otsu(values) if np.ptp(values) > 0 else float(values[0])
    tissue = (smooth > float(np.clip(otsu, p.min_saturation, p.max_saturation))) & valid
    min_size = max(1, round(p.min_object_um2 / mpp**2))
    max_hole = max(1, round(p.max_hole_um2 / mpp**2))
    if min_size > 1:
        tissue = remove_small_objects(tissue, max_size=min_size - 1)
    holes = ndimage.binary_fill_holes(tissue) & ~tissue
    return tissue | (holes & ~remove_small_objects(holes, max_size=max_hole))


def _blotchy_rgb(seed: int, shape: tuple[int, int] = (97, 83)) -> np.ndarray:
    """Pink tissue blobs on grey glass, with black voids and blue pen strokes."""
    rng = np.random.default_rng(seed)
    h, w = shape
    rgb = np.full((h, w, 3), 228, dtype=np.uint8) + rng.integers(0, 12, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(6):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, 20)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        rgb[blob] = (rng.integers(150, 215), rng.integers(60, 140), rng.integers(140, 200))
    rgb[rng.integers(0, h), :] = (30, 120, 200)  # pen
    rgb[:, rng.integers(0, w)] = (10, 10, 10)  # void
    return rgb


@pytest.mark.parametrize(
    ("mpp", "smooth_um", "band_pixels"),
    [(8.0, 8.0, 1), (8.0, 8.0, 83 * 5), (8.0, 8.0, 1 << 20), (2.0, 40.0, 83 * 7), (2.0, 40.0, 83 * 40), (8.0, 2.0, 1)],
)
@pytest.mark.parametrize("threads", [1, 3])
def test_banded_detection_equals_whole_image(mpp: float, smooth_um: float, band_pixels: int, threads: int) -> None:
    # bands of 1, 5, 7, 40 and all rows, against halos of 4 and 80 rows and no smoothing (sigma < 0.5),
    # computed one band at a time or three at once
    p = TissueSettings(smooth_um=smooth_um, min_object_um2=4 * mpp**2 * 30, max_hole_um2=4 * mpp**2 * 40)
    for seed in range(2):
        rgb = _blotchy_rgb(seed)
        got = detect_tissue(rgb, mpp, p, band_pixels=band_pixels, threads=threads)
        np.testing.assert_array_equal(got, _reference_detect(rgb, mpp, p))
        assert got.any() and not got.all()


@pytest.mark.parametrize("pen_hue", [(0.25, 0.65), (1 / 6, 5 / 6), (0.0, 0.9)])
def test_pen_marks_of_every_colour_as_the_whole_image(pen_hue: tuple[float, float]) -> None:
    # every hue and saturation (random colours, ties included): the red-sector shortcut, taken for
    # pen hues within [1/6, 5/6] and not otherwise, must reject exactly the reference's pen pixels
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    rgb[::7, :, 1] = rgb[::7, :, 0]  # ties between the largest channels
    rgb[::5, :, 2] = rgb[::5, :, 0]
    p = TissueSettings(pen_hue=pen_hue, smooth_um=8.0, min_object_um2=0.0, max_hole_um2=64.0)
    np.testing.assert_array_equal(detect_tissue(rgb, 8.0, p, band_pixels=70 * 9), _reference_detect(rgb, 8.0, p))


@pytest.mark.parametrize("fill", [(0, 0, 0), (240, 240, 240), (200, 100, 160)])
def test_banded_detection_uniform_images(fill: tuple[int, int, int]) -> None:
    # no valid pixel (black), one saturation value (white glass; uniform tissue): as the whole image
    rgb = np.empty((40, 30, 3), dtype=np.uint8)
    rgb[:] = fill
    p = TissueSettings()
    np.testing.assert_array_equal(detect_tissue(rgb, 8.0, p, band_pixels=60), _reference_detect(rgb, 8.0, p))


def test_saturation_is_rgb2hsv_saturation() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    rgb[0, :8] = 0  # black: 0/0
    rgb[1, :8] = 255  # white, and grey below: delta 0
    rgb[2, :8] = 128
    np.testing.assert_array_equal(saturation(rgb), rgb2hsv(rgb)[..., 1])


def test_saturation_table_is_rgb2hsv_for_every_channel_pair() -> None:
    # every (largest, smallest) channel pair, the middle channel anywhere between, in every channel order
    high, low = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    keep = low <= high
    high, low = high[keep], low[keep]
    mid = (high + low) // 2
    for order in ((high, mid, low), (low, high, mid), (mid, low, high)):
        rgb = np.stack(order, axis=-1).astype(np.uint8)[np.newaxis]
        np.testing.assert_array_equal(saturation(rgb), rgb2hsv(rgb)[..., 1])
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 7, dtype=np.uint8)], axis=-1)
    np.testing.assert_array_equal(saturation(rgba), rgb2hsv(rgb)[..., 1])  # alpha is not a colour


def test_saturation_of_float_images_is_skimage_formula() -> None:
    rgb = np.random.default_rng(1).random((16, 12, 3))
    np.testing.assert_array_equal(saturation(rgb), rgb2hsv(rgb)[..., 1])


def _reference_clean(tissue: np.ndarray, min_size: int, max_hole: int) -> np.ndarray:
    """The clean-up on the whole image with skimage (the oracle)."""
    if min_size > 1:
        tissue = remove_small_objects(tissue, max_size=min_size - 1)
    holes = ndimage.binary_fill_holes(tissue) & ~tissue
    return tissue | (holes & ~remove_small_objects(holes, max_size=max_hole))


@pytest.mark.parametrize("where", ["centre", "top-left", "bottom-right", "full width", "everywhere", "one pixel"])
def test_clean_up_on_the_tissue_box_equals_the_whole_image(where: str) -> None:
    # objects and holes of every size, the tissue box inside the image or on its borders
    rng = np.random.default_rng(sum(map(ord, where)))
    h, w = 90, 110
    for _ in range(4):
        raw = np.zeros((h, w), dtype=bool)
        box = {
            "centre": (slice(20, 70), slice(30, 80)),
            "top-left": (slice(0, 40), slice(0, 50)),
            "bottom-right": (slice(50, h), slice(60, w)),
            "full width": (slice(30, 60), slice(0, w)),
            "everywhere": (slice(0, h), slice(0, w)),
            "one pixel": (slice(44, 45), slice(50, 51)),
        }[where]
        raw[box] = rng.random(raw[box].shape) < rng.uniform(0.4, 0.8)
        if where != "one pixel":  # a ring around a hole, and a blob touching the box's edge
            yy, xx = np.mgrid[:h, :w]
            cy, cx = (box[0].start + box[0].stop) // 2, (box[1].start + box[1].stop) // 2
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            raw[box] |= ((d2 > 16) & (d2 < 64))[box]
            raw[box] &= ~(d2 < 9)[box]
        for min_size, max_hole in ((1, 1), (5, 4), (12, 30), (40, 200)):
            got = clean_tissue(raw, 1.0, TissueSettings(min_object_um2=min_size, max_hole_um2=max_hole))
            np.testing.assert_array_equal(got, _reference_clean(raw, min_size, max_hole))
    assert not clean_tissue(np.zeros((5, 6), bool), 1.0).any()


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (2, 2), (33, 57), (128, 96)])
def test_clean_up_of_speckled_masks_is_the_oracle(shape: tuple[int, int]) -> None:
    # dense speckle: many holes of every size, holes reaching the border only diagonally (still holes
    # under 4-connectivity), objects touching every edge
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for density in (0.3, 0.5, 0.6, 0.75, 0.9):
        raw = rng.random(shape) < density
        for min_size, max_hole in ((1, 1), (2, 3), (6, 10), (25, 60)):
            got = clean_tissue(raw, 1.0, TissueSettings(min_object_um2=min_size, max_hole_um2=max_hole))
            np.testing.assert_array_equal(got, _reference_clean(raw, min_size, max_hole))
