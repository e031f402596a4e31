"""Augmentation: geometry identical for all J patches and the mask; colour keeps the mask; neutral = identity."""

from __future__ import annotations

import numpy as np
import pytest

from mrseg.training.augment import MIN_BLUR_PX, Augmenter, blur, colour, geometric
from mrseg.training.config import AugmentConfig


def _sample(j: int = 3, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, size=(j, size, size, 3), dtype=np.uint8)
    mask = (rng.random((size, size)) > 0.5).astype(np.uint8)
    return patches, mask


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("flip_h", [False, True])
@pytest.mark.parametrize("flip_v", [False, True])
def test_geometry_same_for_patches_and_mask(k: int, flip_h: bool, flip_v: bool) -> None:
    patches, _ = _sample()
    # The mask is a channel of the first patch, so any mismatch in the transform shows up.
    mask = patches[0, :, :, 0].copy()
    p2, m2 = geometric(patches, mask, k=k, flip_h=flip_h, flip_v=flip_v)
    assert p2.shape == patches.shape and p2.flags.c_contiguous
    np.testing.assert_array_equal(p2[0, :, :, 0], m2)
    for j in range(1, patches.shape[0]):  # every patch gets the same transform
        ref, _ = geometric(patches[j : j + 1], mask, k=k, flip_h=flip_h, flip_v=flip_v)
        np.testing.assert_array_equal(p2[j], ref[0])


def test_rotation_is_about_the_common_centre() -> None:
    # A marker at the centre stays at the centre in every patch; a corner marker moves to another corner.
    patches = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    patches[:, 3:5, 3:5] = 200
    patches[:, 0, 0] = 100
    p2, _ = geometric(patches, np.zeros((8, 8), np.uint8), k=1)
    assert (p2[:, 3:5, 3:5] == 200).all()
    assert (p2[:, 7, 0] == 100).all() and (p2[:, 0, 0] == 0).all()


def test_neutral_colour_is_identity() -> None:
    patches, _ = _sample()
    out = colour(patches, hed_scale=np.ones(3) + 1e-9, hed_shift=np.zeros(3))
    np.testing.assert_array_equal(out, patches)
    assert colour(patches) is patches


def _colour_reference(
    patches: np.ndarray,
    brightness: float,
    contrast: float,
    saturation: float,
    hed_scale: np.ndarray,
    hed_shift: np.ndarray,
) -> np.ndarray:
    """The colour jitter written as plain expressions (the implementation before it was done in place)."""
    from skimage.color import hed_from_rgb, rgb_from_hed

    hed_m, rgb_m = np.asarray(hed_from_rgb, np.float32), np.asarray(rgb_from_hed, np.float32)
    od = -np.log((patches.reshape(-1, 3).astype(np.float32) + 1.0) / 256.0)
    hed = (od @ hed_m) * hed_scale.astype(np.float32) + hed_shift.astype(np.float32)
    img = np.exp(-(hed @ rgb_m)) * np.float32(256.0 / 255.0) - np.float32(1.0 / 255.0)
    img = img + np.float32(brightness)
    mean = img.mean(dtype=np.float32)
    img = (img - mean) * np.float32(contrast) + mean
    grey = (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, None]
    img = grey + (img - grey) * np.float32(saturation)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(patches.shape)


def test_colour_is_bytewise_the_plain_formula() -> None:
    # the in-place implementation (optical densities from a table) gives exactly the plain expressions' bytes
    rng = np.random.default_rng(3)
    for trial in range(20):
        shape = (int(rng.integers(1, 5)), int(rng.integers(1, 70)), int(rng.integers(1, 70)), 3)
        patches = rng.integers(0, 256, size=shape, dtype=np.uint8)
        b, c, s = rng.uniform(-0.2, 0.2), 1 + rng.uniform(-0.2, 0.2), 1 + rng.uniform(-0.2, 0.2)
        scale, shift = 1 + rng.uniform(-0.1, 0.1, 3), rng.uniform(-0.1, 0.1, 3)
        got = colour(patches, brightness=b, contrast=c, saturation=s, hed_scale=scale, hed_shift=shift)
        np.testing.assert_array_equal(got, _colour_reference(patches, b, c, s, scale, shift), err_msg=str(trial))


