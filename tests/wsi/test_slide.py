"""Slide: metadata, mpp, level choice, exact and resampled reads, borders, backends, bad files.

Fixtures are pyramidal TIFFs whose pixels encode their own level-0 coordinates
(R = x % 256, G = y % 256, B = x // 256 + 16 * (y // 256)), so each read is checked exactly
against arrays computed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from mrseg.core.errors import MissingMppError, SlideError
from mrseg.wsi.slide import Slide
from mrseg.wsi.tiff import write_pyramidal_tiff
from slide_images import coord_image, levels_of

BACKENDS = ["openslide", "tiffslide"]
MPP = 0.5


def white_padded(level: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(level, ((pad, pad), (pad, pad), (0, 0)), constant_values=255)


def area_reference(image: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """Area-average (matrix form) of ``image`` padded with white, independent of the library code."""
    pad = 64
    padded = white_padded(image, pad).astype(np.float64)

    def weights(start: float, stop: float, n_out: int, n_src: int) -> np.ndarray:
        edges = np.linspace(start, stop, n_out + 1) + pad
        lo = np.maximum(edges[:-1, None], np.arange(n_src)[None, :])
        hi = np.minimum(edges[1:, None], np.arange(n_src)[None, :] + 1)
        return np.clip(hi - lo, 0, None) / (edges[1:] - edges[:-1])[:, None]

    wx = weights(box[0], box[2], size[0], padded.shape[1])
    wy = weights(box[1], box[3], size[1], padded.shape[0])
    out = np.einsum("vy,yxc,ux->vuc", wy, padded, wx, optimize=True)
    return np.floor(out + 0.5).astype(np.uint8)


@pytest.fixture()
def even_slide(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    image = coord_image(640, 384)
    path = write_pyramidal_tiff(tmp_path / "even.tif", image, MPP, compression="zlib", tile=64, min_size=64)
    return path, levels_of(image, 5)


@pytest.fixture()
def odd_slide(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    image = coord_image(601, 403)
    path = write_pyramidal_tiff(tmp_path / "odd.tif", image, MPP, compression="zlib", tile=64, min_size=64)
    return path, levels_of(image, 5)


# ----------------------------------------------------------------------------------------------
# metadata
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_metadata(odd_slide: tuple[Path, list[np.ndarray]], backend: str) -> None:
    path, _ = odd_slide
    with Slide.open(path, backend=backend) as slide:
        assert slide.backend == backend
        assert slide.path == path
        assert slide.dimensions == (601, 403)
        assert slide.level_count == 5
        assert slide.level_dimensions == ((601, 403), (301, 202), (151, 101), (76, 51), (38, 26))
        assert slide.level_downsamples == (1.0, 2.0, 4.0, 8.0, 16.0)  # snapped, not OpenSlide's 1.996...
        assert slide.mpp == pytest.approx(MPP)
        assert slide.level_mpps == pytest.approx((0.5, 1.0, 2.0, 4.0, 8.0))
        assert slide.vendor == "generic-tiff"
        assert slide.associated_images == ()
        assert "backend='" + backend in repr(slide)


def test_auto_prefers_openslide(even_slide: tuple[Path, list[np.ndarray]]) -> None:
    with Slide.open(even_slide[0]) as slide:
        assert slide.backend == "openslide"


def test_mpp_override_wins(even_slide: tuple[Path, list[np.ndarray]]) -> None:
    with Slide.open(even_slide[0], mpp=0.25) as slide:
        assert slide.mpp == 0.25
        assert slide.level_mpps == pytest.approx((0.25, 0.5, 1.0, 2.0, 4.0))


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "x"])
def test_bad_mpp_override(even_slide: tuple[Path, list[np.ndarray]], bad: object) -> None:
    with pytest.raises(SlideError, match="mpp override"):
        Slide.open(even_slide[0], mpp=bad)  # type: ignore[arg-type]


def _plain_tiff(path: Path, resolution: tuple[float, float] | None, unit: str | None = "CENTIMETER") -> Path:
    image = coord_image(64, 48)
    if resolution is None:
        tifffile.imwrite(path, image, tile=(16, 16), photometric="rgb", compression="zlib")
    else:
        tifffile.imwrite(
            path,
            image,
            tile=(16, 16),
            photometric="rgb",
            compression="zlib",
            resolution=resolution,
            resolutionunit=unit,
        )
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_mpp_names_file_and_override(tmp_path: Path, backend: str) -> None:
    path = _plain_tiff(tmp_path / "nompp.tif", None)
    with pytest.raises(MissingMppError, match=r"nompp\.tif.*--slide-mpp"):
        Slide.open(path, backend=backend)
    with Slide.open(path, backend=backend, mpp=0.5) as slide:
        assert slide.mpp == 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_anisotropic_mpp_refused(tmp_path: Path, backend: str) -> None:
    path = _plain_tiff(tmp_path / "aniso.tif", (1e4 / 0.5, 1e4 / 0.6))
    with pytest.raises(SlideError, match="anisotropic"):
        Slide.open(path, backend=backend)
    with Slide.open(path, backend=backend, mpp=0.55) as slide:  # an explicit mpp is accepted
        assert slide.mpp == 0.55


def test_nearly_isotropic_mpp_is_averaged(tmp_path: Path) -> None:
    path = _plain_tiff(tmp_path / "near.tif", (1e4 / 0.5, 1e4 / 0.505))
    with Slide.open(path) as slide:
        assert slide.mpp == pytest.approx(0.5025, rel=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mpp_from_tiff_resolution_tags(tmp_path: Path, backend: str) -> None:
    cm = _plain_tiff(tmp_path / "cm.tif", (1e4 / 0.25, 1e4 / 0.25))
    inch = _plain_tiff(tmp_path / "inch.tif", (25400 / 0.5, 25400 / 0.5), unit="INCH")
    with Slide.open(cm, backend=backend) as a, Slide.open(inch, backend=backend) as b:
        assert a.mpp == pytest.approx(0.25) and b.mpp == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# exact reads
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (32, 32), (33, 17)])
@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_exact_level_reads(
    even_slide: tuple[Path, list[np.ndarray]], backend: str, size: tuple[int, int], level: int
) -> None:
    path, levels = even_slide
    ds = 2**level
    lvl = levels[level]
    with Slide.open(path, backend=backend) as slide:
        for ix, iy in [(0, 0), (3, 5), (lvl.shape[1] - size[0], lvl.shape[0] - size[1])]:
            center = ((ix + size[0] / 2) * ds, (iy + size[1] / 2) * ds)
            plan = slide.plan(slide.box(center, MPP * ds, size), size)
            assert plan.level == level and plan.aligned
            out = slide.read(center, MPP * ds, size)
            assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
            np.testing.assert_array_equal(out, lvl[iy : iy + size[1], ix : ix + size[0]])


@pytest.mark.parametrize("level", [1, 2, 3])
def test_exact_reads_odd_pyramid_tiffslide(odd_slide: tuple[Path, list[np.ndarray]], level: int) -> None:
    path, levels = odd_slide
    ds = 2**level
    lvl = levels[level]
    size = (9, 7)
    with Slide.open(path, backend="tiffslide") as slide:
        for ix, iy in [(0, 0), (lvl.shape[1] // 2, 1), (lvl.shape[1] - 10, lvl.shape[0] - 8)]:
            out = slide.read(((ix + 4.5) * ds, (iy + 3.5) * ds), MPP * ds, size)
            np.testing.assert_array_equal(out, lvl[iy : iy + 7, ix : ix + 9])


@pytest.mark.parametrize("backend", BACKENDS)
def test_level_choice_with_tolerance(even_slide: tuple[Path, list[np.ndarray]], backend: str) -> None:
    with Slide.open(even_slide[0], backend=backend) as slide:
        assert slide.plan(slide.box((100, 100), 0.75, 8), 8).level == 0
        assert slide.plan(slide.box((100, 100), 0.99, 8), 8).level == 1  # 1.0 <= 0.99 * 1.02
        assert slide.plan(slide.box((100, 100), 1.9, 8), 8).level == 1
        assert slide.plan(slide.box((100, 100), 100.0, 8), 8).level == 4
        assert slide.plan(slide.box((100, 100), 0.1, 8), 8).level == 0


# ----------------------------------------------------------------------------------------------
# resampled reads
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("center", "mpp", "size"),
    [
        ((100.25, 80.5), 0.5, (12, 9)),  # sub-pixel centre, level mpp matches
        ((200.0, 150.0), 0.75, (10, 10)),  # between levels 0 and 1, read level 0
        ((123.7, 99.1), 0.6, (15, 11)),
    ],
)
def test_resampled_reads_match_area_reference(
    even_slide: tuple[Path, list[np.ndarray]],
    backend: str,
    center: tuple[float, float],
    mpp: float,
    size: tuple[int, int],
) -> None:
    path, levels = even_slide
    with Slide.open(path, backend=backend) as slide:
        box = slide.box(center, mpp, size)
        out = slide.read(center, mpp, size)
    expected = area_reference(levels[0], box, size)
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_resampled_read_from_reduced_level(even_slide: tuple[Path, list[np.ndarray]], backend: str) -> None:
    path, levels = even_slide
    with Slide.open(path, backend=backend) as slide:
        box = slide.box((301.3, 170.9), 3.0, (13, 8))
        assert slide.plan(box, (13, 8)).level == 2
        out = slide.read_box(box, (13, 8))
    expected = area_reference(levels[2], tuple(v / 4 for v in box), (13, 8))  # type: ignore[arg-type]
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_upsampling_is_bilinear(even_slide: tuple[Path, list[np.ndarray]]) -> None:
    path, levels = even_slide
    with Slide.open(path) as slide:
        center, size = (50.3, 40.7), (16, 12)
        box = slide.box(center, 0.2, size)
        out = slide.read(center, 0.2, size)
    sx = (box[2] - box[0]) / size[0]
    xs = box[0] + (np.arange(size[0]) + 0.5) * sx - 0.5
    ys = box[1] + (np.arange(size[1]) + 0.5) * sx - 0.5
    grid = np.meshgrid(ys, xs, indexing="ij")
    ref = np.stack([ndimage.map_coordinates(levels[0][..., c].astype(float), grid, order=1) for c in range(3)], axis=-1)
    assert np.abs(out.astype(float) - ref).max() <= 0.5 + 1e-6


def test_pyramid_and_single_level_slides_agree(tmp_path: Path) -> None:
    """Reading a reduced level (2x2 means) ~ area-averaging level 0: within 1 grey level."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)
    pyramid = write_pyramidal_tiff(tmp_path / "p.tif", image, MPP, compression="zlib", tile=64, min_size=32)
    flat = write_pyramidal_tiff(tmp_path / "f.tif", image, MPP, compression="zlib", tile=64, min_size=1024)
    with Slide.open(pyramid) as p, Slide.open(flat) as f:
        assert f.level_count == 1 and p.level_count == 5
        for mpp in (1.0, 2.0, 4.0):
            a, b = p.read((160, 128), mpp, 24), f.read((160, 128), mpp, 24)
            assert np.abs(a.astype(int) - b).max() <= 1


