"""``mrseg predict``: whole-slide probability maps (a thin layer over :func:`mrseg.inference.cluster.predict_slides`).

Every option of :class:`~mrseg.inference.settings.PredictSettings` shown here takes its default
from it; the checkpoint gives everything shape-defining (mpps, patch size, label spec) and the
tissue settings it was trained with.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from mrseg.cli.app import command
from mrseg.cli.options import RENAMED_SLIDE_MPP, backend_option, device_option, slide_mpp_option
from mrseg.core.errors import ConfigError, MrsegError
from mrseg.core.tissue_spec import DEFAULT_TISSUE_MPP
from mrseg.inference.settings import ENGINES, PRECISIONS, PredictSettings, Ramp

log = logging.getLogger("mrseg.cli")

#: The library's defaults, shown by every option below.
_DEFAULTS = PredictSettings()


@command("predict", renamed=RENAMED_SLIDE_MPP)
def predict_command(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="Checkpoint (.pt) written by mrseg train."),
    slides: list[Path] = typer.Argument(..., metavar="SLIDE", help="Whole-slide images."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (one set of files per slide)."),
    device: str = device_option(_DEFAULTS.device),
    backend: str = backend_option(),
    precision: str = typer.Option(
        _DEFAULTS.precision,
        "--precision",
        metavar="|".join(PRECISIONS),
        help="fp32, bf16 (autocast) or auto (bf16 where the device computes it natively).",
    ),
    engine: str = typer.Option(
        _DEFAULTS.engine,
        "--engine",
        help=f"What runs the network: {', '.join(ENGINES)} (eager, torch.compile, ONNX Runtime on the CPU).",
    ),
    batch_size: int = typer.Option(_DEFAULTS.batch_size, "--batch-size", help="Tiles per forward pass."),
    overlap: float = typer.Option(
        _DEFAULTS.overlap, "--overlap", help="Fraction of a tile shared with its neighbour [0, 1)."
    ),
    tissue_mask: bool = typer.Option(
        _DEFAULTS.tissue_mask, "--tissue-mask/--no-tissue-mask", help="Predict only tiles touching tissue."
    ),
    tissue_mpp: float | None = typer.Option(
        _DEFAULTS.tissue_mpp,
        "--tissue-mpp",
        help=f"Tissue-mask resolution in µm/px (default: the checkpoint's, else {DEFAULT_TISSUE_MPP:g}).",
    ),
    slide_mpp: float | None = slide_mpp_option(),
    out_mpp: float | None = typer.Option(
        _DEFAULTS.out_mpp, "--out-mpp", help="Map resolution in µm/px (default: the model's finest)."
    ),
    writers: list[str] = typer.Option(
        list(_DEFAULTS.writers),
        "--writers",
        metavar="NAME,...",
        help="Outputs: tiff (probability maps), labels (label map, multi-class), overlay (PNG), geojson (polygons), "
        "asap (ASAP XML regions), level0 (maps on the slide's level-0 grid, for ASAP and QuPath), ome (OME-TIFF maps).",
    ),
    geojson: bool = typer.Option(False, "--geojson", help="Add the geojson writer (QuPath polygons >= --threshold)."),
    threshold: float = typer.Option(_DEFAULTS.threshold, "--threshold", help="Probability threshold of the polygons."),
    float16: bool = typer.Option(
        _DEFAULTS.float16, "--float16", help="Store float16 probabilities (default uint8 x 255)."
    ),
    ramp: str = typer.Option(
        _DEFAULTS.ramp, "--ramp", help=f"Overlap blending weight: {', '.join(r.value for r in Ramp)}."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo slides whose outputs are up to date."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address, e.g. tcp://host:8786."),
    workers: int | None = typer.Option(None, "--workers", help="Start a local Dask cluster of N workers."),
    loader_threads: int = typer.Option(
        _DEFAULTS.loader_threads, "--loader-threads", help="Threads reading tiles ahead of the model."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="torch CPU threads (default: torch's; 1 is often fastest on small shared CPUs)."
    ),
) -> None:
    """Predict probability maps of whole slides.

    Per slide, in OUT (--writers chooses the files; <stem>.json always, last):
    <stem>.tif: pyramidal probability map (uint8 = p x 255) at --out-mpp;
    <stem>_overlay.png; <stem>.geojson (--geojson); <stem>.json: settings.
    Multi-class: <stem>.tif holds P(any class >= 1), <stem>_class<k>.tif
    class k, <stem>_labels.tif the label map.
    Slides whose outputs match the checkpoint and settings are skipped.
    Exits 1 if any slide failed (the others are done).
    """
    import torch

    from mrseg.core.device import resolve_device
    from mrseg.inference.cluster import predict_slides
    from mrseg.inference.writers import create_writers

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    names = [name for value in writers for name in value.replace(",", " ").split()]
    settings = PredictSettings(
        device=device,
        backend=backend,
        precision=precision,
        engine=engine,
        batch_size=batch_size,
        overlap=overlap,
        tissue_mask=tissue_mask,
        tissue_mpp=tissue_mpp,
        slide_mpp=slide_mpp,
        out_mpp=out_mpp,
        ramp=ramp,
        float16=float16,
        writers=(*names, "geojson") if geojson else tuple(names),
        threshold=threshold,
        loader_threads=loader_threads,
    )
    create_writers(settings.writers)  # unknown names: one error now, not one per slide
    if scheduler is None:
        resolve_device(device)  # the device must exist here (a remote cluster checks its own)
    folders = [str(s) for s in slides if s.is_dir()]
    if folders:
        raise ConfigError(f"{', '.join(folders)}: is a directory, not a slide file (give the slide files)")
    missing = [str(s) for s in slides if not s.is_file()]
    if missing:
        raise ConfigError(f"slide(s) not found: {', '.join(missing)}")
    results = predict_slides(
        checkpoint, slides, out, settings, overwrite=overwrite, scheduler=scheduler, workers=workers, show_progress=True
    )
    failed = [r for r in results if r.status == "failed"]
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    log.info("%d slide(s) predicted, %d skipped (up to date), %d failed", done, skipped, len(failed))
    if len(results) == 1 and failed:
        raise MrsegError(str(failed[0].error))
    if failed:
        lines = "; ".join(f"{Path(r.slide).name}: {r.error}" for r in failed)
        raise MrsegError(f"{len(failed)} of {len(results)} slide(s) failed: {lines}")
