"""``mrseg predict`` (whole-slide probability maps) and ``mrseg evaluate`` (pixel-level metrics and figures)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from mrseg.cli.app import app
from mrseg.core.errors import ConfigError, MrsegError

log = logging.getLogger("mrseg.cli")


@app.command("predict")
def predict_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (.pt) written by mrseg train."),
    slides: list[Path] = typer.Argument(..., help="Whole-slide images."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (one set of files per slide)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1..."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 (autocast) or auto (bf16 where native)."),
    engine: str = typer.Option(
        "torch", "--engine", help="torch (eager), compile (torch.compile) or onnx (ONNX Runtime on the CPU)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", help="Tiles per forward pass."),
    overlap: float = typer.Option(0.25, "--overlap", help="Fraction of a tile shared with its neighbour [0, 1)."),
    no_tissue_mask: bool = typer.Option(False, "--no-tissue-mask", help="Predict the whole slide, not only tissue."),
    mpp: float | None = typer.Option(None, "--mpp", help="Level-0 µm/px for slides without (or with wrong) mpp."),
    out_mpp: float | None = typer.Option(
        None, "--out-mpp", help="Map resolution in µm/px (default: the model's finest)."
    ),
    geojson: bool = typer.Option(False, "--geojson", help="Also write QuPath GeoJSON polygons >= --threshold."),
    threshold: float = typer.Option(0.5, "--threshold", help="Probability threshold of the GeoJSON polygons."),
    float16: bool = typer.Option(False, "--float16", help="Store float16 probabilities (default uint8 x 255)."),
    ramp: str = typer.Option("linear", "--ramp", help="Overlap blending weight: linear, gaussian, constant."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo slides whose outputs are up to date."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address, e.g. tcp://host:8786."),
    workers: int | None = typer.Option(None, "--workers", help="Start a local Dask cluster of N workers."),
    loader_threads: int = typer.Option(2, "--loader-threads", help="Threads reading tiles ahead of the model."),
    threads: int | None = typer.Option(
        None, "--threads", help="torch CPU threads (default: torch's; 1 is often fastest on small shared CPUs)."
    ),
) -> None:
    """Predict probability maps of whole slides.

    Per slide, in OUT: <stem>.tif (pyramidal probability map, uint8 = probability x 255, at the
    model's finest mpp), <stem>_overlay.png, optional <stem>.geojson, and <stem>.json (settings,
    timings; written last). Slides whose outputs match the checkpoint and settings are skipped.
    With a multi-class model the map is the probability of any class >= 1 (1 - P(background)),
    and <stem>_class<k>.tif holds each class. Exits 1 if any slide failed (the others are done).
    """
    from mrseg.inference.cluster import predict_slides
    from mrseg.inference.settings import DEFAULT_WRITERS, PredictSettings

    if threads is not None:
        import torch

        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)

    settings = PredictSettings(
        device=device,
        precision=precision,
        engine=engine,
        batch_size=batch_size,
        overlap=overlap,
        tissue_mask=not no_tissue_mask,
        slide_mpp=mpp,
        out_mpp=out_mpp,
        ramp=ramp,
        float16=float16,
        writers=(*DEFAULT_WRITERS, "geojson") if geojson else DEFAULT_WRITERS,
        threshold=threshold,
        loader_threads=loader_threads,
    )
    missing = [str(s) for s in slides if not s.is_file()]
    if missing:
        raise ConfigError(f"slide(s) not found: {', '.join(missing)}")
    results = predict_slides(
        checkpoint,
        slides,
        out,
        settings,
        overwrite=overwrite,
        scheduler=scheduler,
        workers=workers,
        show_progress=True,
    )
    failed = [r for r in results if r.status == "failed"]
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    log.info("%d slide(s) predicted, %d skipped (up to date), %d failed", done, skipped, len(failed))
    if failed:
        lines = "; ".join(f"{Path(r.slide).name}: {r.error}" for r in failed)
        raise MrsegError(f"{len(failed)} of {len(results)} slide(s) failed: {lines}")


@app.command("evaluate")
def evaluate_command(
    pred: list[str] = typer.Option(
        ..., "--pred", help="Prediction folder of mrseg predict, or NAME=DIR; repeat for several models."
    ),
    truth: Path = typer.Option(..., "--truth", help="Folder of annotations/masks, a manifest CSV, or a synth folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (metrics.json, metrics.csv, roc.png, panels)."),
    mpp: float = typer.Option(2.0, "--mpp", help="Evaluation resolution in µm/px."),
    within: str = typer.Option("tissue", "--within", help="Count pixels within 'tissue' or the whole 'slide'."),
    panel: list[str] = typer.Option(None, "--panel", help="Slide stem for a qualitative panel (default: the first)."),
    bins: int = typer.Option(1024, "--bins", help="Histogram bins of the ROC."),
) -> None:
    """Pixel-level ROC/AUC, Dice, IoU, precision, recall, accuracy (at 0.5 and the best-Dice threshold)."""
    from mrseg.evaluation.evaluate import evaluate

    preds: dict[str, str] = {}
    for item in pred:
        name, sep, folder = item.partition("=")
        if not sep:
            name, folder = Path(item).name or item, item
        if name in preds:
            raise ConfigError(f"--pred: model name {name!r} given twice")
        preds[name] = folder
    result = evaluate(preds, truth, out, mpp=mpp, within=within, bins=bins, panels=panel or None)
    for name, m in result["models"].items():
        p = m["pooled"]
        log.info(
            "%s: AUC %.4f, Dice@0.5 %.4f, best Dice %.4f at %.3f",
            name,
            p["auc"],
            p["at"]["0.5"]["dice"],
            p["best_dice"]["dice"],
            p["best_dice"]["threshold"],
        )
    log.info("report written to %s", out)
