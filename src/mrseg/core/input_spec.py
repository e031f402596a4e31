"""What a model eats: resolutions, patch size and normalisation of its concentric input.

:class:`InputSpec` is the one definition of a model's input. The concentric reader
(:mod:`mrseg.wsi.concentric`) takes its ``mpps`` and ``size_px``; the model's input transform
(:func:`mrseg.models.inputs.to_tensor`) its ``mean`` and ``std``; every checkpoint stores it; and
:func:`check_mpps` is the one rule for a list of resolutions, used by the config, the CLI and the
models (which add their own octave-spacing requirement on top).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrseg.core.errors import ConfigError

#: Default per-channel normalisation of RGB values scaled to [0, 1] (H&E-ish, centred near 0).
DEFAULT_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
DEFAULT_STD: tuple[float, float, float] = (0.25, 0.25, 0.25)


def check_mpps(mpps: Any, *, what: str = "mpps") -> tuple[float, ...]:
    """Validate a list of input resolutions and return it as floats.

    The rule (the only one in mrseg): a non-empty sequence of finite, positive microns-per-pixel
    values, strictly ascending (finest first).

    Parameters
    ----------
    mpps
        The values, microns per pixel.
    what
        How the message names them (``"model.mpps"``, ``"--mpps"``...).

    Raises
    ------
    ConfigError
        Naming ``what``, the values and the broken part of the rule.

    >>> check_mpps([0.5, 1, 2])
    (0.5, 1.0, 2.0)
    """
    if isinstance(mpps, (str, bytes)) or not isinstance(mpps, Sequence | np.ndarray):
        raise ConfigError(f"{what} must be a list of microns per pixel, finest first, got {mpps!r}")
    try:
        values = tuple(float(m) for m in mpps)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers (microns per pixel), got {list(mpps)!r}") from None
    if not values:
        raise ConfigError(f"{what} is empty: give at least one resolution (microns per pixel), finest first")
    if any(not (math.isfinite(m) and m > 0) for m in values):
        raise ConfigError(f"{what} must be positive microns per pixel, got {list(values)}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigError(f"{what} must be strictly ascending (finest first), got {list(values)}")
    return values


def check_patch_size(size_px: Any, *, what: str = "patch size") -> int:
    """A patch edge in pixels: a positive integer (``bool`` refused); raises :class:`ConfigError`."""
    if isinstance(size_px, bool) or not isinstance(size_px, int | np.integer) or size_px <= 0:
        raise ConfigError(f"{what} must be a positive integer number of pixels, got {size_px!r}")
    return int(size_px)


@dataclass(frozen=True)
class InputSpec:
    """Resolutions, patch size and normalisation of a model's input.

    Attributes
    ----------
    mpps
        Microns per pixel of each concentric patch, finest first (``mpps[0]`` is segmented);
        checked by :func:`check_mpps`.
    size_px
        Edge of every (square) patch in pixels at its own mpp.
    mean, std
        Per-channel normalisation applied to RGB values scaled to [0, 1].

    Raises
    ------
    ConfigError
        On construction, for bad mpps, size or normalisation.
    """

    mpps: tuple[float, ...]
    size_px: int
    mean: tuple[float, float, float] = field(default=DEFAULT_MEAN)
    std: tuple[float, float, float] = field(default=DEFAULT_STD)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mpps", check_mpps(self.mpps))
        object.__setattr__(self, "size_px", check_patch_size(self.size_px))
        try:
            mean = tuple(float(m) for m in self.mean)
            std = tuple(float(s) for s in self.std)
        except (TypeError, ValueError):
            raise ConfigError(f"mean and std need 3 numbers each, got {self.mean!r} and {self.std!r}") from None
        if len(mean) != 3 or len(std) != 3 or any(not (math.isfinite(s) and s > 0) for s in std):
            raise ConfigError(f"mean and std need 3 values each, std > 0; got {list(mean)} and {list(std)}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def num_resolutions(self) -> int:
        """``J``, the number of patches per sample."""
        return len(self.mpps)

    def field_of_view_um(self) -> tuple[float, ...]:
        """Edge of each patch in microns (``size_px * mpp``)."""
        return tuple(self.size_px * m for m in self.mpps)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists, floats) for checkpoints and JSON."""
        return {"mpps": list(self.mpps), "size_px": self.size_px, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict` (mean/std default when absent)."""
        return cls(
            mpps=tuple(d["mpps"]),
            size_px=int(d["size_px"]),
            mean=tuple(d.get("mean", DEFAULT_MEAN)),  # type: ignore[arg-type]
            std=tuple(d.get("std", DEFAULT_STD)),  # type: ignore[arg-type]
        )


__all__ = ["DEFAULT_MEAN", "DEFAULT_STD", "InputSpec", "check_mpps", "check_patch_size"]
