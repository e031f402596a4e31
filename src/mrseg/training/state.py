"""What one training run holds between steps: model, optimiser, scheduler, scaler, loss and progress.

:func:`start_run` builds it from the configuration (in the order that fixes the random streams:
the model is initialised after the data are prepared), :meth:`RunState.restore` loads a
``last.pt`` into it for an exact resumption, and :meth:`RunState.checkpoint` turns it back into a
:class:`~mrseg.models.checkpoint.Checkpoint` that records the input spec, the label spec and the
tissue settings the model was trained with.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mrseg.core.device import native_bf16
from mrseg.core.errors import ModelConfigError
from mrseg.core.input_spec import InputSpec
from mrseg.models import create_model
from mrseg.models.checkpoint import Checkpoint, capture_rng_state, make_checkpoint, restore_rng_state
from mrseg.models.pretrained import load_pretrained
from mrseg.models.sizes import describe_valid_sizes
from mrseg.training import distributed as D
from mrseg.training.config import Config
from mrseg.training.losses import SegmentationLoss, make_optimizer

log = logging.getLogger(__name__)

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch; optionally ask torch for deterministic kernels.

    With ``deterministic``, torch's deterministic mode is on but its debugging fill of every new
    tensor (``torch.utils.deterministic.fill_uninitialized_memory``, NaN written into memory that the
    kernel overwrites anyway) is off: it changes no result and took about 10 % of a small CPU
    training step (docs/performance.md "Training step").
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may use the legacy global RNG
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def build_model(config: Config, *, pretrained: bool = True) -> nn.Module:
    """Create the network of ``config.model``, check the patch size fits it, load ``model.pretrained`` weights.

    ``pretrained=False`` skips the backbone weights (when resuming, the checkpoint's replace them).
    """
    m = config.model
    model = create_model(m.name, **m.create_kwargs())
    multiple = int(getattr(model, "required_multiple", 1))
    if m.patch_size % multiple:
        reason = describe_valid_sizes(multiple, m.patch_size, m.depth, m.mpps, min_depth=getattr(model, "min_depth", 0))
        raise ModelConfigError("model.patch_size: " + reason)
    if pretrained and m.pretrained is not None:
        load_pretrained(model, m.pretrained)
        expected = tuple(getattr(model, "normalization", (m.mean, m.std)))
        if expected != (tuple(m.mean), tuple(m.std)):
            log.warning(
                "model.pretrained expects inputs normalised with mean %s, std %s; the config uses mean %s, std %s "
                "(set model.mean and model.std to match)", *expected, list(m.mean), list(m.std),
            )  # fmt: skip
    return model


def make_scheduler(optimizer: torch.optim.Optimizer, config: Config) -> Any:
    """The learning-rate scheduler of ``config.train.scheduler`` (None for ``"none"``)."""
    t = config.train
    if t.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=t.scheduler_factor, patience=t.scheduler_patience
        )
    if t.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs)
    if t.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=t.scheduler_step, gamma=t.scheduler_factor)
    return None


def amp_dtype(config: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` (None: float32).

    ``fp16`` needs CUDA; ``bf16`` runs on CUDA and on a CPU that computes bf16 natively
    (:func:`mrseg.core.device.native_bf16`: AVX512-BF16 or AMX). Elsewhere a warning says so and
    training stays in float32 (emulated bf16 is several times slower than float32).
    """
    dtype = _AMP_DTYPES.get(config.train.amp)
    if dtype is None or device.type == "cuda":
        return dtype
    if dtype == torch.bfloat16 and native_bf16(device):
        return dtype
    need = "CUDA" if dtype == torch.float16 else "CUDA or a CPU with native bf16 (AVX512-BF16 or AMX)"
    log.warning("train.amp=%s needs %s; training in float32 on %s", config.train.amp, need, device)
    return None


@dataclass
class RunState:
    """The mutable state of a run (``model`` may be the DDP wrapper of ``raw_model``).

    ``start_epoch`` and ``completed`` count completed epochs; ``best`` is the lowest selection score
    so far (:func:`selection_score` of ``train.select``; ``inf`` before the first), reached at
    ``best_epoch`` whose validation loss is ``best_loss``; ``bad_epochs`` counts epochs since then
    (early stopping). ``hard_pool`` holds the mined hard negatives (rows slide, x, y, weight; see
    :mod:`mrseg.training.mining`), kept in ``last.pt`` for an exact resumption.
    """

    config: Config
    ctx: D.DistContext
    model: nn.Module
    raw_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    criterion: SegmentationLoss
    amp_dtype: torch.dtype | None
    input_spec: InputSpec
    start_epoch: int = 0
    completed: int = 0
    best: float = math.inf
    best_loss: float = math.inf
    best_epoch: int | None = None
    hard_pool: np.ndarray | None = None
    bad_epochs: int = 0
    stop_reason: str = field(default="completed")
    ema: AveragedModel | None = None

    @property
    def eval_model(self) -> nn.Module:
        """The model that is validated and saved as ``best.pt``: the weight average (``train.ema``) or the model."""
        return self.ema.module if self.ema is not None else self.raw_model

    def update_average(self) -> None:
        """Fold the current weights into the moving average (after each optimiser step; no-op without one)."""
        if self.ema is not None:
            self.ema.update_parameters(self.raw_model)

    @property
    def best_val_loss(self) -> float | None:
        return None if math.isinf(self.best_loss) else self.best_loss

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue exactly from ``ckpt`` (a ``last.pt``): weights are loaded by :func:`start_run`."""
        ts = ckpt.train_state
        self.optimizer.load_state_dict(ts["optimizer"])
        if self.scheduler is not None and ts.get("scheduler") is not None:
            self.scheduler.load_state_dict(ts["scheduler"])
        if ts.get("scaler"):
            self.scaler.load_state_dict(ts["scaler"])
        restore_rng_state(ts["rng"])
        self.start_epoch = self.completed = ckpt.epoch
        if self.ema is not None and ts.get("ema") is not None:
            self.ema.load_state_dict(ts["ema"])
        self.best_loss = ckpt.best_val_loss if ckpt.best_val_loss is not None else math.inf
        self.best = float(ts.get("best_score", self.best_loss))
        if ts.get("hard_pool") is not None:
            self.hard_pool = np.asarray(ts["hard_pool"], dtype=np.float64).reshape(-1, 4)
        self.best_epoch, self.bad_epochs = ts.get("best_epoch"), int(ts.get("bad_epochs", 0))

    def end_epoch(self, epoch: int, val_loss: float, val_auc: float = math.nan) -> bool:
        """Step the scheduler and track the best epoch by ``train.select``; True when this epoch is a new best."""
        score = selection_score(self.config.train.select, val_loss, val_auc, epoch)
        if self.scheduler is not None:
            if self.config.train.scheduler == "plateau":
                self.scheduler.step(score)
            else:
                self.scheduler.step()
        improved = score < self.best
        if improved:
            self.best, self.best_loss, self.best_epoch, self.bad_epochs = score, val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    def should_stop_early(self) -> bool:
        patience = self.config.train.patience
        return patience is not None and self.bad_epochs >= patience

    def checkpoint(self, epoch: int, val_loss: float | None, *, with_state: bool) -> Checkpoint:
        """The checkpoint of the current weights; ``with_state`` adds what exact resumption needs."""
        state: dict[str, Any] = {}
        if with_state:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(),
                "rng": capture_rng_state(),
                "best_epoch": self.best_epoch,
                "best_score": self.best,
                "hard_pool": self.hard_pool.tolist() if self.hard_pool is not None and len(self.hard_pool) else None,
                "bad_epochs": self.bad_epochs,
                "world_size": self.ctx.world_size,
                "ema": self.ema.state_dict() if self.ema is not None else None,
            }
        # last.pt holds the trained weights (and the average in its state), best.pt what was validated
        return make_checkpoint(
            self.raw_model if with_state else self.eval_model,
            self.input_spec,
            labels=self.config.labels,
            tissue=self.config.data.tissue,
            config=self.config.to_dict(),
            epoch=epoch,
            best_val_loss=self.best_val_loss,
            val_loss=val_loss,
            train_state=state,
        )


def selection_score(rule: str, val_loss: float, val_auc: float, epoch: int) -> float:
    """What ``train.select`` minimises: the validation loss, minus the validation pixel AUC, or ``-epoch``.

    A NaN AUC (validation pixels of one class only) is never selected.
    """
    if rule == "val_auc":
        return -val_auc if val_auc == val_auc else math.inf
    if rule == "last":
        return -float(epoch)
    return val_loss


def start_run(config: Config, ctx: D.DistContext, ckpt: Checkpoint | None) -> RunState:
    """Build model (weights from ``ckpt`` when resuming), optimiser, scheduler, scaler and loss."""
    t = config.train
    model = build_model(config, pretrained=ckpt is None).to(ctx.device)
    if ckpt is not None:
        model.load_state_dict(ckpt.state_dict)
    raw_model = model
    if ctx.distributed:
        if t.sync_batchnorm and ctx.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            raw_model = model
        elif t.sync_batchnorm:
            log.warning("train.sync_batchnorm needs CUDA; using per-rank BatchNorm on %s", ctx.device)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    if t.channels_last:
        raw_model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = make_optimizer(raw_model, lr=t.lr, betas=t.betas, eps=t.eps, l2=t.l2, l2_mode=t.l2_mode)
    dtype = amp_dtype(config, ctx.device)
    run = RunState(
        config=config,
        ctx=ctx,
        model=model,
        raw_model=raw_model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, config),
        scaler=torch.amp.GradScaler("cuda", enabled=dtype is torch.float16),
        criterion=SegmentationLoss.for_labels(config.labels, t.dice_weight),
        amp_dtype=dtype,
        input_spec=config.model.input_spec(),
        ema=_weight_average(raw_model, t.ema),
    )
    if ckpt is not None:
        run.restore(ckpt)
    return run


def _weight_average(model: nn.Module, decay: float) -> AveragedModel | None:
    """torch's exponential moving average of ``model``'s parameters and buffers (None when ``decay`` is 0)."""
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


__all__ = ["RunState", "amp_dtype", "build_model", "make_scheduler", "seed_everything", "selection_score", "start_run"]
