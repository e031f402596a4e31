"""The training loop: the paper's recipe, exact resumption, clean interruption, DDP.

An *epoch* on whole slides is not a pass over a finite data set: it is ``train.steps_per_epoch``
optimiser steps of ``train.batch_size`` freshly sampled patches per process (so
``steps_per_epoch * batch_size * world_size`` patches), followed by the fixed validation set of
``sampling.val_samples`` centres. The best model is the one ``train.select`` picks: the lowest
validation loss (default), the highest validation pixel AUC, or the last epoch. With
``sampling.hard_negative_*`` set, the model mines hard negatives after chosen epochs
(:mod:`mrseg.training.mining`).

Run folder: ``config.yaml`` (resolved), ``metrics.csv``, ``tensorboard/``, ``best.pt``, ``last.pt``
and ``loss_curve.png``. ``last.pt`` is written before the first epoch and after every epoch, so an
interruption (SIGINT/SIGTERM) or a slide that fails to read loses at most the current epoch and
``train(..., resume=True)`` continues exactly from it.

The plan of :func:`train`: seed, open the checkpoint to resume (if any), prepare the data (every
file checked up front), build the run state (:mod:`mrseg.training.state`), open the run folder,
then per epoch: optimiser steps and validation (:mod:`mrseg.training.epoch`), then scheduler,
best-model tracking, checkpoints and the metrics row, then (when configured) a mining round.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress, TaskID
from torch import nn
from torch.utils.data import DataLoader

from mrseg.core.atomic import sweep_stale
from mrseg.core.errors import CheckpointError, ConfigError, MrsegError, SlideError
from mrseg.core.locks import output_lock
from mrseg.core.memory import keep_freed_heap
from mrseg.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mrseg.training import distributed as D
from mrseg.training.budget import check_model_budget
from mrseg.training.config import Config, apply_overrides, config_from_dict, diff_configs
from mrseg.training.epoch import StepHook, make_loader, progress_bars, stop_workers, train_steps, validate
from mrseg.training.interrupt import StopFlag, TrainingInterrupted, worker_error
from mrseg.training.losses import l2_penalty
from mrseg.training.mining import mine_hard_negatives, mines_after
from mrseg.training.runlog import METRICS_FILE, EpochMetrics, RunLog
from mrseg.training.sampling import EpochSampler, PatchDataset, load_datasets
from mrseg.training.state import RunState, build_model, seed_everything, start_run

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"


@dataclass
class TrainResult:
    """What :func:`train` did."""

    run_dir: Path
    epochs_completed: int
    best_epoch: int | None
    best_val_loss: float | None
    stop_reason: str
    model: nn.Module  # the trained model: the weight average with train.ema, else the last weights


@dataclass
class _Loaders:
    """The epoch sampler and the two loaders of a run."""

    sampler: EpochSampler
    train: DataLoader[Any]
    val: DataLoader[Any]

    def close(self) -> None:
        # Persistent workers ignore SIGTERM (the trainer owns interruption), so they must be stopped
        # explicitly on every exit path, or an error kept alive by its traceback leaves them running.
        stop_workers(self.train)
        stop_workers(self.val)


def resume_config(run_dir: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The configuration stored in ``RUN_DIR/last.pt`` with ``overrides`` applied.

    Configurations of runs started by older versions are read as they were (deprecated keys
    migrated, the label spec derived from ``model.num_classes``).

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


def train(
    config: Config,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    device: str = "auto",
    progress: bool | None = None,
    on_step: StepHook | None = None,
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
    on_step
        ``on_step(epoch, step)`` is called after every optimiser step (``step`` from 1 within the
        epoch), on every rank: progress reporting, integrations, tests. It must not touch the
        model; an exception it raises ends the run like any other error (``last.pt`` is kept).

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
        if not resume:
            _checkpoint_to_resume(config, out, resume=False)  # refused before the lock: nothing is written
        check_model_budget(config, ctx.device)  # before any lock is taken, slide opened or weight allocated
        with _run_lock(out, ctx):
            return _train(config, out, ctx, resume=resume, progress=progress, on_step=on_step)
    finally:
        torch.set_num_threads(threads)
        if owns_group:
            D.shutdown_distributed()


def _train(
    config: Config, out: Path, ctx: D.DistContext, *, resume: bool, progress: bool | None, on_step: StepHook | None
) -> TrainResult:
    """The body of :func:`train` once the (possibly distributed) context exists."""
    t = config.train
    seed_everything(t.seed, deterministic=t.deterministic)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    if t.keep_freed_heap:
        keep_freed_heap()  # each step's activations and gradients reuse the last step's memory (core.memory)
    ckpt = _checkpoint_to_resume(config, out, resume)  # again, under the lock
    train_ds, val_ds = _prepare_data(config, ctx)
    run = start_run(config, ctx, ckpt)
    if ckpt is not None:
        log.info("resuming %s at epoch %d (best val loss %.4g)", out, run.start_epoch, run.best_loss)
    if run.hard_pool is not None:
        train_ds.set_hard_pool(run.hard_pool, config.sampling.hard_negative_fraction)
    runlog = _open_run_folder(run, out, fresh=ckpt is None)
    loaders = _make_loaders(run, train_ds, val_ds)
    try:
        _run_epochs(run, loaders, out, runlog, _show_progress(config, ctx, progress), on_step)
    except SlideError as error:
        raise SlideError(f"{error} (run stopped; {out / LAST} holds epoch {run.completed})") from error
    finally:
        loaders.close()
        train_ds.close()
        val_ds.close()
        if runlog is not None:
            runlog.close(plot=config.output.plot, best_epoch=run.best_epoch)
    return TrainResult(out, run.completed, run.best_epoch, run.best_val_loss, run.stop_reason, run.eval_model)


@contextlib.contextmanager
def _run_lock(out: Path, ctx: D.DistContext) -> Iterator[None]:
    """Rank 0 holds the run folder's lock (beside it, ``.<name>.lock``) and sweeps its stale temporary files."""
    if not ctx.is_main:
        yield
        return
    where = out.absolute()
    with output_lock(where.parent / f".{where.name}.lock", f"run folder {out}"):
        sweep_stale(out)
        yield


