"""Patch sampling and the PyTorch data sets that read concentric patches with their label masks.

Every sample is a function of ``(seed, stream, epoch, index)`` only: its centre, slide and
augmentation are drawn from ``numpy.random.default_rng([seed, stream, epoch, index])``. Results are
therefore identical whatever the number of DataLoader workers or ranks, resuming an epoch replays
it exactly, and the validation set (stream 1, epoch 0) is a fixed list of centres.

Slides and annotations are opened lazily in the process that reads them (each DataLoader worker
has its own handles, keyed by path and process id), so no file handle crosses a fork.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mrseg.core.errors import DataError, SlideError
from mrseg.core.input_spec import InputSpec
from mrseg.core.label_spec import LabelSpec
from mrseg.training.augment import Augmenter
from mrseg.training.config import Config
from mrseg.training.data import PreparedSlide, exclude_records, open_annotations, prepare, split_records
from mrseg.wsi.annotations import Annotations
from mrseg.wsi.concentric import read_concentric
from mrseg.wsi.manifest import discover
from mrseg.wsi.slide import Slide

log = logging.getLogger(__name__)

TRAIN_STREAM = 0
VAL_STREAM = 1
#: Candidate centres of hard-negative mining: key ``(round, index)``, random slide, uniform in tissue, no augmentation.
MINE_STREAM = 2


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, global_index)`` keys of this rank's share of an epoch.

    An epoch is ``num_samples`` patches in total over ``world_size`` ranks; rank ``r`` gets indices
    ``r, r + world_size, ...``. Call :meth:`set_epoch` before iterating (as with DistributedSampler).
    """

    def __init__(self, num_samples: int, *, rank: int = 0, world_size: int = 1, epoch: int = 0) -> None:
        if num_samples % world_size:
            raise ValueError(f"num_samples {num_samples} must be a multiple of world_size {world_size}")
        self.num_samples = num_samples
        self.rank = rank
        self.world_size = world_size
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in range(self.rank, self.num_samples, self.world_size):
            yield (self.epoch, index)

    def __len__(self) -> int:
        return self.num_samples // self.world_size


class _Handles:
    """Slides and annotations opened on first use in the current process (re-opened after a fork)."""

    def __init__(self, backend: str, labels: LabelSpec) -> None:
        self.backend = backend
        self.labels = labels
        self._pid = -1
        self._slides: dict[str, Slide] = {}
        self._annotations: dict[str, Annotations] = {}

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            # Inherited handles belong to the parent: forget them without closing.
            self._slides, self._annotations, self._pid = {}, {}, os.getpid()

    def slide(self, info: PreparedSlide) -> Slide:
        self._check_pid()
        key = str(info.record.slide)
        if key not in self._slides:
            self._slides[key] = Slide.open(info.record.slide, backend=self.backend, mpp=info.record.mpp)  # type: ignore[arg-type]
        return self._slides[key]

    def annotations(self, info: PreparedSlide) -> Annotations | None:
        self._check_pid()
        if info.record.annotation is None:
            return None
        key = str(info.record.annotation)
        if key not in self._annotations:
            self._annotations[key] = open_annotations(info.record.annotation, info.dimensions, self.labels)
        return self._annotations[key]

    def close(self) -> None:
        if self._pid == os.getpid():
            for slide in self._slides.values():
                slide.close()
            for annotations in self._annotations.values():
                annotations.close()
        self._slides, self._annotations = {}, {}

    def __getstate__(self) -> dict[str, Any]:
        return {"backend": self.backend, "labels": self.labels}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["backend"], state["labels"])  # type: ignore[misc]


def draw_center(
    info: PreparedSlide,
    annotations: Annotations | None,
    rng: np.random.Generator,
    *,
    positive_fraction: float = 0.5,
    jitter_um: float = 0.0,
) -> tuple[float, float]:
    """Draw one patch centre ``(x, y)`` in level-0 pixels.

    With probability ``positive_fraction`` (when the slide has positive regions) the centre is
    uniform by area inside a positive region of a random positive label; otherwise it is uniform
    inside the tissue mask. A uniform jitter of ``+- jitter_um`` microns is added on each axis and the
    centre is clipped to the slide.
    """
    w0, h0 = info.dimensions
    if info.positive_labels and annotations is not None and rng.random() < positive_fraction:
        label = info.positive_labels[int(rng.integers(len(info.positive_labels)))]
        x, y = (float(v) for v in annotations.sample_points(label, 1, rng)[0])
    else:
        flat = int(info.tissue_index[int(rng.integers(info.tissue_index.size))])
        th, tw = info.tissue_shape
        row, col = divmod(flat, tw)
        x = (col + rng.random()) * (w0 / tw)
        y = (row + rng.random()) * (h0 / th)
    return jittered(info, (x, y), rng, jitter_um)


