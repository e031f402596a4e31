"""How tissue is detected: the one set of tissue-detection settings.

:class:`TissueSettings` is used by tissue detection (:func:`mrseg.wsi.tissue.tissue_mask`), by
training's sampling (``data.tissue`` in the config), by prediction (which tiles to predict) and
by evaluation (which pixels count). Training stores its settings in the checkpoint, so
``predict`` uses the tissue definition the model was trained with unless told otherwise.
Areas are in square microns, lengths in microns, ``mpp`` in microns per pixel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from mrseg.core.errors import ConfigError

#: Resolution of tissue detection (microns per thumbnail pixel): 16x coarser than 0.5 um/px.
DEFAULT_TISSUE_MPP = 8.0


@dataclass(frozen=True)
class TissueSettings:
    """Resolution and thresholds of tissue detection (see :mod:`mrseg.wsi.tissue` for the method).

    Attributes
    ----------
    mpp
        Microns per pixel of the thumbnail the detection runs on.
    min_saturation, max_saturation
        Bounds of the Otsu threshold on HSV saturation.
    dark_threshold
        Pixels with every channel below it (0-255) are voids / black pen, never tissue.
    pen_hue, pen_saturation
        Hue range (fraction of the circle) and saturation above which pixels are pen marks.
    smooth_um
        Gaussian smoothing of the saturation, microns.
    min_object_um2, max_hole_um2
        Smaller tissue objects are removed; smaller enclosed holes are filled (square microns).
    """

    mpp: float = DEFAULT_TISSUE_MPP
    min_saturation: float = 0.05
    max_saturation: float = 0.15
    dark_threshold: int = 40
    pen_hue: tuple[float, float] = (0.25, 0.65)
    pen_saturation: float = 0.25
    smooth_um: float = 8.0
    min_object_um2: float = 20_000.0
    max_hole_um2: float = 100_000.0

    def __post_init__(self) -> None:
        if not (isinstance(self.mpp, int | float) and math.isfinite(self.mpp) and self.mpp > 0):
            raise ConfigError(f"tissue mpp must be a positive number of microns per pixel, got {self.mpp!r}")
        object.__setattr__(self, "mpp", float(self.mpp))
        object.__setattr__(self, "pen_hue", (float(self.pen_hue[0]), float(self.pen_hue[1])))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for checkpoints and records)."""
        d = asdict(self)
        d["pen_hue"] = list(self.pen_hue)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TissueSettings:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing ones take their defaults."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if "pen_hue" in kwargs:
            kwargs["pen_hue"] = tuple(kwargs["pen_hue"])
        return cls(**kwargs)


__all__ = ["DEFAULT_TISSUE_MPP", "TissueSettings"]
