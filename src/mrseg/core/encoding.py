"""How probabilities are stored on disk: ``uint8`` (probability x 255, rounded) or ``float16``.

:class:`ProbabilityEncoding` is the one definition, used by the merger that writes maps, the
TIFF writers, the evaluation that reads them, the demo's mimic scores and the viewer. The
encoding is recorded in every prediction record (``map.dtype`` and ``map.scale``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

EncodingName = Literal["uint8", "float16"]


@dataclass(frozen=True)
class ProbabilityEncoding:
    """Stored values <-> probabilities in [0, 1].

    Attributes
    ----------
    dtype
        ``"uint8"``: ``round(p * 255)`` (256 levels; what OpenSlide-based viewers can display);
        ``"float16"``: ``p`` itself (for analysis; about 3 significant digits).
    """

    dtype: EncodingName = "uint8"

    def __post_init__(self) -> None:
        if self.dtype not in ("uint8", "float16"):
            raise ValueError(f"probability encoding must be uint8 or float16, got {self.dtype!r}")

    @classmethod
    def of(cls, dtype: Any) -> ProbabilityEncoding:
        """The encoding of arrays of ``dtype`` (``numpy.uint8`` or ``numpy.float16``)."""
        return cls(str(np.dtype(dtype)))  # type: ignore[arg-type]

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype of stored values."""
        return np.dtype(self.dtype)

    @property
    def scale(self) -> int:
        """Stored value of probability 1 (255 or 1)."""
        return 255 if self.dtype == "uint8" else 1

    @property
    def description(self) -> str:
        """One line for file metadata (TIFF ImageDescription)."""
        if self.dtype == "uint8":
            return "mrseg probability map (uint8: probability x 255)"
        return "mrseg probability map (float16 probability)"

    def encode(self, prob: np.ndarray) -> np.ndarray:
        """Probabilities (any float array) -> stored values; clipped to [0, 1] first."""
        clipped = np.clip(prob, 0.0, 1.0)
        if self.dtype == "uint8":
            return np.rint(clipped * 255.0).astype(np.uint8)
        return clipped.astype(np.float16)

    def decode(self, values: np.ndarray) -> np.ndarray:
        """Stored values -> float32 probabilities in [0, 1]."""
        if self.dtype == "uint8":
            return np.asarray(values).astype(np.float32) / 255.0
        return np.asarray(values).astype(np.float32)


UINT8 = ProbabilityEncoding("uint8")
FLOAT16 = ProbabilityEncoding("float16")

__all__ = ["FLOAT16", "UINT8", "EncodingName", "ProbabilityEncoding"]
