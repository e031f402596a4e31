"""Running ``predict`` over many slides: one slide's job, a local loop, or a Dask cluster.

:func:`run_slide` is the unit of work (predict one slide, write its outputs resumably and
atomically). :func:`predict_slides` runs it for every slide, either in this process (loading the
model once) or as one Dask task per slide on an existing distributed cluster (``scheduler``) or
a :class:`distributed.LocalCluster` it starts (``workers``). Each worker process loads the
checkpoint once (a per-process cache keyed by path, SHA-256 and device) and reuses it for every
slide it gets. A failing slide is reported in its :class:`SlideResult` and never stops the others.

Dask is optional: ``pip install "mrseg[dask]"``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mrseg import __version__
from mrseg.core.errors import ConfigError, MrsegError
from mrseg.inference.predict import ModelFn, PredictSettings, ProgressCallback, predict_slide, prepare_model
from mrseg.models.checkpoint import Checkpoint, load_checkpoint

log = logging.getLogger(__name__)

DASK_HINT = 'Dask is needed for --scheduler/--workers: pip install "mrseg[dask]"'


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (identifies the checkpoint in output records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class SlideResult:
    """Outcome of one slide: ``status`` is ``done``, ``skipped`` or ``failed`` (then ``error`` says why)."""

    slide: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    tiles: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_slide(
    checkpoint_path: str | Path,
    slide_path: str | Path,
    out_dir: str | Path,
    settings: PredictSettings = PredictSettings(),
    *,
    model: ModelFn | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoint_sha256: str | None = None,
    overwrite: bool = False,
    backend: str = "auto",
    progress: ProgressCallback | None = None,
) -> SlideResult:
    """Predict one slide and write its outputs into ``out_dir`` (resumable, atomic).

    Outputs (see :mod:`mrseg.inference.outputs`) are written into a hidden temporary folder inside
    ``out_dir`` and renamed into place when all are complete, the JSON record last: a slide
    interrupted half-way leaves no final-named file. A slide whose record names the same
    checkpoint (SHA-256) and the same settings, with all outputs present, is skipped unless
    ``overwrite``. Errors propagate (the caller decides whether a multi-slide run continues).
    """
    from mrseg.inference import outputs as out
    from mrseg.models.checkpoint import load_checkpoint
    from mrseg.wsi.slide import Slide

    t_start = time.perf_counter()
    slide_path, out_dir = Path(slide_path), Path(out_dir)
    stem = slide_path.stem
    sha = checkpoint_sha256 or file_sha256(checkpoint_path)
    identity = settings.identity()
    if not overwrite and out.is_done(out_dir, stem, sha, identity):
        log.info("%s: outputs up to date in %s, skipping (--overwrite to redo)", slide_path.name, out_dir)
        record = out.read_record(out_dir / f"{stem}.json") or {}
        return SlideResult(str(slide_path), "skipped", dict(record.get("outputs", {})))
    if checkpoint is None:
        checkpoint = load_checkpoint(checkpoint_path)
    if model is None:
        model = prepare_model(checkpoint, settings.device, settings.precision)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{stem}.tmp-", dir=out_dir))
    try:
        pred = predict_slide(model, checkpoint, slide_path, scratch, settings, backend=backend, progress=progress)
        pmap = pred.map
        names = out.output_names(stem, len(pmap.channels), geojson=settings.geojson)
        t0 = time.perf_counter()
        out.write_probability_tiff(scratch / names["map"], out.foreground(pmap), pmap.mpp)
        if len(pmap.channels) > 1:
            for k, channel in enumerate(pmap.channels, start=1):
                out.write_probability_tiff(scratch / names[f"class{k}"], channel, pmap.mpp)
        pred.timings["write_tiff_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with Slide.open(slide_path, backend=backend, mpp=settings.mpp) as slide:
            thumb = slide.thumbnail(out.thumbnail_mpp(pred.slide_dimensions, pred.slide_mpp))
        out.overlay_from_map(scratch / names["overlay"], thumb, pmap, pred.slide_dimensions, pred.slide_mpp)
        pred.timings["write_overlay_s"] = time.perf_counter() - t0
        n_polygons = None
        if settings.geojson:
            t0 = time.perf_counter()
            _, n_polygons = out.write_geojson(
                scratch / names["geojson"],
                out.foreground(pmap),
                pmap.mpp,
                pred.slide_mpp,
                settings.threshold,
                pmap.to_probability,
            )
            pred.timings["write_geojson_s"] = time.perf_counter() - t0
        pred.timings["total_s"] = time.perf_counter() - t_start
        record = {
            "mrseg_version": __version__,
            "slide": {
                "path": str(slide_path.resolve()),
                "dimensions": list(pred.slide_dimensions),
                "mpp": pred.slide_mpp,
                "tissue_fraction": pred.tissue_fraction,
            },
            "checkpoint": {
                "path": str(Path(checkpoint_path).resolve()),
                "sha256": sha,
                "model": checkpoint.model_name,
                "model_kwargs": checkpoint.model_kwargs,
                "input": checkpoint.input_spec.to_dict(),
                "labels": checkpoint.labels.to_dict(),
            },
            "settings": identity,
            "run": {"device": settings.device, "batch_size": settings.batch_size},
            "map": {
                "mpp": pmap.mpp,
                "shape": list(pmap.shape),
                "dtype": str(pmap.dtype),
                "scale": pmap.encoding.scale,
                "content": "probability of the foreground (sigmoid of 1 logit, or 1 - softmax background)",
                "channels": len(pmap.channels),
            },
            "tiles": {"total": pred.tiling.n_tiles, "size": pred.tiling.tile, "stride": pred.tiling.stride},
            "pixels_read": pred.pixels_read,
            "polygons": n_polygons,
            "timings": pred.timings,
            "outputs": names,
        }
        (scratch / names["record"]).write_text(json.dumps(record, indent=2))
        for key, name in names.items():  # rename into place, the record last
            if key != "record":
                os.replace(scratch / name, out_dir / name)
        os.replace(scratch / names["record"], out_dir / names["record"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - t_start
    log.info("%s: %d tiles in %.1f s -> %s", slide_path.name, pred.tiling.n_tiles, seconds, out_dir / names["map"])
    return SlideResult(str(slide_path), "done", names, None, seconds, pred.tiling.n_tiles)


# --------------------------------------------------------------------------------------------
# Many slides


_MODEL_CACHE: dict[tuple[str, str, str, str], tuple[Checkpoint, ModelFn]] = {}
_MODEL_LOCK = threading.Lock()
#: How many times this process loaded a checkpoint (the Dask test checks "once per worker process").
MODEL_LOADS: list[str] = []


def cached_model(checkpoint_path: str, sha256: str, device: str, precision: str = "fp32") -> tuple[Checkpoint, ModelFn]:
    """Load a checkpoint and its model once per process (keyed by path, SHA-256, device and precision)."""
    key = (str(Path(checkpoint_path).resolve()), sha256, device, precision)
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            checkpoint = load_checkpoint(checkpoint_path)
            _MODEL_CACHE[key] = (checkpoint, prepare_model(checkpoint, device, precision))
            MODEL_LOADS.append(key[0])
        return _MODEL_CACHE[key]


def _slide_task(
    checkpoint_path: str,
    sha256: str,
    slide: str,
    out_dir: str,
    settings: PredictSettings,
    overwrite: bool,
    backend: str,
) -> dict[str, Any]:
    """One Dask task: predict one slide on a worker; failures come back as a ``failed`` record."""
    t0 = time.perf_counter()
    try:
        checkpoint, model = cached_model(checkpoint_path, sha256, settings.device, settings.precision)
        result = run_slide(
            checkpoint_path,
            slide,
            out_dir,
            settings,
            model=model,
            checkpoint=checkpoint,
            checkpoint_sha256=sha256,
            overwrite=overwrite,
            backend=backend,
        )
    except Exception as error:  # reported per slide; the other slides go on
        log.debug("slide %s failed", slide, exc_info=True)
        message = str(error) if isinstance(error, MrsegError) else f"{type(error).__name__}: {error}"
        result = SlideResult(slide, "failed", error=message, seconds=time.perf_counter() - t0)
    return result.to_dict()


def _check_stems(slides: Sequence[Path]) -> None:
    stems: dict[str, Path] = {}
    for s in slides:
        if s.stem in stems:
            raise ConfigError(f"two slides share the output name {s.stem!r}: {stems[s.stem]} and {s}")
        stems[s.stem] = s


def predict_slides(
    checkpoint_path: str | Path,
    slides: Sequence[str | Path],
    out_dir: str | Path,
    settings: PredictSettings = PredictSettings(),
    *,
    overwrite: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    backend: str = "auto",
    show_progress: bool = False,
) -> list[SlideResult]:
    """Predict every slide into ``out_dir``; return one :class:`SlideResult` per slide, in input order.

    Parameters
    ----------
    scheduler
        Address of an existing Dask scheduler (``tcp://host:8786``): one task per slide there.
    workers
        Start a local Dask cluster of this many single-threaded workers instead.
    processes
        Local cluster workers as processes (True) or threads of this process (False).
    show_progress
        Show a rich progress bar (tiles per slide locally; slides with Dask).

    Neither ``scheduler`` nor ``workers``: slides run one after another in this process.
    Failed slides have ``status == "failed"`` and an ``error``; the others are unaffected.
    """
    slide_paths = [Path(s) for s in slides]
    _check_stems(slide_paths)
    checkpoint_path = Path(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)  # validate before starting anything
    sha = file_sha256(checkpoint_path)
    if scheduler is not None or workers is not None:
        return _predict_dask(
            checkpoint_path,
            sha,
            slide_paths,
            Path(out_dir),
            settings,
            overwrite,
            scheduler,
            workers,
            processes,
            backend,
            show_progress,
        )
    model = prepare_model(checkpoint, settings.device, settings.precision)
    results = []
    with ExitStack() as stack:
        bar = stack.enter_context(_progress()) if show_progress else None
        for slide in slide_paths:
            task = bar.add_task(slide.name, total=None) if bar is not None else None

            def update(done: int, total: int, task: Any = task) -> None:
                if bar is not None:
                    bar.update(task, completed=done, total=total)

            t0 = time.perf_counter()
            try:
                result = run_slide(
                    checkpoint_path,
                    slide,
                    out_dir,
                    settings,
                    model=model,
                    checkpoint=checkpoint,
                    checkpoint_sha256=sha,
                    overwrite=overwrite,
                    backend=backend,
                    progress=update,
                )
            except Exception as error:  # one bad slide must not stop the run
                if not isinstance(error, MrsegError):
                    log.exception("%s: unexpected error", slide)
                message = str(error) if isinstance(error, MrsegError) else f"{type(error).__name__}: {error}"
                log.error("%s: failed: %s", slide.name, message)
                result = SlideResult(str(slide), "failed", error=message, seconds=time.perf_counter() - t0)
            if bar is not None and task is not None:
                bar.update(task, description=f"{slide.name} [{result.status}]")
                if result.status == "skipped":
                    bar.update(task, total=1, completed=1)
            results.append(result)
    return results


def _progress(unit: str = "tiles") -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task: Any) -> Any:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} {unit}/s" if speed else f"- {unit}/s")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        transient=False,
    )


def _predict_dask(
    checkpoint_path: Path,
    sha: str,
    slides: list[Path],
    out_dir: Path,
    settings: PredictSettings,
    overwrite: bool,
    scheduler: str | None,
    workers: int | None,
    processes: bool,
    backend: str,
    show_progress: bool,
) -> list[SlideResult]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as error:
        raise ConfigError(DASK_HINT) from error
    if scheduler is not None and workers is not None:
        raise ConfigError("give either --scheduler or --workers, not both")
    with ExitStack() as stack:
        if scheduler is not None:
            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except OSError as error:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from error
        else:
            if workers is None or workers < 1:
                raise ConfigError(f"--workers must be >= 1, got {workers}")
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=processes,
                    dashboard_address=None,
                    silence_logs=logging.WARNING,
                )
            )
            client = stack.enter_context(Client(cluster))
        log.info("dask: %d slide task(s) on %s", len(slides), client.scheduler.address if client.scheduler else "?")
        futures = {
            client.submit(
                _slide_task,
                str(checkpoint_path.resolve()),
                sha,
                str(s.resolve()),
                str(out_dir.resolve()),
                settings,
                overwrite,
                backend,
                key=f"mrseg-predict-{s.stem}-{sha[:8]}-{os.getpid()}-{time.time_ns()}",
                pure=False,
            ): s
            for s in slides
        }
        by_slide: dict[Path, SlideResult] = {}
        bar = stack.enter_context(_progress("slides")) if show_progress else None
        task = bar.add_task("slides", total=len(slides)) if bar is not None else None
        for future in as_completed(futures):
            slide = futures[future]
            try:
                result = SlideResult(**future.result())
            except Exception as error:  # the worker died or the task could not run
                result = SlideResult(str(slide), "failed", error=f"{type(error).__name__}: {error}")
            if result.status == "failed":
                log.error("%s: failed: %s", slide.name, result.error)
            else:
                log.info("%s: %s (%.1f s)", slide.name, result.status, result.seconds)
            by_slide[slide] = result
            if bar is not None and task is not None:
                bar.advance(task)
    return [by_slide[s] for s in slides]