def _checkpoint_to_resume(config: Config, out: Path, resume: bool) -> Checkpoint | None:
    """``out/last.pt`` when resuming (its model must be the config's); refuse to overwrite a run otherwise."""
    if not resume:
        taken = [name for name in (LAST, BEST, CONFIG_FILE, METRICS_FILE) if (out / name).exists()]
        if taken:
            what = "a run (last.pt)" if LAST in taken else f"{', '.join(taken)}, not written by a run of mrseg train"
            raise ConfigError(f"{out}: already holds {what}; use --resume for a run, or another --out folder")
        return None
    ckpt = load_checkpoint(out / LAST)
    if ckpt.config is None or ckpt.config.get("model") != config.to_dict()["model"]:
        raise CheckpointError(f"{out / LAST}: model settings differ from the configuration being resumed")
    return ckpt


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


def _open_run_folder(run: RunState, out: Path, *, fresh: bool) -> RunLog | None:
    """Rank 0: write ``config.yaml``, open the metrics log and (new runs) write ``last.pt`` of epoch 0."""
    if not run.ctx.is_main:
        return None
    out.mkdir(parents=True, exist_ok=True)
    run.config.save(out / CONFIG_FILE)
    runlog = RunLog(out, tensorboard=run.config.output.tensorboard, start_epoch=run.start_epoch)
    if fresh:
        save_checkpoint(out / LAST, run.checkpoint(0, None, with_state=True))
    return runlog


def _make_loaders(run: RunState, train_ds: PatchDataset, val_ds: PatchDataset) -> _Loaders:
    t, ctx = run.config.train, run.ctx
    sampler = EpochSampler(t.steps_per_epoch * t.batch_size * ctx.world_size, rank=ctx.rank, world_size=ctx.world_size)
    val_keys = list(range(ctx.rank, len(val_ds), ctx.world_size))
    return _Loaders(
        sampler,
        make_loader(train_ds, sampler, run.config, ctx.device),
        make_loader(val_ds, val_keys, run.config, ctx.device),
    )


def _show_progress(config: Config, ctx: D.DistContext, progress: bool | None) -> bool:
    show = (config.output.progress if progress is None else progress) and ctx.is_main
    return show and (progress is True or sys.stderr.isatty())


def _run_epochs(
    run: RunState, loaders: _Loaders, out: Path, runlog: RunLog | None, show: bool, on_step: StepHook | None
) -> None:
    """Epochs ``start_epoch + 1 .. train.epochs`` (fewer on early stopping), with progress bars."""
    t = run.config.train
    stop = StopFlag()
    bars = progress_bars(show)
    with stop.installed(), bars:
        epoch_task = bars.add_task("epochs", total=t.epochs, completed=run.start_epoch)
        batch_task = bars.add_task("batches", total=t.steps_per_epoch)
        for epoch in range(run.start_epoch + 1, t.epochs + 1):
            t0 = time.perf_counter()
            loaders.sampler.set_epoch(epoch)
            bars.reset(batch_task, total=t.steps_per_epoch, description=f"epoch {epoch}")
            seen, val, train_time = _epoch(run, loaders, epoch, out, stop, bars, batch_task, on_step, t0)
            _finish_epoch(run, epoch, seen, val, train_time, t0, out, runlog)
            if mines_after(run.config, epoch):
                _mine(run, loaders, epoch, out, val[0])
            bars.advance(epoch_task)
            run.completed = epoch
            D.barrier(run.ctx)
            if run.should_stop_early():
                run.stop_reason = "early_stopping"
                log.info("early stopping: no validation improvement for %d epochs", run.bad_epochs)
                break


