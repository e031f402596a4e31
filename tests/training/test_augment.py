"""Augmentation: geometry identical for all J patches and the mask; colour keeps the mask; neutral = identity."""

from __future__ import annotations

import numpy as np
import pytest

from mrseg.training.augment import Augmenter, colour, geometric
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
