"""The slide-backend interface: what :class:`mrseg.wsi.slide.Slide` needs from a file reader.

A backend opens one file and reports, in its own terms, the pyramid (level sizes and
downsamples), the metadata (properties, vendor, associated images) and **its own level-0 mpp**
(each backend knows where its format keeps it); it reads integer regions of one level in that
level's pixels. :class:`~mrseg.wsi.slide.Slide` does everything else (level choice, resampling,
white background, the mpp rule of :func:`resolve_mpp`), so a backend is small: see
``docs/architecture.md``, "Worked example: a new slide backend".
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mrseg.core.errors import MissingMppError, SlideError
from mrseg.wsi.geometry import Region, Size

#: Background value of everything outside the slide, in training and inference.
BACKGROUND = 255
#: Relative difference of mpp-x and mpp-y above which a slide is refused as anisotropic.
ANISOTROPY_TOLERANCE = 0.02


def to_rgb(array: np.ndarray) -> np.ndarray:
    """Convert a backend image (``(h, w)``, ``(h, w, 1|2|3|4)``) to ``uint8 (h, w, 3)`` RGB.

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


def positive_number(value: Any) -> float | None:
    """``float(value)`` when it is a finite positive number, else None (metadata is often text)."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) and result > 0 else None


def properties_mpp(properties: Mapping[str, Any], prefix: str) -> tuple[float, float] | None:
    """``(mpp-x, mpp-y)`` from the ``<prefix>.mpp-x`` / ``<prefix>.mpp-y`` properties, if both are valid."""
    x = positive_number(properties.get(f"{prefix}.mpp-x"))
    y = positive_number(properties.get(f"{prefix}.mpp-y"))
    return (x, y) if x is not None and y is not None else None


class SlideBackend(abc.ABC):
    """One open slide file, addressed in level pixels; subclass it to add a file format.

    Subclasses take the file path as their only constructor argument, raise any exception when
    the file is not theirs (the message becomes part of the :class:`~mrseg.core.errors.SlideError`),
    and implement :attr:`level_dimensions`, :attr:`mpp` and :meth:`read_level`; the other members
    have defaults. Register a subclass with :func:`mrseg.wsi.backends.register_backend` or pass
    the class itself to :meth:`mrseg.wsi.slide.Slide.open`.

    Attributes
    ----------
    name
        Registry name of the built-in backends (``Slide.backend`` reports the registered name,
        else this, else the class name).
    path
        The file.
    """

    name: ClassVar[str] = ""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    @abc.abstractmethod
    def level_dimensions(self) -> Sequence[Size]:
        """``(width, height)`` of every level in pixels, level 0 first."""

    @property
    @abc.abstractmethod
    def mpp(self) -> tuple[float, float] | None:
        """``(mpp-x, mpp-y)`` of level 0 in microns per pixel from the file's metadata, or None.

        Read only when no mpp override is given; :func:`resolve_mpp` checks isotropy.
        """

    @abc.abstractmethod
    def read_level(self, level: int, region: Region) -> np.ndarray:
        """Pixels of ``region = (ix0, iy0, ix1, iy1)``, a non-empty region inside ``level``, in that level's pixels.

        Returns ``uint8 (iy1 - iy0, ix1 - ix0, 3)`` RGB (alpha composited on white, e.g. with
        :func:`to_rgb`); it may be a read-only view.
        """

    @property
    def level_downsamples(self) -> Sequence[float]:
        """Level-0 pixels per level pixel; by default the mean of the width and height ratios."""
        w0, h0 = self.level_dimensions[0]
        return [(w0 / w + h0 / h) / 2 for w, h in self.level_dimensions]

    @property
    def properties(self) -> Mapping[str, Any]:
        """The file's metadata as key/value pairs (empty by default)."""
        return {}

    @property
    def vendor(self) -> str:
        """Scanner vendor or file kind."""
        return "unknown"

    @property
    def associated_names(self) -> Sequence[str]:
        """Names of the associated images (label, macro, thumbnail...); none by default."""
        return ()

    def associated(self, name: str) -> np.ndarray:
        """Associated image ``name`` (one of :attr:`associated_names`) as ``uint8 (h, w, 3)``."""
        raise SlideError(f"{self.path}: no associated image {name!r}")

    def drop_cache(self) -> None:  # noqa: B027 - optional hook
        """Forget the decoded tiles kept for later reads (after a one-off read; nothing by default)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles (nothing by default)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def resolve_mpp(path: Path, reported: tuple[float, float] | None, override: float | None) -> float:
    """Level-0 microns per pixel: the override, else the backend's ``reported`` ``(mpp-x, mpp-y)``.

    A reported pair that is not two positive numbers counts as nothing reported.

    Raises
    ------
    MissingMppError
        Nothing reported and no override.
    SlideError
        The override is not a positive number, mpp-x and mpp-y differ by more than 2 %, or the
        mpp is outside :data:`PLAUSIBLE_MPP` (naming the value and ``--slide-mpp``).
    """
    if override is not None:
        value = positive_number(override)
        if value is None:
            raise SlideError(f"{path}: --slide-mpp (mpp override) must be a positive number, got {override!r}")
        return check_plausible_mpp(path, value, "--slide-mpp")
    x, y = (None, None) if reported is None else (positive_number(reported[0]), positive_number(reported[1]))
    if x is None or y is None:
        raise MissingMppError(
            f"{path}: no microns-per-pixel (mpp) in the slide metadata; give it explicitly "
            "(--slide-mpp on the command line, mpp= in Python)"
        )
    mean = (x + y) / 2
    if abs(x - y) / mean > ANISOTROPY_TOLERANCE:
        raise SlideError(
            f"{path}: anisotropic pixels (mpp-x {x:g} != mpp-y {y:g}) are not supported; "
            "resample the slide or give one mpp with --slide-mpp"
        )
    return check_plausible_mpp(path, mean, "the slide metadata")


#: Level-0 microns per pixel a slide can plausibly have (from 200x objectives to a 1 mm^2 pixel / 10).
PLAUSIBLE_MPP = (0.05, 100.0)


def check_plausible_mpp(path: Path, mpp: float, source: str) -> float:
    """``mpp`` when it is within :data:`PLAUSIBLE_MPP`, else a :class:`SlideError` naming ``source``."""
    low, high = PLAUSIBLE_MPP
    if not low <= mpp <= high:
        hint = "give the right value with --slide-mpp" if source != "--slide-mpp" else "check the value"
        raise SlideError(
            f"{path}: {source} gives {mpp:g} µm/px, outside the plausible {low:g}-{high:g} µm/px of a slide; {hint}"
        )
    return mpp