def _epoch(
    run: RunState,
    loaders: _Loaders,
    epoch: int,
    out: Path,
    stop: StopFlag,
    bars: Progress,
    batch_task: TaskID,
    on_step: StepHook | None,
    t0: float,
) -> tuple[tuple[float, int], tuple[float, float], float]:
    """Steps and validation of one epoch: ((loss sum, samples) of this rank, (val loss, val AUC), training seconds).

    Raises
    ------
    TrainingInterrupted
        A stop was requested (also when it made a step fail); ``last.pt`` holds ``run.completed``.
    """
    try:
        seen = train_steps(run, loaders.train, epoch, stop, lambda: bars.advance(batch_task), on_step)
        if D.any_rank(stop.requested, run.ctx):
            raise TrainingInterrupted(
                f"interrupted during epoch {epoch}; {out / LAST} holds epoch {run.completed} "
                f"(continue with: mrseg train --resume {out})",
                stop.signum or signal.SIGTERM,
            )
        train_time = time.perf_counter() - t0
        D.broadcast_buffers(run.raw_model, run.ctx)
        if run.ema is not None:
            D.broadcast_buffers(run.ema.module, run.ctx)
        return seen, validate(run, loaders.val), train_time
    except Exception as error:
        if stop.signum is not None and not isinstance(error, TrainingInterrupted):
            raise TrainingInterrupted(
                f"interrupted during epoch {epoch} ({type(error).__name__}: {error}); "
                f"{out / LAST} holds epoch {run.completed}",
                stop.signum,
            ) from error
        if isinstance(error, MrsegError) and "Original Traceback" in str(error):
            raise worker_error(error) from error
        raise


def _finish_epoch(
    run: RunState,
    epoch: int,
    seen: tuple[float, int],
    val: tuple[float, float],
    train_time: float,
    t0: float,
    out: Path,
    runlog: RunLog | None,
) -> None:
    """Scheduler and best-model tracking; on rank 0 ``best.pt``, ``last.pt``, the metrics row and the log line."""
    tot_loss, tot_n = D.all_reduce_sum([seen[0], float(seen[1])], run.ctx)
    train_loss = tot_loss / max(tot_n, 1.0)
    t = run.config.train
    # the penalty of the chosen reading (the Keras sum, for information, when the decay is decoupled)
    l2_value = float(l2_penalty(run.raw_model, t.l2, "half_sum" if t.l2_mode == "half_sum" else "sum").detach())
    lr = float(run.optimizer.param_groups[0]["lr"])
    val_loss, val_auc = val
    improved = run.end_epoch(epoch, val_loss, val_auc)
    if runlog is None:
        return
    if improved:
        save_checkpoint(out / BEST, run.checkpoint(epoch, val_loss, with_state=False))
    save_checkpoint(out / LAST, run.checkpoint(epoch, val_loss, with_state=True))
    elapsed = time.perf_counter() - t0
    runlog.add(EpochMetrics(epoch, train_loss, val_loss, l2_value, lr, tot_n / train_time, elapsed, val_auc))
    log.info(
        "epoch %d/%d  train %.4f  val %.4f  val AUC %.4f%s  l2 %.4f  lr %.2e  %.1f samples/s  %.1f s",
        epoch, t.epochs, train_loss, val_loss, val_auc, " *" if improved else "", l2_value, lr,
        tot_n / train_time, elapsed,
    )  # fmt: skip


def _mine(run: RunState, loaders: _Loaders, epoch: int, out: Path, val_loss: float) -> None:
    """One hard-negative round after ``epoch``: new pool, a fresh training loader, ``last.pt`` re-saved."""
    config, ctx = run.config, run.ctx
    train_ds = loaders.train.dataset
    assert isinstance(train_ds, PatchDataset)
    run.hard_pool = mine_hard_negatives(
        run.raw_model, train_ds, config, config.sampling.hard_negative_epochs.index(epoch),
        device=ctx.device, rank=ctx.rank, world_size=ctx.world_size,
    )  # fmt: skip
    train_ds.set_hard_pool(run.hard_pool, config.sampling.hard_negative_fraction)
    stop_workers(loaders.train)  # persistent workers hold the old data set
    loaders.train = make_loader(train_ds, loaders.sampler, config, ctx.device)
    if ctx.is_main:
        save_checkpoint(out / LAST, run.checkpoint(epoch, val_loss, with_state=True))


__all__ = [
    "BEST",
    "CONFIG_FILE",
    "LAST",
    "TrainResult",
    "TrainingInterrupted",
    "build_model",
    "resume_config",
    "seed_everything",
    "train",
]
