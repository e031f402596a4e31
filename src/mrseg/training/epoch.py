"""One epoch: the loaders, the optimiser steps over freshly sampled patches, and validation.

An *epoch* on whole slides is ``train.steps_per_epoch`` optimiser steps of ``train.batch_size``
patches per process, then the mean data loss and the pooled pixel AUC over the fixed validation
centres. Each step minimises the data loss (BCE or cross-entropy by the label spec, plus optional
soft Dice; times the batch's examples with ``train.data_reduction=sum_examples``) plus the L2
penalty of ``train.l2_mode`` (:func:`mrseg.training.losses.l2_penalty`; none when decoupled).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from mrseg.core.histogram import BinaryHistogram
from mrseg.core.input_spec import InputSpec
from mrseg.core.label_spec import LabelSpec
from mrseg.models.activation import class_probabilities, foreground_probabilities
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
    """Mixed precision when ``dtype`` is set (:func:`mrseg.training.state.amp_dtype`); a no-op otherwise."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def model_input(
    batch: dict[str, Any], spec: InputSpec, device: torch.device, *, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model input ``(N, J, 3, H, W)`` float and labels ``(N, H, W)`` of a loader batch, on ``device``."""
    x = to_tensor(batch["patches"], spec, channels_last=channels_last).to(device, non_blocking=True)
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
        x, y = model_input(batch, run.input_spec, ctx.device, channels_last=t.channels_last)
        with autocast(ctx.device, run.amp_dtype):
            data_loss = run.criterion(run.model(x).float(), y)  # the loss in float32 (no copy when it is)
        scale = x.shape[0] if t.data_reduction == "sum_examples" else 1
        loss = data_loss * scale + l2_penalty(run.raw_model, t.l2, t.l2_mode)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.update_average()
        loss_sum += float(data_loss.detach()) * x.shape[0]
        n_seen += x.shape[0]
        advance()
        if on_step is not None:
            on_step(epoch, step)
    return loss_sum, n_seen


def any_foreground(logits: torch.Tensor, labels: LabelSpec) -> torch.Tensor:
    """Probability ``(N, H, W)`` that a pixel is not background (sigmoid; 1 - softmax background)."""
    if labels.activation == "sigmoid":
        return foreground_probabilities(logits, labels)[:, 0]
    return 1 - class_probabilities(logits, labels)[:, 0]


@torch.no_grad()
def validate(run: RunState, loader: DataLoader[Any]) -> tuple[float, float]:
    """Mean data loss and pooled pixel AUC of ``run.eval_model`` over the fixed validation centres (all ranks).

    The AUC scores the finest patch's pixels, label > 0 positive, by the foreground probability
    (sigmoid, or 1 - softmax background) in a 1024-bin histogram pooled over the ranks; it is NaN
    when the validation pixels hold only one class.
    """
    model, ctx = run.eval_model, run.ctx
    model.eval()
    total, count = 0.0, 0.0
    hist = BinaryHistogram()
    for batch in loader:
        x, y = model_input(batch, run.input_spec, ctx.device, channels_last=run.config.train.channels_last)
        with autocast(ctx.device, run.amp_dtype):
            logits = model(x).float()
            loss = run.criterion(logits, y)
        total += float(loss) * x.shape[0]
        count += x.shape[0]
        hist.update(any_foreground(logits, run.config.labels).cpu().numpy(), (y > 0).cpu().numpy())
    total, count, *counts = D.all_reduce_sum([total, count, *hist.pos.tolist(), *hist.neg.tolist()], ctx)
    n = hist.bins
    pooled = BinaryHistogram(n, np.asarray(counts[:n], np.int64), np.asarray(counts[n:], np.int64))
    return total / max(count, 1.0), pooled.auc()


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


__all__ = [
    "StepHook",
    "any_foreground",
    "autocast",
    "make_loader",
    "model_input",
    "progress_bars",
    "stop_workers",
    "train_steps",
    "validate",
]
