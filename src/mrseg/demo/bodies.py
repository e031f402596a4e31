"""The demo's stage bodies that may run in a worker process: train one model, predict one split.

They are module-level functions of plain (picklable) arguments, so :mod:`mrseg.demo.parallel` can
run them in ``spawn``-started processes; the sequential stages call the same functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mrseg.core.errors import MrsegError
from mrseg.demo.parallel import StageOut
from mrseg.inference.cluster import predict_slides
from mrseg.inference.settings import PredictSettings
from mrseg.training.config import config_from_dict
from mrseg.training.loop import train


def fit_model(config_dict: dict[str, Any], run_dir: str, device: str, label: str, progress: bool) -> StageOut:
    """Train one demo model (a stage body; module level so that a worker process can run it)."""
    result = train(config_from_dict(config_dict), run_dir, device=device, progress=progress)
    if result.best_epoch is None:  # train() restores torch's thread count
        raise MrsegError(f"training {label}: no epoch completed ({result.stop_reason})")
    rel = f"runs/{Path(run_dir).name}"
    info = {
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epochs": result.epochs_completed,
        "stop_reason": result.stop_reason,
        "parameters": sum(p.numel() for p in result.model.parameters()),
    }
    return [f"{rel}/best.pt", f"{rel}/metrics.csv"], info


def predict_model(checkpoint: str, slides: list[str], target: str, root: str, settings: PredictSettings) -> StageOut:
    """Predict one model on one split's slides in a worker process (one torch thread; a stage body)."""
    torch.set_num_threads(1)
    return predict_split(Path(checkpoint), [Path(s) for s in slides], Path(target), Path(root), settings, False)


def predict_split(
    ckpt: Path, slides: list[Path], target: Path, root: Path, settings: PredictSettings, progress: bool
) -> StageOut:
    """Predict ``slides`` with ``ckpt`` into ``target`` (outputs listed relative to the demo folder ``root``)."""
    results = predict_slides(ckpt, slides, target, settings, show_progress=progress)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise MrsegError("prediction failed: " + "; ".join(f"{Path(r.slide).name}: {r.error}" for r in failed))
    rel = target.relative_to(root)
    outputs = [f"{rel}/{Path(r.slide).stem}.json" for r in results]
    return outputs, {"tiles": sum(r.tiles for r in results)}


__all__ = ["fit_model", "predict_model", "predict_split"]
