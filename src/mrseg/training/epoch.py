"""One epoch: the loaders, the optimiser steps over freshly sampled patches, and validation.

An *epoch* on whole slides is ``train.steps_per_epoch`` optimiser steps of ``train.batch_size``
patches per process, then the mean data loss over the fixed validation centres. Each step
minimises the data loss (BCE or cross-entropy by the label spec, plus optional soft Dice) plus the
Keras-style L2 penalty (:func:`mrseg.training.losses.l2_penalty`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from mrseg.core.input_spec import InputSpec
from mrseg.models.inputs import to_tensor
from mrseg.training import distributed as D
from mrseg.training.config import Config
from mrseg.training.interrupt import StopFlag
from mrseg.training.losses import l2_penalty
from mrseg.training.sampling import PatchDataset, worker_init
from mrseg.training.state import RunState

#: ``on_step(epoch, step)``: called after every optimiser step (``step`` counts from 1 in the epoch).
StepHook = Callable[[int, int], None]


def make_loader(ds: PatchDataset, sampler: Any, config: Config, device: torch.device) -> DataLoader[Any]:
    """The DataLoader of ``ds`` with ``config.data``'s workers (persistent, signals left to the trainer)."""
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


def stop_workers(loader: DataLoader[Any]) -> None:
    """Shut down a DataLoader's persistent worker processes now (no-op without workers)."""
    iterator = getattr(loader, "_iterator", None)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()
    loader._iterator = None  # type: ignore[attr-defined]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on CUDA when ``dtype`` is set; a no-op otherwise."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _batch(batch: dict[str, Any], spec: InputSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Model input ``(N, J, 3, H, W)`` float and labels ``(N, H, W)`` of a loader batch, on ``device``."""
    x = to_tensor(batch["patches"], spec).to(device, non_blocking=True)
    y = batch["mask"].to(device, non_blocking=True)
    return x, y


def train_steps(
    run: RunState,
    loader: DataLoader[Any],
    epoch: int,
    stop: StopFlag,
    advance: Callable[[], None],
    on_step: StepHook | None = None,
) -> tuple[float, int]:
    """Run one epoch's optimiser steps; return (sum of data loss x batch size, samples seen) of this rank.

    Stops early (after the current step) when any rank's ``stop`` flag is set.
    """
    run.model.train()
    ctx, t = run.ctx, run.config.train
    loss_sum, n_seen = 0.0, 0
    for step, batch in enumerate(loader, start=1):
        if D.any_rank(stop.requested, ctx):
            break
        x, y = _batch(batch, run.input_spec, ctx.device)
        with autocast(ctx.device, run.amp_dtype):
            data_loss = run.criterion(run.model(x), y)
        loss = data_loss + l2_penalty(run.raw_model, t.l2)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        loss_sum += float(data_loss.detach()) * x.shape[0]
        n_seen += x.shape[0]
        advance()
        if on_step is not None:
            on_step(epoch, step)
    return loss_sum, n_seen


@torch.no_grad()
def validate(run: RunState, loader: DataLoader[Any]) -> float:
    """Mean data loss of ``run.raw_model`` over the fixed validation centres (all ranks)."""
    model, ctx = run.raw_model, run.ctx
    model.eval()
    total, count = 0.0, 0.0
    for batch in loader:
        x, y = _batch(batch, run.input_spec, ctx.device)
        with autocast(ctx.device, run.amp_dtype):
            loss = run.criterion(model(x), y)
        total += float(loss) * x.shape[0]
        count += x.shape[0]
    total, count = D.all_reduce_sum([total, count], ctx)
    return total / max(count, 1.0)


def progress_bars(show: bool) -> Progress:
    """Rich bars for epochs and batches (disabled when ``show`` is false)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show,
        transient=False,
    )


__all__ = ["StepHook", "autocast", "make_loader", "progress_bars", "stop_workers", "train_steps", "validate"]
