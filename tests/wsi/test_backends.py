"""Slide backends: a user's backend class (passed directly or registered), the registry's errors,
each backend's own mpp, and OpenSlide's fast path against its public API.

The user backend reads ``.npz`` files holding a pyramid whose pixels encode their own coordinates
(as in ``test_slide.py``), so its reads are checked exactly, and against the same image written as a
pyramidal TIFF and read by tiffslide.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mrseg.core.errors import ConfigError, MissingMppError, SlideError
from mrseg.wsi.backends import (
    AUTO_ORDER,
    ImageBackend,
    OpenSlideBackend,
    SlideBackend,
    TiffSlideBackend,
    backend_name,
    backend_names,
    candidates,
    check_backend,
    register_backend,
    to_rgb,
    unregister_backend,
)
from mrseg.wsi.geometry import Region, Size
from mrseg.wsi.slide import Slide
from mrseg.wsi.tiff import resolution_mpp, write_pyramidal_tiff
from slide_images import coord_image, reduce2

MPP = 0.5


class NpzBackend(SlideBackend):
    """A user's backend: ``.npz`` files with arrays ``level0, level1, ...`` and an optional ``mpp``."""

    name = "npz"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with np.load(path) as data:  # raises for anything that is not an .npz
            self._levels = [data[f"level{i}"] for i in range(len([k for k in data.files if k.startswith("level")]))]
            self._mpp = float(data["mpp"]) if "mpp" in data.files else None

    @property
    def level_dimensions(self) -> Sequence[Size]:
        return [(lvl.shape[1], lvl.shape[0]) for lvl in self._levels]

    @property
    def mpp(self) -> tuple[float, float] | None:
        return None if self._mpp is None else (self._mpp, self._mpp)

    def read_level(self, level: int, region: Region) -> np.ndarray:
        ix0, iy0, ix1, iy1 = region
        return to_rgb(self._levels[level][iy0:iy1, ix0:ix1])


class BrokenMppBackend(NpzBackend):
    @property
    def mpp(self) -> tuple[float, float] | None:
        raise RuntimeError("metadata server down")


