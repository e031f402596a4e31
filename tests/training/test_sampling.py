"""Sampling: patch centres, the epoch sampler, and the data set that reads concentric patches with their masks."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mrseg.core.errors import DataError, SlideError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.training.augment import Augmenter
from mrseg.training.config import AugmentConfig
from mrseg.training.data import PreparedSlide, open_annotations, prepare
from mrseg.training.sampling import TRAIN_STREAM, VAL_STREAM, EpochSampler, PatchDataset, draw_center
from mrseg.wsi.manifest import read_manifest
from training_data import MPP, MULTICLASS, SIZE, make_dataset, make_multiclass_dataset


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> list[PreparedSlide]:
    return prepare(read_manifest(make_dataset(tmp_path_factory.mktemp("data"), 4)), tissue=TissueSettings(mpp=8.0))


def test_centres_in_tissue_and_class_balance(prepared: list[PreparedSlide]) -> None:
    info = prepared[0]  # has a tumour disc
    assert info.positive_labels == (1,) and info.record.annotation is not None
    ann = open_annotations(info.record.annotation, info.dimensions, LabelSpec())
    rng = np.random.default_rng(0)
    pts = np.array([draw_center(info, ann, rng, positive_fraction=0.5) for _ in range(400)])
    r = np.hypot(pts[:, 0] - SIZE / 2, pts[:, 1] - SIZE / 2)
    assert (r < SIZE * 0.38 + 1.5 * 8 / MPP).all()  # inside tissue (up to one tissue-mask pixel)
    inside = ann.rasterize((0, 0, SIZE, SIZE), (SIZE, SIZE))[pts[:, 1].astype(int), pts[:, 0].astype(int)] > 0
    # Half the centres are drawn in the tumour; tissue draws add a few more (tumour area / tissue area).
    assert 0.45 < inside.mean() < 0.70
    none = np.array([draw_center(info, ann, rng, positive_fraction=0.0) for _ in range(200)])
    inside0 = ann.rasterize((0, 0, SIZE, SIZE), (SIZE, SIZE))[none[:, 1].astype(int), none[:, 0].astype(int)] > 0
    assert inside0.mean() < 0.3


def _ds(prepared: list, stream: int = TRAIN_STREAM, **kw: object) -> PatchDataset:
    return PatchDataset(prepared, mpps=(1.0, 2.0, 4.0), size_px=32, seed=5, stream=stream, **kw)  # type: ignore[arg-type]


def test_items_shapes_and_mask_alignment(prepared: list[PreparedSlide]) -> None:
    ds = _ds(prepared[:1], positive_fraction=1.0)
    item = ds[(0, 0)]
    assert item["patches"].shape == (3, 32, 32, 3) and item["patches"].dtype == torch.uint8
    assert item["mask"].shape == (32, 32) and item["mask"].dtype == torch.uint8
    # Tumour pixels are purple (low green), the rest pink or white: the mask follows the image.
    finest = item["patches"][0].numpy().astype(int)
    mask = item["mask"].numpy() > 0
    assert mask.any()
    assert finest[..., 1][mask].mean() < 80 and (finest[..., 1][~mask].mean() > 120 if (~mask).any() else True)


def test_samples_depend_only_on_key(prepared: list[PreparedSlide]) -> None:
    ds = _ds(prepared, augment=Augmenter(AugmentConfig()))
    a, b = ds[(3, 17)], ds[(3, 17)]
    assert torch.equal(a["patches"], b["patches"]) and torch.equal(a["center"], b["center"])
    assert not torch.equal(ds[(4, 17)]["center"], a["center"])
    val = _ds(prepared, stream=VAL_STREAM, length=8, augment=Augmenter(AugmentConfig()))
    assert val.augment is None  # never augmented
    assert torch.equal(val[5]["patches"], val[5]["patches"]) and val[5]["slide"] == 5 % len(prepared)


def test_workers_match_single_process(prepared: list[PreparedSlide]) -> None:
    ds = _ds(prepared)
    sampler = EpochSampler(8)
    sampler.set_epoch(2)
    ref = next(iter(DataLoader(ds, batch_size=8, sampler=sampler, num_workers=0)))
    got = next(iter(DataLoader(ds, batch_size=8, sampler=sampler, num_workers=2)))
    assert torch.equal(ref["patches"], got["patches"]) and torch.equal(ref["mask"], got["mask"])
    ds.close()


def test_epoch_sampler_shards_ranks() -> None:
    keys = [list(EpochSampler(12, rank=r, world_size=3, epoch=1)) for r in range(3)]
    flat = sorted(i for k in keys for _, i in k)
    assert flat == list(range(12)) and all(len(k) == 4 for k in keys)
    with pytest.raises(ValueError):
        EpochSampler(10, world_size=3)


def test_handles_are_per_process(prepared: list[PreparedSlide]) -> None:
    ds = _ds(prepared)
    ds[(0, 0)]
    assert ds._handles._slides  # opened lazily in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert not clone._handles._slides  # nothing travels to a worker
    ds._handles._pid = os.getpid() + 1  # as if forked: inherited handles are dropped, not reused
    ds._handles._check_pid()
    assert not ds._handles._slides


def test_outside_is_white(prepared: list[PreparedSlide]) -> None:
    ds = _ds(prepared[:1])
    patches, mask = ds.read_at(prepared[0], (2.0, 2.0))  # a centre in the corner: most of the coarsest patch is outside
    assert (patches[-1, :8, :8] == 255).all() and not mask[:8, :8].any()


def test_read_failure_names_slide_and_region(tmp_path: Path) -> None:
    manifest = make_dataset(tmp_path, 2)
    prep = prepare(read_manifest(manifest))
    prep[1].record.slide.write_bytes(b"garbage")
    ds = _ds(prep[1:])
    with pytest.raises(SlideError, match=r"slide_01\.tif: failed to read the region centred at level-0 \("):
        ds[(0, 0)]


def test_multiclass_masks_carry_class_indices(tmp_path: Path) -> None:
    for masks in (False, True):
        manifest = make_multiclass_dataset(tmp_path / f"mc_{masks}", 1, masks=masks)
        (info,) = prepare(read_manifest(manifest), labels=MULTICLASS)
        assert info.positive_labels == (1, 2, 3)
        ds = PatchDataset([info], mpps=(1.0,), size_px=32, labels=MULTICLASS, positive_fraction=1.0)
        found = set()
        for index in range(24):
            item = ds[(0, index)]
            found |= set(np.unique(item["mask"].numpy()).tolist())
        assert {1, 2, 3} <= found <= {0, 1, 2, 3}
        ds.close()


def test_a_mask_value_that_is_no_class_stops_the_read(tmp_path: Path) -> None:
    manifest = make_multiclass_dataset(tmp_path, 1, masks=True)
    (info,) = prepare(read_manifest(manifest), labels=MULTICLASS)
    three = LabelSpec(classes=("background", "tumour", "lymphoid"), label_map={"tumour": 1, "lymphoid": 2})
    ds = PatchDataset([info], mpps=(1.0,), size_px=SIZE, labels=three)
    with pytest.raises(DataError, match=r"slide_00\.tif \(region at level-0 .*label 3 is not a class"):
        ds.read_at(info, (SIZE / 2, SIZE / 2))  # the whole slide: every label is in the mask
    binary = PatchDataset([info], mpps=(1.0,), size_px=SIZE)  # binary: every label > 0 is foreground
    assert binary.read_at(info, (SIZE / 2, SIZE / 2))[1].max() == 3
