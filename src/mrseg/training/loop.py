"""The training loop: the paper's recipe, exact resumption, clean interruption, DDP.

An *epoch* on whole slides is not a pass over a finite data set: it is ``train.steps_per_epoch``
optimiser steps of ``train.batch_size`` freshly sampled patches per process (so
``steps_per_epoch * batch_size * world_size`` patches), followed by the fixed validation set of
``sampling.val_samples`` centres. The best model is the one with the lowest validation loss.

Run folder: ``config.yaml`` (resolved), ``metrics.csv``, ``tensorboard/``, ``best.pt``, ``last.pt``
and ``loss_curve.png``. ``last.pt`` is written before the first epoch and after every epoch, so an
interruption (SIGINT/SIGTERM) or a slide that fails to read loses at most the current epoch and
``train(..., resume=True)`` continues exactly from it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mrseg.core.errors import CheckpointError, ConfigError, ModelConfigError, MrsegError, SlideError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.models.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    make_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from mrseg.models.inputs import to_tensor
from mrseg.training import distributed as D
from mrseg.training.config import Config, apply_overrides, config_from_dict, diff_configs
from mrseg.training.losses import SegmentationLoss, l2_penalty
from mrseg.training.runlog import EpochMetrics, RunLog
from mrseg.training.sampling import EpochSampler, PatchDataset, load_datasets, worker_init

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"


class TrainingInterrupted(MrsegError):
    """SIGINT/SIGTERM stopped the run; ``last.pt`` holds the last completed epoch."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass
class TrainResult:
    """What :func:`train` did."""

    run_dir: Path
    epochs_completed: int
    best_epoch: int | None
    best_val_loss: float | None
    stop_reason: str
    model: nn.Module


def resume_config(run_dir: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The configuration stored in ``RUN_DIR/last.pt`` with ``overrides`` applied.

    Raises
    ------
    ConfigError
        An override changes the model (shape-defining fields cannot change on resume).
    """
    ckpt = load_checkpoint(Path(run_dir) / LAST)
    if ckpt.config is None:
        raise CheckpointError(f"{Path(run_dir) / LAST}: holds no training configuration")
    stored = config_from_dict(ckpt.config, source=str(Path(run_dir) / LAST))
    config = apply_overrides(stored, overrides)
    changed = diff_configs(stored, config)
    if any(k.startswith("model.") for k in changed):
        raise ConfigError(f"cannot change {[k for k in changed if k.startswith('model.')]} when resuming")
    if changed:
        log.warning("resuming with changed settings: %s", ", ".join(changed))
    return config


def build_model(config: Config) -> nn.Module:
    """Create the network of ``config.model`` and check the patch size fits it."""
    from mrseg.models import create_model
    from mrseg.models.sizes import describe_valid_sizes

    m = config.model
    model = create_model(m.name, **m.create_kwargs())
    multiple = int(getattr(model, "required_multiple", 1))
    if m.patch_size % multiple:
        raise ModelConfigError("model.patch_size: " + describe_valid_sizes(multiple, m.patch_size, m.depth, m.mpps))
    return model


def _make_scheduler(optimizer: torch.optim.Optimizer, config: Config) -> Any:
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


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may use the legacy global RNG
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class _StopFlag:
    """SIGINT/SIGTERM set a flag that the loop checks between steps (handlers restored on exit)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopFlag]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, _frame: object) -> None:
            if self.signum is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # second Ctrl-C: give up at once
            self.signum = signum
            log.warning("%s received: stopping after the current step", signal.Signals(signum).name)

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _loader(ds: PatchDataset, sampler: Any, config: Config, device: torch.device) -> DataLoader[Any]:
    workers = config.data.num_workers
    return DataLoader(
        ds,
        batch_size=config.train.batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=False,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=config.data.prefetch_factor if workers > 0 else None,
        worker_init_fn=worker_init if workers > 0 else None,
    )


def _stop_workers(loader: DataLoader[Any]) -> None:
    """Shut down a DataLoader's persistent worker processes now (no-op without workers)."""
    iterator = getattr(loader, "_iterator", None)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()
    loader._iterator = None  # type: ignore[attr-defined]


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on CUDA when ``dtype`` is set; a no-op otherwise."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _worker_error(error: MrsegError) -> MrsegError:
    """Re-wrap an mrseg error re-raised by a DataLoader worker (message + traceback) as one clean line."""
    last = [ln for ln in str(error).strip().splitlines() if ln.strip()][-1]
    text = last.split(": ", 1)[1] if ": " in last else last
    return type(error)(text)


