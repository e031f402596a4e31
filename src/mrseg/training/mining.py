"""Hard-negative mining: training centres drawn from the model's own false positives on the training slides.

The standard CAMELYON practice (Wang et al. 2016, Liu et al. 2017) in a sampled form: after the epochs
listed in ``sampling.hard_negative_epochs`` the current model scores ``sampling.hard_negative_candidates``
centres drawn uniformly in the tissue of the *training* slides (a fresh, seeded set each round, no
augmentation); a candidate whose finest patch has at least ``hard_negative_min_fp`` of its pixels
predicted positive (p >= ``hard_negative_threshold``) where the annotation says 0 joins the pool,
weighted by that false-positive share. From then on a ``hard_negative_fraction`` of the training
centres is drawn from the pool (:meth:`~mrseg.training.sampling.PatchDataset.set_hard_pool`; the rest
as before). Only the model's predictions and the annotations are used: nothing needs to know *why* a
region is a false positive.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mrseg.training.config import Config
from mrseg.training.epoch import any_foreground, model_input
from mrseg.training.sampling import MINE_STREAM, PatchDataset, worker_init

log = logging.getLogger(__name__)


def mining_enabled(config: Config) -> bool:
    """True when the configuration mines hard negatives (a fraction > 0 and at least one epoch)."""
    s = config.sampling
    return s.hard_negative_fraction > 0 and bool(s.hard_negative_epochs)


def mines_after(config: Config, epoch: int) -> bool:
    """True when a mining round follows ``epoch`` (never after the last epoch)."""
    return mining_enabled(config) and epoch in config.sampling.hard_negative_epochs and epoch < config.train.epochs


@torch.no_grad()
def mine_hard_negatives(
    model: nn.Module,
    train_ds: PatchDataset,
    config: Config,
    round_index: int,
    *,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> np.ndarray:
    """Score this rank's share of one round's candidates; return the pool rows ``(slide, x, y, fp share)``.

    ``x, y`` are level-0 pixels of training slide ``slide`` (an index into ``train_ds.slides``).
    """
    s = config.sampling
    t0 = time.perf_counter()
    candidates = PatchDataset(
        train_ds.slides,
        mpps=train_ds.mpps,
        size_px=train_ds.size_px,
        seed=train_ds.seed,
        stream=MINE_STREAM,
        positive_fraction=0.0,
        backend=config.data.backend,
        labels=train_ds.labels,
    )
    keys = [(round_index, i) for i in range(rank, s.hard_negative_candidates, world_size)]
    workers = config.data.num_workers
    loader: DataLoader[Any] = DataLoader(
        candidates,
        batch_size=config.train.batch_size * 2,
        sampler=keys,
        num_workers=workers,
        worker_init_fn=worker_init if workers > 0 else None,
    )
    spec = config.model.input_spec()
    was_training = model.training
    model.eval()
    rows = []
    try:
        for batch in loader:
            x, y = model_input(batch, spec, device, channels_last=config.train.channels_last)
            prob = any_foreground(model(x).float(), config.labels)
            fp = ((prob >= s.hard_negative_threshold) & (y == 0)).float().mean(dim=(1, 2)).cpu().numpy()
            centers = batch["center"].numpy()
            for k in np.flatnonzero(fp >= s.hard_negative_min_fp):
                rows.append((float(batch["slide"][k]), centers[k, 0], centers[k, 1], float(fp[k])))
    finally:
        candidates.close()
        model.train(was_training)
    pool = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    log.info(
        "hard-negative mining round %d: %d of %d candidates are false positives (%.1f s)",
        round_index, len(pool), len(keys), time.perf_counter() - t0,
    )  # fmt: skip
    return pool


__all__ = ["mine_hard_negatives", "mines_after", "mining_enabled"]