@pytest.fixture()
def npz_slide(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    image = coord_image(256, 192)
    levels = [image, reduce2(image), reduce2(reduce2(image))]
    path = tmp_path / "scan.npz"
    np.savez(path, **{f"level{i}": lvl for i, lvl in enumerate(levels)}, mpp=MPP)
    return path, levels


@pytest.fixture()
def registered() -> Iterator[None]:
    register_backend("npz", NpzBackend)
    try:
        yield
    finally:
        unregister_backend("npz")


# ----------------------------------------------------------------------------------------------
# a user's backend
# ----------------------------------------------------------------------------------------------


def test_user_backend_class_through_slide_open(npz_slide: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    path, levels = npz_slide
    with Slide.open(path, backend=NpzBackend) as slide:
        assert slide.backend == "npz" and slide.vendor == "unknown"
        assert slide.mpp == MPP and slide.dimensions == (256, 192)
        assert slide.level_downsamples == (1.0, 2.0, 4.0)  # the base class's default, snapped
        assert slide.level_mpps == pytest.approx((0.5, 1.0, 2.0))
        assert slide.associated_images == () and slide.properties == {}
        np.testing.assert_array_equal(slide.read((64, 48), 1.0, (16, 12)), levels[1][18:30, 24:40])
        centres = [((100.25, 80.5), 0.5, (12, 9)), ((120.0, 90.0), 0.8, (10, 10)), ((250.0, 5.0), 3.0, (9, 7))]
        tif = write_pyramidal_tiff(tmp_path / "same.tif", levels[0], MPP, compression="zlib", tile=64, min_size=64)
        with Slide.open(tif, backend="tiffslide") as reference:
            assert reference.level_count == 3
            for center, mpp, size in centres:  # same pyramid, same pixels, whichever backend holds it
                np.testing.assert_array_equal(slide.read(center, mpp, size), reference.read(center, mpp, size))


def test_registered_user_backend(npz_slide: tuple[Path, list[np.ndarray]], registered: None) -> None:
    assert backend_names() == ("auto", "openslide", "tiffslide", "image", "npz")
    assert check_backend("npz") == "npz" and candidates("npz") == [NpzBackend]
    with Slide.open(npz_slide[0], backend="npz") as slide:
        assert slide.backend == "npz"
        np.testing.assert_array_equal(slide.read_box((0, 0, 256, 192), (64, 48)), npz_slide[1][2])
    assert candidates("auto") == [OpenSlideBackend, TiffSlideBackend, ImageBackend]  # registering leaves "auto" alone


def test_user_backend_that_cannot_read_the_file(tmp_path: Path) -> None:
    path = tmp_path / "not.npz"
    path.write_bytes(b"plain text")
    with pytest.raises(SlideError, match=r"not\.npz: not a readable slide \(npz: "):
        Slide.open(path, backend=NpzBackend)


def test_user_backend_mpp(tmp_path: Path, npz_slide: tuple[Path, list[np.ndarray]]) -> None:
    bare = tmp_path / "bare.npz"
    np.savez(bare, level0=coord_image(32, 32))
    with pytest.raises(MissingMppError, match=r"bare\.npz.*--slide-mpp"):
        Slide.open(bare, backend=NpzBackend)
    with Slide.open(bare, backend=NpzBackend, mpp=0.25) as slide:
        assert slide.mpp == 0.25
    with pytest.raises(SlideError, match=r"scan\.npz: backend npz cannot report the mpp: metadata server down"):
        Slide.open(npz_slide[0], backend=BrokenMppBackend)
    with Slide.open(npz_slide[0], backend=BrokenMppBackend, mpp=0.5) as slide:  # an override is not asked
        assert slide.backend == "npz"  # the name is inherited


# ----------------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "Npz", "1npz", "n p z", "npz!", 3])
def test_register_refuses_bad_names(name: object) -> None:
    with pytest.raises(ConfigError, match="backend name must be lower-case"):
        register_backend(name, NpzBackend)  # type: ignore[arg-type]


def test_registry_errors(registered: None) -> None:
    with pytest.raises(ConfigError, match="'auto' is reserved"):
        register_backend("auto", NpzBackend)
    with pytest.raises(TypeError, match=r"subclass of mrseg\.wsi\.backends\.SlideBackend"):
        register_backend("plain", dict)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"backend 'tiffslide' is already registered \(.*TiffSlideBackend\)"):
        register_backend("tiffslide", NpzBackend)
    assert register_backend("npz", NpzBackend) is NpzBackend  # the same class again: no-op
    with pytest.raises(ConfigError, match=r"'npz' is already registered.*replace=True"):
        register_backend("npz", BrokenMppBackend)
    with pytest.raises(ConfigError, match=r"unknown backend 'pillow' \(use auto, openslide, tiffslide, image or npz\)"):
        check_backend("pillow")
    with pytest.raises(TypeError, match="a name or a SlideBackend subclass"):
        check_backend(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no backend 'nope' is registered"):
        unregister_backend("nope")


def test_replacing_a_built_in_and_restoring_it() -> None:
    class Quieter(TiffSlideBackend):
        pass

    register_backend("tiffslide", Quieter, replace=True)
    try:
        assert candidates("auto") == [OpenSlideBackend, Quieter, ImageBackend]
        assert backend_name(Quieter) == "tiffslide"
    finally:
        unregister_backend("tiffslide")
    assert candidates("tiffslide") == [TiffSlideBackend] and backend_names() == ("auto", *AUTO_ORDER)


def test_unknown_backend_name_through_slide_open(npz_slide: tuple[Path, list[np.ndarray]]) -> None:
    expected = r"scan\.npz: unknown backend 'pillow' \(use auto, openslide, tiffslide or image\)"
    with pytest.raises(SlideError, match=expected):
        Slide.open(npz_slide[0], backend="pillow")


# ----------------------------------------------------------------------------------------------
# built-in backends: their own mpp, OpenSlide's fast path
# ----------------------------------------------------------------------------------------------


def _plain_tiff(path: Path, resolution: tuple[float, float] | None, unit: str = "CENTIMETER") -> Path:
    extra = {} if resolution is None else {"resolution": resolution, "resolutionunit": unit}
    tifffile.imwrite(path, coord_image(64, 48), tile=(16, 16), photometric="rgb", compression="zlib", **extra)
    return path


def test_resolution_tags_mpp(tmp_path: Path) -> None:
    cm = _plain_tiff(tmp_path / "cm.tif", (1e4 / 0.25, 1e4 / 0.25))
    inch = _plain_tiff(tmp_path / "inch.tif", (25400 / 0.5, 25400 / 0.5), unit="INCH")
    assert resolution_mpp(cm) == pytest.approx((0.25, 0.25))
    assert resolution_mpp(inch) == pytest.approx((0.5, 0.5))
    assert resolution_mpp(_plain_tiff(tmp_path / "dpi.tif", (72, 72), unit="INCH")) is None  # not a scan mpp
    assert resolution_mpp(_plain_tiff(tmp_path / "none.tif", None)) is None
    (tmp_path / "text.tif").write_text("not a tiff")
    assert resolution_mpp(tmp_path / "text.tif") is None


@pytest.mark.parametrize("cls", [OpenSlideBackend, TiffSlideBackend])
def test_built_in_backends_report_their_own_mpp(tmp_path: Path, cls: type[SlideBackend]) -> None:
    path = _plain_tiff(tmp_path / "cm.tif", (1e4 / 0.25, 1e4 / 0.25))
    backend = cls(path)
    try:
        assert backend.mpp == pytest.approx((0.25, 0.25))
        assert backend.properties[f"{cls.name}.mpp-x"]  # from the backend's own properties
        assert list(backend.level_dimensions) == [(64, 48)]
    finally:
        backend.close()
    bare = cls(_plain_tiff(tmp_path / "bare.tif", None))
    try:
        assert bare.mpp is None
    finally:
        bare.close()


class PublicApiOpenSlide(OpenSlideBackend):
    """OpenSlide through openslide-python's public ``read_region`` only."""

    fast_path = False


def test_openslide_public_api_fallback_matches_fast_path(tmp_path: Path) -> None:
    """The buffer fast path and openslide-python's public read_region give the same pixels."""
    image = np.zeros((64, 96, 4), np.uint8)
    image[..., :3] = coord_image(96, 64)
    image[..., 3] = 255
    image[:, :20, 3] = 0
    image[:, 20:40, 3] = 100
    path = write_pyramidal_tiff(tmp_path / "a.tif", image, MPP, compression="zlib", tile=16, min_size=32)
    fast, public = OpenSlideBackend(path), PublicApiOpenSlide(path)
    try:
        assert fast.uses_fast_path and not public.uses_fast_path
        for level, region in [(0, (0, 0, 96, 64)), (0, (15, 3, 47, 29)), (1, (1, 1, 40, 30))]:
            a, b = fast.read_level(level, region), public.read_level(level, region)
            assert np.abs(a.astype(int) - b).max() <= 1
    finally:
        fast.close()
        public.close()
    with Slide.open(path, backend="openslide") as a, Slide.open(path, backend=PublicApiOpenSlide) as b:
        assert b.backend == "openslide"
        for center, mpp, size in [((48, 32), 0.5, (96, 64)), ((30.5, 20.25), 0.7, (20, 16)), ((48, 32), 1.0, 24)]:
            assert np.abs(a.read(center, mpp, size).astype(int) - b.read(center, mpp, size)).max() <= 1
        assert (a.read((48, 32), 0.5, (96, 64))[:, :20] == 255).all()
