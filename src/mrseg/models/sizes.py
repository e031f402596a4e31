"""Which resolutions, input sizes and shape hyper-parameters a network accepts, with errors that say what would work.

All sizes are edges of square (or rectangular) patches in pixels at their own mpp; ``mpps`` are
microns per pixel, finest first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mrseg.core.errors import ModelConfigError

#: Relative tolerance when deciding that ``mpp_j / mpp_1`` is a power of two (scanner mpps are rounded).
GAMMA_RTOL = 1e-3


def check_int(name: str, value: object, low: int) -> None:
    """Raise :class:`ModelConfigError` unless ``value`` is an integer (not a bool) ``>= low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ModelConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def gammas_from_mpps(mpps: Sequence[float]) -> list[int]:
    """Ratios ``gamma_j = mpp_j / mpp_1`` as integers (``gamma_1 = 1``); each must be a power of two.

    Raises
    ------
    ModelConfigError
        Empty, non-positive or non-ascending mpps, or a ratio that is not a power of two
        (within :data:`GAMMA_RTOL`); the message suggests octave-spaced mpps.
    """
    values = [float(m) for m in mpps]
    if not values:
        raise ModelConfigError("mpps is empty: give at least one resolution (microns per pixel), finest first")
    if any(not math.isfinite(m) or m <= 0 for m in values):
        raise ModelConfigError(f"mpps must be positive microns per pixel, got {values}")
    if values != sorted(values):
        raise ModelConfigError(f"mpps must be ascending (finest first), got {values}")
    gammas: list[int] = []
    for mpp in values:
        ratio = mpp / values[0]
        exponent = round(math.log2(ratio))
        if abs(ratio / 2**exponent - 1.0) > GAMMA_RTOL:
            octaves = [round(values[0] * 2**k, 6) for k in range(len(values))]
            raise ModelConfigError(
                f"mpp {mpp} / {values[0]} = {ratio:.4g} is not a power of two; MRN needs octave-spaced "
                f"resolutions such as {octaves}"
            )
        gammas.append(2**exponent)
    return gammas


def required_multiple(depth: int, mpps: Sequence[float]) -> int:
    """Input sizes (pixels) must be multiples of ``2**depth * max(gamma)``.

    ``2**depth`` keeps max pooling exact; ``max(gamma)`` keeps the centre crop of the bottleneck
    (``size / 2**depth`` pixels) an exact ``1/gamma`` so it upscales back to the same size.
    """
    return 2**depth * max(gammas_from_mpps(mpps))


def valid_sizes(multiple: int, near: int, count: int = 2) -> list[int]:
    """Valid sizes around ``near``: up to ``count`` multiples of ``multiple`` below it and ``count`` at or above it.

    Examples
    --------
    >>> valid_sizes(128, 500)
    [256, 384, 512, 640]
    """
    first_above = max(1, -(-near // multiple))  # ceil(near / multiple), at least 1
    ks = range(max(1, first_above - count), first_above + count)
    return [k * multiple for k in ks]


def describe_valid_sizes(multiple: int, size: int, depth: int, mpps: Sequence[float], *, min_depth: int = 0) -> str:
    """A sentence for error messages: why ``size`` fails and which sizes (or fewer stages) would work.

    ``min_depth`` is the smallest depth the encoder has (``log2`` of its finest stride): when a
    shallower network would take ``size``, the sentence names the depth (fewer encoder stages).
    """
    gammas = gammas_from_mpps(mpps)
    nearby = ", ".join(str(s) for s in valid_sizes(multiple, size))
    text = (
        f"input size {size} px is not a multiple of {multiple} = 2**depth (2**{depth} = {2**depth}) * max gamma "
        f"({max(gammas)}, from mpps {list(mpps)}); sizes that work: {nearby}, ..."
    )
    shallower = [d for d in range(depth - 1, max(min_depth, 1) - 1, -1) if size and size % (2**d * max(gammas)) == 0]
    if shallower:
        text += f"; or keep {size} px with depth <= {shallower[0]} (fewer encoder stages)"
    return text


def check_spatial(x: torch.Tensor, multiple: int, depth: int, mpps: Sequence[float], *, min_depth: int = 0) -> None:
    """Raise :class:`ModelConfigError` unless both spatial dims of ``x`` are multiples of ``multiple``."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    for size in (int(x.shape[-2]), int(x.shape[-1])):
        if size % multiple != 0 or size == 0:
            raise ModelConfigError(describe_valid_sizes(multiple, size, depth, mpps, min_depth=min_depth))
