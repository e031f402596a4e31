"""Training augmentation applied identically to the J concentric patches of a sample and to its mask.

Geometry: horizontal/vertical flips and 90-degree rotations. All J patches are square and share one
centre, so flipping/rotating each patch about its own centre is the same transform about the
common centre, and the finest patch stays aligned with its label mask.

Colour (patches only, never the mask): brightness (additive), contrast (scale about the mean),
saturation (blend with grey) and H&E stain jitter in optical-density space: RGB is converted to
haematoxylin/eosin/DAB densities with scikit-image's colour-deconvolution matrix (``hed_from_rgb``;
optical density ``-ln((v + 1) / 256)``), each stain channel is scaled by ``1 + a`` and shifted by
``b`` (``a, b ~ U(-hed, hed)``), and converted back with ``rgb_from_hed``. Unlike ``rgb2hed`` nothing
is clipped in between, so neutral parameters give back the input exactly.
Blur (``blur_um``, off by default): a Gaussian of sigma ``s ~ U(0, blur_um)`` microns, the scanner's
focus varying from slide to slide, applied before the colour jitter. Sigma is physical, so patch ``j``
at ``mpp_j`` µm/px is blurred by ``s / mpp_j`` of its pixels; below :data:`MIN_BLUR_PX` the blur is
skipped (a coarse patch's own downsampling already smooths that much).
One set of parameters is drawn per sample and shared by its J patches; with ``blur_um = 0`` no blur is
drawn, so the random stream (and every result) is that of a recipe without the option.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.color import hed_from_rgb, rgb_from_hed

from mrseg.training.config import AugmentConfig

_HED_FROM_RGB = np.asarray(hed_from_rgb, dtype=np.float32)
_RGB_FROM_HED = np.asarray(rgb_from_hed, dtype=np.float32)
#: Optical density ``-ln((v + 1) / 256)`` of every uint8 value ``v`` (float32, as computed per pixel).
_OPTICAL_DENSITY = -np.log((np.arange(256, dtype=np.float32) + np.float32(1.0)) / np.float32(256.0))
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Smallest blur sigma applied, in pixels of the patch (smaller ones are skipped).
MIN_BLUR_PX = 0.25


@dataclass(frozen=True)
class Augmenter:
    """Random augmentation of one sample: ``(patches (J, H, W, 3) uint8, mask (H, W) uint8)``.

    Attributes
    ----------
    config
        What to draw and how much.
    mpps
        Resolution of each patch in µm/px, finest first (needed when ``config.blur_um > 0``).
    """

    config: AugmentConfig
    mpps: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.config.blur_um > 0 and not self.mpps:
            raise ValueError("augment.blur_um needs the patches' mpps (Augmenter(config, mpps=...))")

    def __call__(
        self, patches: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if not cfg.enabled:
            return patches, mask
        k = int(rng.integers(0, 4)) if cfg.rot90 else 0
        flip_h = bool(rng.integers(0, 2)) if cfg.flips else False
        flip_v = bool(rng.integers(0, 2)) if cfg.flips else False
        patches, mask = geometric(patches, mask, k=k, flip_h=flip_h, flip_v=flip_v)
        brightness = rng.uniform(-cfg.brightness, cfg.brightness) if cfg.brightness else 0.0
        contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast) if cfg.contrast else 1.0
        saturation = 1.0 + rng.uniform(-cfg.saturation, cfg.saturation) if cfg.saturation else 1.0
        if cfg.hed:
            hed_scale = 1.0 + rng.uniform(-cfg.hed, cfg.hed, size=3)
            hed_shift = rng.uniform(-cfg.hed, cfg.hed, size=3)
        else:
            hed_scale, hed_shift = np.ones(3), np.zeros(3)
        if cfg.blur_um > 0:
            sigma_um = float(rng.uniform(0.0, cfg.blur_um))
            if len(self.mpps) != len(patches):
                raise ValueError(f"{len(patches)} patches but {len(self.mpps)} mpps {list(self.mpps)}")
            patches = blur(patches, [sigma_um / m for m in self.mpps])
        patches = colour(
            patches,
            brightness=brightness,
            contrast=contrast,
            saturation=saturation,
            hed_scale=hed_scale,
            hed_shift=hed_shift,
        )
        return patches, mask


def geometric(
    patches: np.ndarray, mask: np.ndarray, *, k: int = 0, flip_h: bool = False, flip_v: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by ``k * 90`` degrees (counter-clockwise) then flip, identically for patches and mask.

    Parameters
    ----------
    patches
        ``(J, H, W, 3)`` uint8 with ``H == W`` (concentric square patches).
    mask
        ``(H, W)`` labels of the finest patch.
    """
    if k % 4:
        if patches.shape[1] != patches.shape[2]:
            raise ValueError(f"90-degree rotation needs square patches, got {patches.shape[1:3]}")
        patches = np.rot90(patches, k, axes=(1, 2))
        mask = np.rot90(mask, k, axes=(0, 1))
    if flip_h:
        patches = patches[:, :, ::-1]
        mask = mask[:, ::-1]
    if flip_v:
        patches = patches[:, ::-1]
        mask = mask[::-1]
    return np.ascontiguousarray(patches), np.ascontiguousarray(mask)