def jittered(
    info: PreparedSlide, center: tuple[float, float], rng: np.random.Generator, jitter_um: float
) -> tuple[float, float]:
    """``center`` (level-0 px) plus a uniform ``+- jitter_um`` microns on each axis, clipped to the slide."""
    x, y = center
    w0, h0 = info.dimensions
    if jitter_um > 0:
        j = jitter_um / info.mpp
        x += rng.uniform(-j, j)
        y += rng.uniform(-j, j)
    return float(np.clip(x, 0.0, w0)), float(np.clip(y, 0.0, h0))


class PatchDataset(Dataset[dict[str, Any]]):
    """Concentric patches with the label mask of the finest patch.

    Items are ``{"patches": uint8 (J, H, W, 3), "mask": uint8 (H, W), "slide": int,
    "center": float64 (2,)}`` (tensors). Conversion to the model input happens on the batch with
    :func:`mrseg.models.inputs.to_tensor` in the training process.

    Parameters
    ----------
    slides
        Prepared (validated) slides.
    mpps, size_px
        The concentric specification (microns per pixel, finest first; patch edge in pixels).
    stream
        :data:`TRAIN_STREAM` (key = ``(epoch, index)``, random slide) or :data:`VAL_STREAM`
        (key = ``index``, slides round-robin, fixed centres).
    augment
        Applied to training samples only.
    labels
        The label spec annotations are read with (default: binary CAMELYON); with a softmax spec a
        mask value that is not a class is a :class:`DataError`.
    cache
        Validation stream only: keep every item in memory after its first read (in the process that
        reads it, e.g. each persistent DataLoader worker), so a fixed validation set is read once.
    """

    def __init__(
        self,
        slides: Sequence[PreparedSlide],
        *,
        mpps: Sequence[float],
        size_px: int,
        seed: int = 0,
        stream: int = TRAIN_STREAM,
        positive_fraction: float = 0.5,
        jitter_um: float = 0.0,
        augment: Augmenter | None = None,
        length: int | None = None,
        backend: str = "auto",
        labels: LabelSpec | None = None,
        cache: bool = False,
    ) -> None:
        if not slides:
            raise ValueError("PatchDataset needs at least one slide")
        self.slides = list(slides)
        self.mpps = tuple(float(m) for m in mpps)
        self.size_px = int(size_px)
        self.spec = InputSpec(self.mpps, self.size_px)
        self.seed = int(seed)
        self.stream = int(stream)
        self.positive_fraction = float(positive_fraction)
        self.jitter_um = float(jitter_um)
        self.augment = augment if stream == TRAIN_STREAM else None
        self.length = length
        self.labels = labels or LabelSpec()
        self._handles = _Handles(backend, self.labels)
        #: Hard negatives ``float64 (n, 4)``: slide index, centre x, y (level-0 px), weight; see :meth:`set_hard_pool`.
        self.hard_pool = np.zeros((0, 4))
        self.hard_fraction = 0.0
        # validation only: items are a function of the index, so they can be kept after the first read
        self.cache: dict[int, dict[str, Any]] | None = {} if cache and stream == VAL_STREAM else None

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("a training PatchDataset is indexed by (epoch, index) keys from EpochSampler")
        return self.length

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            epoch, index = key
        else:
            epoch, index = 0, int(key)
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        item = self._item(epoch, index)
        if self.cache is not None:
            self.cache[index] = item
        return item

    def set_hard_pool(self, pool: np.ndarray, fraction: float) -> None:
        """Draw a ``fraction`` of training centres from ``pool`` rows (slide, x, y, weight), by weight.

        A drawn centre gets the usual jitter and augmentation; labels still come from the annotations.
        An empty pool (or fraction 0) restores plain sampling exactly. DataLoader workers hold a copy
        of the data set, so set the pool before (re)creating the loader.
        """
        pool = np.asarray(pool, dtype=np.float64).reshape(-1, 4)
        self.hard_pool = pool[pool[:, 3] > 0]
        self.hard_fraction = float(fraction)

    def _item(self, epoch: int, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.stream, epoch, index])
        fixed: tuple[float, float] | None = None
        if self.stream == VAL_STREAM:
            slide_idx = index % len(self.slides)
        elif self.stream == TRAIN_STREAM and len(self.hard_pool) and rng.random() < self.hard_fraction:
            w = self.hard_pool[:, 3]
            row = self.hard_pool[int(rng.choice(len(w), p=w / w.sum()))]
            slide_idx, fixed = int(row[0]), (float(row[1]), float(row[2]))
        else:
            slide_idx = int(rng.integers(len(self.slides)))
        info = self.slides[slide_idx]
        patches, mask, center = self.read(info, rng, center=fixed)
        if self.augment is not None:
            patches, mask = self.augment(patches, mask, rng)
        return {
            "patches": torch.from_numpy(np.ascontiguousarray(patches)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "slide": slide_idx,
            "center": torch.tensor(center, dtype=torch.float64),
        }

    def read(
        self, info: PreparedSlide, rng: np.random.Generator, center: tuple[float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """Draw a centre on ``info`` and read its patches ``(J, H, W, 3)`` and finest-patch mask ``(H, W)``.

        With ``center`` (level-0 px) given, that centre (plus the usual jitter) is read instead of a drawn one.

        Raises
        ------
        SlideError
            Naming the slide, the centre (level-0 px) and the mpps when reading fails.
        """
        try:
            if center is None:
                center = draw_center(
                    info,
                    self._handles.annotations(info),
                    rng,
                    positive_fraction=self.positive_fraction,
                    jitter_um=self.jitter_um,
                )
            else:
                center = jittered(info, center, rng, self.jitter_um)
        except Exception as error:  # annotation readers raise many types; never train on garbage
            raise self._read_error(info, (float("nan"), float("nan")), error) from error
        patches, mask = self.read_at(info, center)
        return patches, mask, center

    def read_at(self, info: PreparedSlide, center: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """The patches ``(J, H, W, 3)`` uint8 and the finest patch's label mask ``(H, W)`` uint8 at ``center``.

        ``center`` is ``(x, y)`` in level-0 pixels of ``info``'s slide.

        Raises
        ------
        SlideError
            Naming the slide, the centre (level-0 px) and the mpps when reading fails.
        DataError
            With a softmax label spec, a mask value that is not a class (naming the value and the file).
        """
        try:
            slide = self._handles.slide(info)
            annotations = self._handles.annotations(info)
            patches = read_concentric(slide, center, self.spec)
            size = (self.size_px, self.size_px)
            if annotations is None:
                mask = np.zeros(size, dtype=np.uint8)
            else:
                mask = annotations.rasterize(slide.box(center, self.mpps[0], size), size)
        except Exception as error:  # backends raise many types; never train on garbage
            raise self._read_error(info, center, error) from error
        expected = (len(self.mpps), self.size_px, self.size_px, 3)
        if patches.shape != expected or patches.dtype != np.uint8:
            raise SlideError(
                f"{info.record.slide}: region at level-0 ({center[0]:.1f}, {center[1]:.1f}) px read as "
                f"{patches.dtype} {patches.shape}, expected uint8 {expected}"
            )
        mask = np.asarray(mask, dtype=np.uint8)
        if self.labels.activation == "softmax" and mask.size and int(mask.max()) >= self.labels.num_classes:
            self.labels.check_label(int(mask.max()), f"{info.record.annotation} (region at level-0 {center})")
        return patches, mask

    def _read_error(self, info: PreparedSlide, center: tuple[float, float], error: Exception) -> SlideError:
        return SlideError(
            f"{info.record.slide}: failed to read the region centred at level-0 "
            f"({center[0]:.1f}, {center[1]:.1f}) px, mpps {list(self.mpps)}, {self.size_px} px: "
            f"{type(error).__name__}: {error}"
        )

    def close(self) -> None:
        """Close the handles this process opened."""
        self._handles.close()


def worker_init(_: int) -> None:
    """DataLoader ``worker_init_fn``: one intra-op thread per worker; SIGINT/SIGTERM left to the trainer.

    Ctrl-C reaches the whole process group; workers ignore it so the training process can finish the
    current step, keep ``last.pt`` consistent and shut the workers down itself.
    """
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def load_datasets(config: Config, *, rank: int = 0, world_size: int = 1) -> tuple[PatchDataset, PatchDataset]:
    """Discover, validate and split the data of ``config`` into (training, validation) datasets."""
    if not config.data.path:
        raise DataError("no data: pass --data PATH (a manifest, CAMELYON16 folder or mrseg synth folder)")
    records = exclude_records(discover(config.data.path), config.data.exclude)
    train_recs, val_recs = split_records(
        records, val_fraction=config.data.val_fraction, seed=config.data.split_seed, mode=config.data.split
    )
    if not train_recs or not val_recs:
        raise DataError(
            f"{config.data.path}: need training and validation slides, got {len(train_recs)} and {len(val_recs)}"
        )
    prepared = prepare(
        train_recs + val_recs,
        tissue=config.data.tissue,
        labels=config.labels,
        backend=config.data.backend,
        min_mpp=config.model.mpps[0],
    )
    train_slides: list[PreparedSlide] = prepared[: len(train_recs)]
    val_slides: list[PreparedSlide] = prepared[len(train_recs) :]
    log.info(
        "data: %d training slides, %d validation slides (%s)",
        len(train_slides),
        len(val_slides),
        ", ".join(s.name for s in val_slides),
    )
    common: dict[str, Any] = {
        "mpps": config.model.mpps,
        "size_px": config.model.patch_size,
        "seed": config.sampling.seed,
        "positive_fraction": config.sampling.positive_fraction,
        "backend": config.data.backend,
        "labels": config.labels,
    }
    train_ds = PatchDataset(
        train_slides,
        stream=TRAIN_STREAM,
        jitter_um=config.sampling.jitter_um,
        augment=Augmenter(config.augment, tuple(config.model.mpps)) if config.augment.enabled else None,
        **common,
    )
    if config.sampling.val_positive_fraction is not None:
        common["positive_fraction"] = config.sampling.val_positive_fraction
    val_ds = PatchDataset(
        val_slides, stream=VAL_STREAM, length=config.sampling.val_samples, cache=config.sampling.val_cache, **common
    )
    return train_ds, val_ds