def test_colour_changes_image_not_mask() -> None:
    patches, mask = _sample()
    aug = Augmenter(AugmentConfig(flips=False, rot90=False, brightness=0.2, contrast=0.2, saturation=0.2, hed=0.1))
    p2, m2 = aug(patches, mask, np.random.default_rng(3))
    np.testing.assert_array_equal(m2, mask)
    assert p2.dtype == np.uint8 and p2.shape == patches.shape
    assert np.abs(p2.astype(int) - patches).mean() > 1.0


def test_hed_jitter_moves_stain_densities() -> None:
    # A haematoxylin-scaled image gets darker in the stained region and white stays white.
    img = np.full((1, 4, 4, 3), 255, np.uint8)
    img[0, :2] = (90, 60, 160)
    out = colour(img, hed_scale=np.array([1.5, 1.0, 1.0]), hed_shift=np.zeros(3))
    assert out[0, :2].astype(int).sum() < img[0, :2].astype(int).sum()
    np.testing.assert_array_equal(out[0, 2:], img[0, 2:])


def test_augmenter_deterministic_per_rng_and_disabled() -> None:
    patches, mask = _sample()
    aug = Augmenter(AugmentConfig())
    a = aug(patches, mask, np.random.default_rng(7))
    b = aug(patches, mask, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    off = Augmenter(AugmentConfig(enabled=False))
    p, m = off(patches, mask, np.random.default_rng(7))
    assert p is patches and m is mask


@pytest.mark.parametrize(("sigma_um", "mpp"), [(0.45, 0.5), (1.2, 1.0), (2.0, 2.0)])
def test_blur_sigma_is_microns_over_mpp(sigma_um: float, mpp: float) -> None:
    """An impulse spreads with the variance of a Gaussian of sigma_um / mpp pixels, per axis."""
    patch = np.zeros((1, 41, 41, 3), np.uint8)
    # a 5-px plateau rather than an impulse, so rounding to uint8 keeps most of the tails
    patch[0, 18:23, 18:23] = 255
    out = blur(patch, [sigma_um / mpp])[0, ..., 0].astype(np.float64)
    ref = patch[0, ..., 0].astype(np.float64)
    xs = np.arange(41) - 20.0

    def var(img: np.ndarray) -> float:
        w = img.sum(axis=0)
        return float((w * xs**2).sum() / w.sum())

    # variances add: blurred = plateau (+) Gaussian
    assert var(out) - var(ref) == pytest.approx((sigma_um / mpp) ** 2, rel=0.05)


def test_blur_augmentation_is_physical_and_spares_the_mask() -> None:
    """The same microns blur the fine patch and (below MIN_BLUR_PX) leave the coarse one untouched."""
    rng = np.random.default_rng(3)
    patches = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    mask = (rng.random((32, 32)) > 0.5).astype(np.uint8)
    cfg = AugmentConfig(flips=False, rot90=False, brightness=0, contrast=0, saturation=0, hed=0, blur_um=0.9)
    aug = Augmenter(cfg, (0.5, 4.0))  # at most 1.8 px at 0.5 µm/px, at most 0.225 px at 4 µm/px
    assert 0.9 / 4.0 < MIN_BLUR_PX
    changed = 0
    for seed in range(8):
        out, m = aug(patches, mask, np.random.default_rng(seed))
        assert np.array_equal(m, mask)
        assert np.array_equal(out[1], patches[1])
        changed += int(not np.array_equal(out[0], patches[0]))
        assert out[0].std() <= patches[0].std()
    assert changed >= 6


def test_blur_needs_the_mpps() -> None:
    with pytest.raises(ValueError, match="mpps"):
        Augmenter(AugmentConfig(blur_um=0.5))
    aug = Augmenter(AugmentConfig(blur_um=0.5), (0.5,))
    with pytest.raises(ValueError, match="2 patches but 1 mpps"):
        aug(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), np.random.default_rng(0))
