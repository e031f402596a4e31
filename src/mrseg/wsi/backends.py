"""Slide backends (OpenSlide, tiffslide), file checks and mpp resolution for :mod:`mrseg.wsi.slide`.

Backends are addressed in *level pixels* (``read_level(level, region)``), so :class:`mrseg.wsi.slide.Slide`
controls the geometry; third-party exceptions are turned into :class:`mrseg.core.errors.SlideError`
naming the file and the reason.
"""

from __future__ import annotations

import ctypes
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mrseg.core.errors import MissingMppError, SlideError
from mrseg.wsi import geometry as geo

log = logging.getLogger(__name__)

BackendName = Literal["auto", "openslide", "tiffslide"]
#: Background value of everything outside the slide, in training and inference.
BACKGROUND = 255
#: Relative difference of mpp-x and mpp-y above which a slide is refused as anisotropic.
ANISOTROPY_TOLERANCE = 0.02
_MPP_RANGE = (0.01, 100.0)  # plausible microns per pixel for TIFF-resolution-tag fallback


def to_rgb(array: np.ndarray) -> np.ndarray:
    """Convert a backend image (``(h, w)``, ``(h, w, 1|3|4)``) to ``uint8 (h, w, 3)`` RGB.

    Grey is repeated to three channels; RGBA (straight alpha) is composited on white. The result
    may be a read-only or non-contiguous view of ``array`` (callers copy when they keep it).
    """
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    if channels == 3:
        return arr
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 4:
        alpha = arr[:, :, 3:4]
        if alpha.min() == 255:  # opaque (the usual case): no compositing
            return arr[:, :, :3]
        a = alpha.astype(np.uint16)
        rgb = (arr[:, :, :3] * a + BACKGROUND * (255 - a) + 127) // 255
        return rgb.astype(np.uint8)
    if channels == 2:  # grey + alpha
        return to_rgb(np.concatenate([arr[:, :, :1]] * 3 + [arr[:, :, 1:2]], axis=2))
    raise SlideError(f"unsupported number of channels: {channels}")


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


class Reader:
    """What :class:`mrseg.wsi.slide.Slide` needs from a backend; levels are addressed in their own pixels.

    ``read_level(level, region)`` returns ``uint8 (h, w, 3)`` RGB (alpha composited on white) for
    an integer region inside the level; it may be a read-only view.
    """

    name: str
    vendor: str
    level_dimensions: list[geo.Size]
    level_downsamples: list[float]
    properties: dict[str, Any]
    associated_names: list[str]

    def read_level(self, level: int, region: geo.Region) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def associated(self, name: str) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class _OpenSlideReader(Reader):
    name = "openslide"

    def __init__(self, path: Path) -> None:
        try:
            import openslide
        except ImportError as error:  # pragma: no cover - depends on the environment
            hint = "pip install openslide-python openslide-bin"
            raise SlideError(f"OpenSlide is not available ({error}); {hint}") from error
        self._handle = openslide.OpenSlide(str(path))
        self.level_dimensions = [(int(w), int(h)) for w, h in self._handle.level_dimensions]
        self.level_downsamples = [float(d) for d in self._handle.level_downsamples]
        self.properties = dict(self._handle.properties)
        self.associated_names = sorted(self._handle.associated_images)
        self.vendor = self.properties.get("openslide.vendor") or "unknown"
        # Fast path: OpenSlide's C read into a buffer we own (premultiplied ARGB), skipping the
        # RGBA conversion and the PIL round trip of the public API. Falls back when absent.
        lowlevel = getattr(openslide, "lowlevel", None)
        self._raw_read = getattr(lowlevel, "_read_region", None)
        self._osr = getattr(self._handle, "_osr", None)

    def read_level(self, level: int, region: geo.Region) -> np.ndarray:
        # OpenSlide takes level-0 locations and maps them to level pixels by dividing by its own
        # (averaged) downsample; rounding picks the location landing closest to the wanted pixel.
        ds = self.level_downsamples[level]
        x, y = round(region[0] * ds), round(region[1] * ds)
        w, h = region[2] - region[0], region[3] - region[1]
        if self._raw_read is not None and self._osr is not None and sys.byteorder == "little":
            buffer = np.empty((h, w, 4), dtype=np.uint8)  # B, G, R, A (native uint32 ARGB)
            self._raw_read(self._osr, buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), x, y, level, w, h)
            alpha = buffer[:, :, 3:4]
            rgb = buffer[:, :, 2::-1]
            if alpha.min() == 255:
                # one contiguous swizzle here makes every later crop a fast row copy
                return np.ascontiguousarray(rgb)
            # premultiplied colour: compositing on white adds the missing coverage
            return np.minimum(rgb.astype(np.uint16) + (255 - alpha), 255).astype(np.uint8)
        return to_rgb(np.asarray(self._handle.read_region((x, y), level, (w, h))))

    def associated(self, name: str) -> np.ndarray:
        return to_rgb(np.asarray(self._handle.associated_images[name]))

    def close(self) -> None:
        self._handle.close()