# ----------------------------------------------------------------------------------------------
# borders and background
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level", [0, 1, 2])
def test_borders_are_white(even_slide: tuple[Path, list[np.ndarray]], backend: str, level: int) -> None:
    path, levels = even_slide
    ds = 2**level
    lvl = levels[level]
    lh, lw = lvl.shape[:2]
    size = (11, 9)
    padded = white_padded(lvl, 20)
    with Slide.open(path, backend=backend) as slide:
        for ix, iy in [(-3, 5), (lw - 4, 5), (5, -2), (7, lh - 3), (-11, -9), (lw + 2, lh + 5), (-5, lh - 4)]:
            center = ((ix + 5.5) * ds, (iy + 4.5) * ds)
            out = slide.read(center, MPP * ds, size)
            np.testing.assert_array_equal(out, padded[iy + 20 : iy + 29, ix + 20 : ix + 31], err_msg=f"{ix},{iy}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_border_pixels_outside_slide_are_white(odd_slide: tuple[Path, list[np.ndarray]], backend: str) -> None:
    # level 1 of a 601-wide slide has 301 pixels; the last one's centre (x=601) is outside the slide
    path, _ = odd_slide
    with Slide.open(path, backend=backend) as slide:
        out = slide.read((600.0, 200.0), 1.0, (4, 4))
    assert (out[:, 2:] == 255).all()
    assert (out[:, :2] != 255).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_far_outside_is_all_white(even_slide: tuple[Path, list[np.ndarray]], backend: str) -> None:
    with Slide.open(even_slide[0], backend=backend) as slide:
        for center in [(-1000.0, -1000.0), (1e6, 50.0), (50.0, 1e6)]:
            for mpp in (0.5, 0.8, 2.0):
                assert (slide.read(center, mpp, (7, 5)) == 255).all()
        assert slide.pixels_read == 0


def test_partially_outside_resampled_read_fades_to_white(even_slide: tuple[Path, list[np.ndarray]]) -> None:
    path, levels = even_slide
    with Slide.open(path) as slide:
        center, size = (2.3, 50.6), (16, 8)
        box = slide.box(center, 0.7, size)
        out = slide.read(center, 0.7, size)
    expected = area_reference(levels[0], box, size)
    cx = box[0] + (np.arange(16) + 0.5) * (box[2] - box[0]) / 16
    expected[:, cx < 0] = 255
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_rgba_flattened_on_white(tmp_path: Path, backend: str) -> None:
    image = np.zeros((64, 64, 4), np.uint8)
    image[..., 0] = 200
    image[..., 3] = 255
    image[:, :16, 3] = 0  # transparent
    image[:, 16:32, 3] = 128  # half
    path = write_pyramidal_tiff(tmp_path / "rgba.tif", image, MPP, compression="zlib", tile=16, min_size=64)
    with Slide.open(path, backend=backend) as slide:
        out = slide.read_box((0, 0, 64, 64), (64, 64))
    assert (out[:, :16] == 255).all()
    np.testing.assert_allclose(out[:, 16:32, 0], 200 * 128 / 255 + 255 * 127 / 255, atol=1.5)
    np.testing.assert_allclose(out[:, 16:32, 1], 255 * 127 / 255, atol=1.5)
    assert (out[:, 32:] == (200, 0, 0)).all()


# ----------------------------------------------------------------------------------------------
# backends agree
# ----------------------------------------------------------------------------------------------


REQUESTS = [
    ((100.0, 100.0), 0.5, (16, 16)),
    ((321.5, 200.25), 0.9, (21, 13)),
    ((10.0, 370.0), 2.0, (20, 20)),
    ((640.0, 0.0), 1.3, (9, 9)),
    ((300.7, 190.1), 4.0, (15, 15)),
    ((300.7, 190.1), 0.3, (15, 15)),
]


@pytest.mark.parametrize(("center", "mpp", "size"), REQUESTS)
def test_backends_agree_on_fixture(
    even_slide: tuple[Path, list[np.ndarray]], center: tuple[float, float], mpp: float, size: tuple[int, int]
) -> None:
    with Slide.open(even_slide[0], backend="openslide") as a, Slide.open(even_slide[0], backend="tiffslide") as b:
        np.testing.assert_array_equal(a.read(center, mpp, size), b.read(center, mpp, size))


@pytest.mark.realdata
def test_backends_agree_on_cmu(shared_data: Path) -> None:
    path = shared_data / "slides" / "CMU-1-Small-Region.svs"
    with Slide.open(path, backend="openslide") as a, Slide.open(path, backend="tiffslide") as b:
        assert a.mpp == b.mpp == pytest.approx(0.499)
        assert a.dimensions == b.dimensions == (2220, 2967)
        assert a.vendor == b.vendor == "aperio"
        assert set(a.associated_images) == set(b.associated_images) == {"label", "macro", "thumbnail"}
        for center, mpp, size in [((1110, 1480), 0.499, 64), ((1000.5, 700.25), 1.0, 48), ((5, 2960), 2.0, 40)]:
            np.testing.assert_array_equal(a.read(center, mpp, size), b.read(center, mpp, size))
        label = a.associated_image("label")
        assert label.ndim == 3 and label.shape[2] == 3
        with pytest.raises(SlideError, match="no associated image"):
            a.associated_image("nope")


@pytest.mark.realdata
@pytest.mark.parametrize("backend", BACKENDS)
def test_tcga_slide_without_mpp(shared_data: Path, backend: str) -> None:
    path = shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs"
    with pytest.raises(MissingMppError, match=r"tcga-cr-7395.*--slide-mpp"):
        Slide.open(path, backend=backend)
    with Slide.open(path, backend=backend, mpp=0.5) as slide:
        assert slide.level_downsamples == (1.0, 2.0)
        assert slide.level_mpps == pytest.approx((0.5, 1.0))
        patch = slide.read((2000, 1500), 1.0, 32)
        assert patch.shape == (32, 32, 3) and patch.std() > 0


# ----------------------------------------------------------------------------------------------
# thumbnail, counters, bad input
# ----------------------------------------------------------------------------------------------


def test_thumbnail(even_slide: tuple[Path, list[np.ndarray]]) -> None:
    path, levels = even_slide
    with Slide.open(path) as slide:
        thumb = slide.thumbnail(4.0)
        assert thumb.shape == (48, 80, 3)
        np.testing.assert_array_equal(thumb, levels[3])
        np.testing.assert_array_equal(slide.thumbnail(8.0), levels[4])
        assert slide.thumbnail(3.0).shape == (64, 107, 3)
        assert slide.thumbnail(1e6).shape == (1, 1, 3)
        with pytest.raises(ValueError):
            slide.thumbnail(0)


def test_thumbnail_empties_the_openslide_tile_cache(
    even_slide: tuple[Path, list[np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thumbnail's tiles do not stay in the handle's cache; reads after it give the same pixels."""
    openslide = pytest.importorskip("openslide")
    if not hasattr(openslide, "OpenSlideCache"):
        pytest.skip("openslide-python < 1.3 has no settable cache")
    path, levels = even_slide
    with Slide.open(path, backend="openslide") as slide:
        handle = slide._reader._handle  # type: ignore[attr-defined]
        caches: list[object] = []
        set_cache = handle.set_cache
        monkeypatch.setattr(handle, "set_cache", lambda cache: (caches.append(cache), set_cache(cache)))
        before = slide.read_box((0, 0, 640, 384), (80, 48))
        assert caches == []  # ordinary reads keep the cache
        np.testing.assert_array_equal(slide.thumbnail(4.0), levels[3])
        assert len(caches) == 1 and isinstance(caches[0], openslide.OpenSlideCache)
        np.testing.assert_array_equal(slide.read_box((0, 0, 640, 384), (80, 48)), before)


def test_pixels_read_counter(even_slide: tuple[Path, list[np.ndarray]]) -> None:
    with Slide.open(even_slide[0]) as slide:
        slide.read((100, 100), 0.5, (10, 10))  # aligned: exactly 100 level-0 pixels
        assert (slide.pixels_read, slide.reads) == (100, 1)
        slide.read((0, 0), 0.5, (10, 10))  # a quarter inside
        assert slide.pixels_read == 125
        slide.reset_counters()
        slide.read((100.5, 100), 0.5, (10, 10))  # resampled: 11 x 10 cover + 1 px margin
        assert slide.pixels_read == 13 * 12


def test_bad_read_arguments(even_slide: tuple[Path, list[np.ndarray]]) -> None:
    with Slide.open(even_slide[0]) as slide:
        with pytest.raises(ValueError):
            slide.read((0, 0), 0.0, 4)
        with pytest.raises(ValueError):
            slide.read((0, 0), 0.5, 0)
        with pytest.raises(ValueError):
            slide.read_box((10, 10, 5, 20), 4)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match=r"nothere\.svs: no such file"):
        Slide.open(tmp_path / "nothere.svs")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match="is a directory"):
        Slide.open(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, I am not a slide\n", b"\x89PNG\r\n\x1a\n" + bytes(64)])
@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_not_a_slide(tmp_path: Path, content: bytes, backend: str) -> None:
    path = tmp_path / "fake.svs"
    path.write_bytes(content)
    with pytest.raises(SlideError, match=r"fake\.svs: not a readable slide"):
        Slide.open(path, backend=backend)


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_truncated_tiff(even_slide: tuple[Path, list[np.ndarray]], tmp_path: Path, backend: str) -> None:
    data = even_slide[0].read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideError, match=r"truncated\.tif: truncated or corrupt TIFF"):
        Slide.open(path, backend=backend)


def test_corrupt_tile_data(tmp_path: Path) -> None:
    image = coord_image(64, 64)
    path = write_pyramidal_tiff(tmp_path / "c.tif", image, MPP, compression="zlib", tile=32, min_size=64)
    with tifffile.TiffFile(path) as tif:
        offsets = tif.pages.first.dataoffsets
    data = bytearray(path.read_bytes())
    for off in offsets:
        data[off : off + 16] = b"\xff" * 16  # garbage zlib streams
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(bytes(data))
    with pytest.raises(SlideError, match=r"corrupt\.tif"):
        with Slide.open(bad, backend="tiffslide") as slide:
            slide.read((32, 32), MPP, 64)


def test_unknown_backend(even_slide: tuple[Path, list[np.ndarray]]) -> None:
    with pytest.raises(SlideError, match="unknown backend"):
        Slide.open(even_slide[0], backend="pillow")


def test_thumbnail_in_bands_equals_one_read(
    even_slide: tuple[Path, list[np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrseg.wsi.slide

    with Slide.open(even_slide[0]) as slide:
        whole = {mpp: slide.thumbnail(mpp) for mpp in (0.5, 0.7, 3.0)}
        monkeypatch.setattr(mrseg.wsi.slide, "THUMBNAIL_BAND_PIXELS", 5000)
        slide.reset_counters()
        for mpp, expected in whole.items():
            np.testing.assert_array_equal(slide.thumbnail(mpp), expected)
        assert slide.reads > 10  # really read in bands