def train(
    config: Config,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    device: str = "auto",
    progress: bool | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.data.path`` into the run folder ``out_dir``.

    Parameters
    ----------
    config
        The resolved configuration (see :mod:`mrseg.training.config`); saved to ``config.yaml`` and every checkpoint.
    out_dir
        Run folder (created). With ``resume`` it must hold ``last.pt``.
    resume
        Continue exactly from ``out_dir/last.pt`` (model, optimiser, scheduler, scaler, RNG, epoch).
    device
        ``auto|cpu|cuda|cuda:N|mps``; under torchrun each process uses ``cuda:LOCAL_RANK``.
    progress
        Force the rich progress bars on/off (default: ``config.output.progress`` and a TTY on stderr).

    Raises
    ------
    TrainingInterrupted
        After SIGINT/SIGTERM (``last.pt`` holds the last completed epoch).
    SlideError
        A slide failed to read mid-epoch (message names slide and region; ``last.pt`` is kept).
    """
    out = Path(out_dir)
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    ctx = D.init_distributed(device)
    threads = torch.get_num_threads()  # train.num_threads applies to this run only
    try:
        return _train(config, out, ctx, resume=resume, progress=progress)
    finally:
        torch.set_num_threads(threads)
        if owns_group:
            D.shutdown_distributed()


def _train(config: Config, out: Path, ctx: D.DistContext, *, resume: bool, progress: bool | None) -> TrainResult:
    """The body of :func:`train` once the (possibly distributed) context exists."""
    t = config.train
    seed_everything(t.seed, deterministic=t.deterministic)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out / LAST)
        if ckpt.config is None or ckpt.config.get("model") != config.to_dict()["model"]:
            raise CheckpointError(f"{out / LAST}: model settings differ from the configuration being resumed")
    elif (out / LAST).exists():
        raise ConfigError(f"{out}: already holds a run (last.pt); use --resume or another --out folder")

    train_ds, val_ds = _prepare_data(config, ctx)
    model = build_model(config).to(ctx.device)
    if ckpt is not None:
        model.load_state_dict(ckpt.state_dict)
    input_spec = config.model.input_spec()
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
    optimizer = torch.optim.Adam(raw_model.parameters(), lr=t.lr, betas=t.betas, eps=t.eps)
    scheduler = _make_scheduler(optimizer, config)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.amp)
    if amp_dtype is not None and ctx.device.type != "cuda":
        log.warning("train.amp=%s needs CUDA; training in float32 on %s", t.amp, ctx.device)
        amp_dtype = None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)
    criterion = SegmentationLoss(config.model.num_classes, t.dice_weight)

    start_epoch, best, best_epoch, bad_epochs = 0, math.inf, None, 0
    if ckpt is not None:
        ts = ckpt.train_state
        optimizer.load_state_dict(ts["optimizer"])
        if scheduler is not None and ts.get("scheduler") is not None:
            scheduler.load_state_dict(ts["scheduler"])
        if ts.get("scaler"):
            scaler.load_state_dict(ts["scaler"])
        restore_rng_state(ts["rng"])
        start_epoch = ckpt.epoch
        best = ckpt.best_val_loss if ckpt.best_val_loss is not None else math.inf
        best_epoch, bad_epochs = ts.get("best_epoch"), int(ts.get("bad_epochs", 0))
        log.info("resuming %s at epoch %d (best val loss %.4g)", out, start_epoch, best)

    def save(path: Path, epoch: int, val_loss: float | None, with_state: bool) -> None:
        state: dict[str, Any] = {}
        if with_state:
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict(),
                "rng": capture_rng_state(),
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "world_size": ctx.world_size,
            }
        c = make_checkpoint(
            raw_model,
            input_spec,
            labels=LabelSpec.for_outputs(config.model.num_classes),
            tissue=TissueSettings(mpp=config.data.tissue_mpp),
            config=config.to_dict(),
            epoch=epoch,
            best_val_loss=None if math.isinf(best) else best,
            val_loss=val_loss,
            train_state=state,
        )
        save_checkpoint(path, c)

    runlog = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / CONFIG_FILE)
        runlog = RunLog(out, tensorboard=config.output.tensorboard, start_epoch=start_epoch)
        if ckpt is None:
            save(out / LAST, 0, None, True)

    samples_per_epoch = t.steps_per_epoch * t.batch_size * ctx.world_size
    sampler = EpochSampler(samples_per_epoch, rank=ctx.rank, world_size=ctx.world_size)
    train_loader = _loader(train_ds, sampler, config, ctx.device)
    val_loader = _loader(val_ds, list(range(ctx.rank, len(val_ds), ctx.world_size)), config, ctx.device)
    show = (config.output.progress if progress is None else progress) and ctx.is_main
    show = show and (progress is True or sys.stderr.isatty())
    stop_reason = "completed"
    completed = start_epoch
    stop = _StopFlag()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show,
        transient=False,
    )
    try:
        with stop.installed(), bars:
            epoch_task = bars.add_task("epochs", total=t.epochs, completed=start_epoch)
            batch_task = bars.add_task("batches", total=t.steps_per_epoch)
            for epoch in range(start_epoch + 1, t.epochs + 1):
                t0 = time.perf_counter()
                sampler.set_epoch(epoch)
                bars.reset(batch_task, total=t.steps_per_epoch, description=f"epoch {epoch}")
                model.train()
                loss_sum, n_seen = 0.0, 0
                try:
                    for batch in train_loader:
                        if D.any_rank(stop.signum is not None, ctx):
                            break
                        x = to_tensor(batch["patches"], input_spec).to(ctx.device, non_blocking=True)
                        y = batch["mask"].to(ctx.device, non_blocking=True)
                        with _autocast(ctx.device, amp_dtype):
                            data_loss = criterion(model(x), y)
                        loss = data_loss + l2_penalty(raw_model, t.l2)
                        optimizer.zero_grad(set_to_none=True)
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                        loss_sum += float(data_loss.detach()) * x.shape[0]
                        n_seen += x.shape[0]
                        bars.advance(batch_task)
                    if D.any_rank(stop.signum is not None, ctx):
                        raise TrainingInterrupted(
                            f"interrupted during epoch {epoch}; {out / LAST} holds epoch {completed} "
                            f"(continue with: mrseg train --resume {out})",
                            stop.signum or signal.SIGTERM,
                        )
                    train_time = time.perf_counter() - t0
                    D.broadcast_buffers(raw_model, ctx)
                    val_loss = _validate(raw_model, val_loader, input_spec, criterion, ctx, amp_dtype)
                except Exception as error:
                    if stop.signum is not None and not isinstance(error, TrainingInterrupted):
                        raise TrainingInterrupted(
                            f"interrupted during epoch {epoch} ({type(error).__name__}: {error}); "
                            f"{out / LAST} holds epoch {completed}",
                            stop.signum,
                        ) from error
                    if isinstance(error, MrsegError) and "Original Traceback" in str(error):
                        raise _worker_error(error) from error
                    raise
                tot_loss, tot_n = D.all_reduce_sum([loss_sum, float(n_seen)], ctx)
                train_loss = tot_loss / max(tot_n, 1.0)
                l2_value = float(l2_penalty(raw_model, t.l2).detach())
                lr = float(optimizer.param_groups[0]["lr"])
                if scheduler is not None:
                    scheduler.step(val_loss) if t.scheduler == "plateau" else scheduler.step()
                improved = val_loss < best
                if improved:
                    best, best_epoch, bad_epochs = val_loss, epoch, 0
                else:
                    bad_epochs += 1
                if ctx.is_main:
                    if improved:
                        save(out / BEST, epoch, val_loss, False)
                    save(out / LAST, epoch, val_loss, True)
                    elapsed = time.perf_counter() - t0
                    assert runlog is not None
                    runlog.add(EpochMetrics(epoch, train_loss, val_loss, l2_value, lr, tot_n / train_time, elapsed))
                    log.info(
                        "epoch %d/%d  train %.4f  val %.4f%s  l2 %.4f  lr %.2e  %.1f samples/s  %.1f s",
                        epoch, t.epochs, train_loss, val_loss, " *" if improved else "", l2_value, lr,
                        tot_n / train_time, elapsed,
                    )  # fmt: skip
                bars.advance(epoch_task)
                completed = epoch
                D.barrier(ctx)
                if t.patience is not None and bad_epochs >= t.patience:
                    stop_reason = "early_stopping"
                    log.info("early stopping: no validation improvement for %d epochs", bad_epochs)
                    break
    except SlideError as error:
        raise SlideError(f"{error} (run stopped; {out / LAST} holds epoch {completed})") from error
    finally:
        # Persistent workers ignore SIGTERM (the trainer owns interruption), so they must be stopped
        # explicitly on every exit path, or an error kept alive by its traceback leaves them running.
        _stop_workers(train_loader)
        _stop_workers(val_loader)
        train_ds.close()
        val_ds.close()
        if runlog is not None:
            runlog.close(plot=config.output.plot, best_epoch=best_epoch)
    return TrainResult(out, completed, best_epoch, None if math.isinf(best) else best, stop_reason, raw_model)


def _prepare_data(config: Config, ctx: D.DistContext) -> tuple[PatchDataset, PatchDataset]:
    """Rank 0 validates the data set and shares the result, so problems are reported once."""
    if not ctx.distributed:
        return load_datasets(config)
    payload: object
    if ctx.is_main:
        try:
            payload = load_datasets(config)
        except MrsegError as error:
            payload = error
    else:
        payload = None
    payload = D.broadcast_object(payload, ctx)
    if isinstance(payload, MrsegError):
        raise payload
    assert isinstance(payload, tuple)
    return payload  # type: ignore[return-value]


@torch.no_grad()
def _validate(
    model: nn.Module,
    loader: DataLoader[Any],
    input_spec: Any,
    criterion: nn.Module,
    ctx: D.DistContext,
    amp_dtype: torch.dtype | None,
) -> float:
    """Mean data loss over the fixed validation centres (all ranks)."""
    model.eval()
    total, count = 0.0, 0.0
    for batch in loader:
        x = to_tensor(batch["patches"], input_spec).to(ctx.device, non_blocking=True)
        y = batch["mask"].to(ctx.device, non_blocking=True)
        with _autocast(ctx.device, amp_dtype):
            loss = criterion(model(x), y)
        total += float(loss) * x.shape[0]
        count += x.shape[0]
    total, count = D.all_reduce_sum([total, count], ctx)
    return total / max(count, 1.0)