def blur(patches: np.ndarray, sigmas_px: Sequence[float]) -> np.ndarray:
    """Gaussian-blur patch ``j`` of ``(J, H, W, 3)`` uint8 by ``sigmas_px[j]`` pixels (mirror at the edges).

    Sigmas below :data:`MIN_BLUR_PX` leave their patch unchanged (all of them: the input is returned).
    """
    if all(s < MIN_BLUR_PX for s in sigmas_px):
        return patches
    out = patches.copy()
    for j, sigma in enumerate(sigmas_px):
        if sigma >= MIN_BLUR_PX:
            smooth = ndimage.gaussian_filter(patches[j], sigma=(sigma, sigma, 0.0), mode="mirror", output=np.float32)
            # a normalised positive kernel keeps values in [0, 255]: round half up, no clipping needed
            out[j] = (smooth + np.float32(0.5)).astype(np.uint8)
    return out


def _per_channel(op: np.ufunc, values: np.ndarray, per_channel: np.ndarray) -> None:
    """``op(values, per_channel, out=values)`` for ``(N, 3)`` float32 ``values`` and a ``(3,)`` vector.

    The same element-wise operation, laid out as rows of ``3 k`` values against the vector tiled
    ``k`` times: numpy's loop over a last axis of 3 is several times slower.
    """
    if not values.flags.c_contiguous:  # a reshape would copy, and the result would be lost
        raise ValueError("_per_channel needs a C-contiguous array")
    k = math.gcd(values.shape[0], 256)
    rows = values.reshape(-1, 3 * k)
    op(rows, np.tile(per_channel.astype(np.float32), k), out=rows)


def colour(
    patches: np.ndarray,
    *,
    brightness: float = 0.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    hed_scale: np.ndarray | None = None,
    hed_shift: np.ndarray | None = None,
) -> np.ndarray:
    """Apply the colour jitter with given parameters to uint8 patches ``(..., H, W, 3)``.

    ``brightness`` is a fraction of the full range (added), ``contrast`` and ``saturation`` are
    factors (1 = unchanged), ``hed_scale``/``hed_shift`` act on the stain optical densities.
    With the neutral values the input is returned unchanged.
    """
    do_hed = hed_scale is not None and (
        not np.allclose(hed_scale, 1.0) or (hed_shift is not None and not np.allclose(hed_shift, 0.0))
    )
    if not do_hed and brightness == 0.0 and contrast == 1.0 and saturation == 1.0:
        return patches
    shape = patches.shape
    pixels = patches.reshape(-1, 3)
    # the arithmetic below is that of the plain expressions in the comments, done in place (the
    # same float32 operations in the same order, so the same bytes: tests/training/test_augment.py)
    if do_hed:
        assert hed_scale is not None
        shift = np.zeros(3) if hed_shift is None else hed_shift
        od = np.take(_OPTICAL_DENSITY, pixels)  # -log((v + 1) / 256)
        hed = od @ _HED_FROM_RGB
        _per_channel(np.multiply, hed, hed_scale)
        _per_channel(np.add, hed, shift)
        img = hed @ _RGB_FROM_HED
        np.negative(img, out=img)
        np.exp(img, out=img)  # exp(-(hed @ rgb_from_hed)) * 256/255 - 1/255
        img *= np.float32(256.0 / 255.0)
        img -= np.float32(1.0 / 255.0)
    else:
        img = pixels.astype(np.float32)
        img /= np.float32(255.0)
    if brightness:
        img += np.float32(brightness)
    if contrast != 1.0:
        mean = img.mean(dtype=np.float32)
        img -= mean  # (img - mean) * contrast + mean
        img *= np.float32(contrast)
        img += mean
    if saturation != 1.0:
        grey = img @ _LUMA
        for c in range(3):  # grey + (img - grey) * saturation, one channel at a time (a fast loop)
            img[:, c] -= grey
        img *= np.float32(saturation)
        for c in range(3):
            img[:, c] += grey
    img *= np.float32(255.0)  # clip(img * 255 + 0.5, 0, 255)
    img += np.float32(0.5)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8).reshape(shape)
