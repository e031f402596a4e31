"""What a model eats: the input specification stored in every checkpoint, and uint8 -> tensor conversion.

Training and inference both convert patches with :meth:`InputSpec.to_tensor`, so normalisation is
defined in exactly one place and travels with the checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

#: Default per-channel normalisation of RGB values scaled to [0, 1] (H&E-ish, centred near 0).
DEFAULT_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
DEFAULT_STD: tuple[float, float, float] = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class InputSpec:
    """Resolutions, patch size and normalisation of a model's input.

    Attributes
    ----------
    mpps
        Microns per pixel of each concentric patch, finest first (``mpps[0]`` is segmented).
    size_px
        Edge of every (square) patch in pixels at its own mpp.
    mean, std
        Per-channel normalisation applied to RGB values scaled to [0, 1].
    """

    mpps: tuple[float, ...]
    size_px: int
    mean: tuple[float, float, float] = field(default=DEFAULT_MEAN)
    std: tuple[float, float, float] = field(default=DEFAULT_STD)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mpps", tuple(float(m) for m in self.mpps))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if not self.mpps or any(m <= 0 for m in self.mpps):
            raise ValueError(f"mpps must be positive, got {self.mpps}")
        if list(self.mpps) != sorted(self.mpps):
            raise ValueError(f"mpps must be ascending (finest first), got {self.mpps}")
        if self.size_px <= 0:
            raise ValueError(f"size_px must be positive, got {self.size_px}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError("mean and std need 3 values each, std > 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists, floats) for checkpoints and JSON."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(
            mpps=tuple(d["mpps"]),
            size_px=int(d["size_px"]),
            mean=tuple(d.get("mean", DEFAULT_MEAN)),  # type: ignore[arg-type]
            std=tuple(d.get("std", DEFAULT_STD)),  # type: ignore[arg-type]
        )

    def to_tensor(self, patches: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Convert uint8 patches ``(N, J, H, W, 3)`` to normalised float32 ``(N, J, 3, H, W)``.

        A ``(J, H, W, 3)`` array is treated as one sample (N = 1).
        """
        t = torch.as_tensor(patches)
        if t.ndim == 4:
            t = t.unsqueeze(0)
        if t.ndim != 5 or t.shape[-1] != 3:
            raise ValueError(f"expected uint8 patches (N, J, H, W, 3), got shape {tuple(t.shape)}")
        t = t.permute(0, 1, 4, 2, 3).to(torch.float32).div_(255.0)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 1, 3, 1, 1)
        return t.sub_(mean).div_(std).contiguous()