class _TiffSlideReader(Reader):
    name = "tiffslide"

    def __init__(self, path: Path) -> None:
        try:
            import tiffslide
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise SlideError(f"tiffslide is not available ({error}); pip install tiffslide") from error
        self._handle = tiffslide.TiffSlide(str(path))
        self.level_dimensions = [(int(w), int(h)) for w, h in self._handle.level_dimensions]
        self.level_downsamples = [float(d) for d in self._handle.level_downsamples]
        self.properties = dict(self._handle.properties)
        self.associated_names = sorted(self._handle.associated_images)
        self.vendor = self.properties.get("tiffslide.vendor") or "generic-tiff"

    def _location(self, index: int, ds: float) -> int:
        """Level-0 location that tiffslide maps (``int(loc / ds)``) to level pixel ``index``."""
        loc = math.ceil(index * ds)
        while int(loc / ds) > index:
            loc -= 1
        while int(loc / ds) < index:
            loc += 1
        return loc

    def read_level(self, level: int, region: geo.Region) -> np.ndarray:
        ds = self.level_downsamples[level]
        location = (self._location(region[0], ds), self._location(region[1], ds))
        size = (region[2] - region[0], region[3] - region[1])
        return to_rgb(self._handle.read_region(location, level, size, as_array=True))

    def associated(self, name: str) -> np.ndarray:
        return to_rgb(np.asarray(self._handle.associated_images[name]))

    def close(self) -> None:
        self._handle.close()


_READERS: dict[str, Callable[[Path], Reader]] = {"openslide": _OpenSlideReader, "tiffslide": _TiffSlideReader}


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def check_tiff_integrity(path: Path) -> None:
    """Raise :class:`SlideError` when a TIFF's tile/strip data run past the end of the file.

    Reads only the file header and the IFDs, so it is cheap; non-TIFF files are left to the
    backends.
    """
    with open(path, "rb") as fh:
        if fh.read(4) not in _TIFF_MAGIC:
            return
    import tifffile

    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            for index, page in enumerate(tif.pages):
                ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if o]  # type: ignore[union-attr]
                if ends and max(ends) > size:
                    raise SlideError(
                        f"{path}: truncated or corrupt TIFF (image data of page {index} ends at byte "
                        f"{max(ends)}, file has {size} bytes)"
                    )
    except SlideError:
        raise
    except Exception as error:
        raise SlideError(f"{path}: corrupt TIFF ({error})") from error


def open_reader(path: Path, backend: str) -> Reader:
    check_tiff_integrity(path)
    order = {"auto": ["openslide", "tiffslide"], "openslide": ["openslide"], "tiffslide": ["tiffslide"]}
    if backend not in order:
        raise SlideError(f"{path}: unknown backend {backend!r} (use auto, openslide or tiffslide)")
    reasons: list[str] = []
    for name in order[backend]:
        reader: Reader | None = None
        try:
            reader = _READERS[name](path)
            # Probe one pixel of the coarsest level: catches truncated files whose header opens.
            last = len(reader.level_dimensions) - 1
            reader.read_level(last, (0, 0, 1, 1))
        except Exception as error:  # third-party errors are turned into one SlideError below
            if reader is not None:
                reader.close()
            reasons.append(f"{name}: {str(error).strip() or type(error).__name__}")
            log.debug("%s cannot open %s: %r", name, path, error)
            continue
        return reader
    raise SlideError(f"{path}: not a readable slide ({'; '.join(reasons)})")


# --------------------------------------------------------------------------------------------
# mpp
# --------------------------------------------------------------------------------------------


def _as_float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) and result > 0 else None


def _tiff_tag_mpp(path: Path) -> tuple[float, float] | None:
    """mpp from the TIFF resolution tags of the first page (unit inch or centimetre), if present."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tags = tif.pages.first.tags
            unit = tags.get("ResolutionUnit")
            xres, yres = tags.get("XResolution"), tags.get("YResolution")
            if unit is None or xres is None or yres is None:
                return None
            per_unit = {2: 25400.0, 3: 10000.0}.get(int(unit.value))
            if per_unit is None:
                return None
            values = []
            for tag in (xres, yres):
                num, den = tag.value
                if not num or not den:
                    return None
                values.append(per_unit * den / num)
    except Exception as error:  # not a TIFF, or unreadable tags: simply no mpp from here
        log.debug("no TIFF resolution tags in %s: %r", path, error)
        return None
    if not all(_MPP_RANGE[0] <= v <= _MPP_RANGE[1] for v in values):
        return None
    return (values[0], values[1])


def resolve_mpp(path: Path, properties: dict[str, Any], override: float | None) -> float:
    """Level-0 microns per pixel: the override, else metadata (backend properties, TIFF tags).

    Raises
    ------
    MissingMppError
        No mpp in the metadata and no override.
    SlideError
        The override is not a positive number, or mpp-x and mpp-y differ by more than 2 %.
    """
    if override is not None:
        value = _as_float(override)
        if value is None:
            raise SlideError(f"{path}: mpp override must be a positive number, got {override!r}")
        return value
    pair: tuple[float, float] | None = None
    for prefix in ("openslide", "tiffslide"):
        x = _as_float(properties.get(f"{prefix}.mpp-x"))
        y = _as_float(properties.get(f"{prefix}.mpp-y"))
        if x is not None and y is not None:
            pair = (x, y)
            break
    if pair is None:
        pair = _tiff_tag_mpp(path)
    if pair is None:
        raise MissingMppError(
            f"{path}: no microns-per-pixel (mpp) in the slide metadata; give it explicitly "
            "(--mpp on the command line, mpp= in Python)"
        )
    x, y = pair
    mean = (x + y) / 2
    if abs(x - y) / mean > ANISOTROPY_TOLERANCE:
        raise SlideError(
            f"{path}: anisotropic pixels (mpp-x {x:g} != mpp-y {y:g}) are not supported; "
            "resample the slide or give one mpp with --mpp"
        )
    return mean
