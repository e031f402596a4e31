"""The model's input transform: uint8 concentric patches -> normalised float tensors.

Training and inference both convert patches with :func:`to_tensor`, so the normalisation of an
:class:`~mrseg.core.input_spec.InputSpec` (stored in every checkpoint) is applied in one place.
"""

from __future__ import annotations

import numpy as np
import torch

from mrseg.core.input_spec import InputSpec


def to_tensor(patches: np.ndarray | torch.Tensor, spec: InputSpec, *, channels_last: bool = False) -> torch.Tensor:
    """Convert uint8 patches ``(N, J, H, W, 3)`` to normalised float32 ``(N, J, 3, H, W)``.

    A ``(J, H, W, 3)`` array is treated as one sample (N = 1). Values are scaled to [0, 1], then
    ``(x - spec.mean) / spec.std`` per channel. The values do not depend on the layout.

    Parameters
    ----------
    patches
        ``uint8 (N, J, H, W, 3)`` (or ``(J, H, W, 3)``) array or tensor.
    spec
        Supplies ``mean`` and ``std``.
    channels_last
        False (default): a contiguous ``(N, J, 3, H, W)`` tensor (the bytes are reordered as
        ``uint8``, before the conversion, so no float copy is made). True: the same values laid
        out as the patches are, channels fastest (every branch ``x[:, j]`` is a channels-last
        4-D tensor), made without any reordering copy: what a channels-last model wants.

    Raises
    ------
    ValueError
        When the array is not ``(N, J, H, W, 3)`` (or ``(J, H, W, 3)``).
    """
    t = torch.as_tensor(patches)
    if t.ndim == 4:
        t = t.unsqueeze(0)
    if t.ndim != 5 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 patches (N, J, H, W, 3), got shape {tuple(t.shape)}")
    t = t.contiguous().permute(0, 1, 4, 2, 3)
    if not channels_last:
        t = t.contiguous()
    t = t.to(torch.float32).div_(255.0)  # keeps the layout of t (both are dense)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 1, 3, 1, 1)
    return t.sub_(mean).div_(std)


__all__ = ["to_tensor"]
