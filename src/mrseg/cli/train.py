"""``mrseg train``: train a network from a YAML recipe (thin wrapper over :func:`mrseg.training.loop.train`)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from mrseg.cli.app import command
from mrseg.cli.options import device_option
from mrseg.core.errors import ConfigError

log = logging.getLogger("mrseg")


@command("train")
def train(
    config: str | None = typer.Option(
        None, "--config", "-c", help="YAML recipe: a file or a packaged name (e.g. synthetic_mrn_bilinear)."
    ),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Manifest (CSV/YAML), CAMELYON16 folder or `mrseg synth` folder."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (config, metrics, checkpoints, plots)."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", metavar="KEY=VALUE", help="Override a config field, e.g. --set train.epochs=2 (repeatable)."
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the run in RUN_DIR exactly from its last.pt (config from the run)."
    ),
    device: str = device_option(),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bars (default: on a TTY)."),
) -> None:
    """Train a model; one log line per epoch, best.pt by lowest validation loss.

    Multi-GPU (DDP): torchrun --nproc_per_node=4 $(which mrseg) train ...
    """
    from mrseg.training.config import load_config, update_config
    from mrseg.training.loop import TrainingInterrupted, resume_config
    from mrseg.training.loop import train as run_training

    sets = list(overrides)
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise ConfigError(f"--resume {resume} and --out {out} name different run folders")
        if config is not None:
            log.warning("--config is ignored with --resume (the run's own configuration is used)")
        out = resume
        cfg = resume_config(resume, sets)
        if data is not None:
            cfg = update_config(cfg, {"data.path": str(data.resolve())})
    else:
        if out is None:
            raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
        cfg = load_config(config, sets)
        if data is not None:
            cfg = update_config(cfg, {"data.path": str(data.resolve())})
    try:
        result = run_training(cfg, out, resume=resume is not None, device=device, progress=progress)
    except TrainingInterrupted as stop:
        log.warning("%s", stop)
        raise typer.Exit(128 + int(stop.signum)) from None
    best = f"{result.best_val_loss:.4g} at epoch {result.best_epoch}" if result.best_val_loss is not None else "none"
    log.info(
        "done (%s): %d epochs, best validation loss %s; run folder %s",
        result.stop_reason,
        result.epochs_completed,
        best,
        result.run_dir,
    )
