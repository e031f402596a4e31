"""Many slides: a local loop, or one Dask task per slide on a cluster.

:func:`predict_slides` runs :func:`mrseg.inference.runner.run_slide` for every slide, either in
this process or as one Dask task per slide on an existing distributed cluster (``scheduler``) or
a :class:`distributed.LocalCluster` it starts (``workers``). Each process loads a checkpoint and
its model once (:data:`MODEL_CACHE`, keyed by path, SHA-256, device and precision) and reuses it
for every slide it gets; every :class:`~mrseg.inference.runner.SlideResult` says which worker ran
it and how many models that worker had loaded. A failing slide is reported in its result and
never stops the others.

Dask is optional: ``pip install "mrseg[dask]"``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mrseg.core.errors import ConfigError, MrsegError
from mrseg.inference.predictor import ModelFn, prepare_model
from mrseg.inference.runner import SlideResult, file_sha256, run_slide
from mrseg.inference.settings import PredictSettings
from mrseg.models.checkpoint import Checkpoint, load_checkpoint

log = logging.getLogger(__name__)

DASK_HINT = 'Dask is needed for --scheduler/--workers: pip install "mrseg[dask]"'


class ModelCache:
    """Checkpoints and their prepared models, loaded once per process and kept (least recently used first out).

    Keyed by the checkpoint's resolved path, SHA-256, the device, the precision and the engine; thread-safe
    (Dask thread workers share one cache). :attr:`loads` counts the loads of this process.
    """

    def __init__(self, max_models: int = 2) -> None:
        self.max_models = max_models
        self.loads = 0
        self._models: dict[tuple[str, str, str, str, str], tuple[Checkpoint, ModelFn]] = {}
        self._lock = threading.Lock()

    def get(
        self, checkpoint_path: str | Path, sha256: str, device: str, precision: str = "fp32", engine: str = "torch"
    ) -> tuple[Checkpoint, ModelFn]:
        """The checkpoint at ``checkpoint_path`` and its model on ``device`` with ``engine``, loaded on first use."""
        key = (str(Path(checkpoint_path).resolve()), sha256, device, precision, engine)
        with self._lock:
            entry = self._models.pop(key, None)
            if entry is None:
                checkpoint = load_checkpoint(checkpoint_path)
                entry = (checkpoint, prepare_model(checkpoint, device, precision, engine))
                self.loads += 1
                while len(self._models) >= self.max_models:
                    self._models.pop(next(iter(self._models)))
            self._models[key] = entry  # most recently used last
            return entry

    def clear(self) -> None:
        """Forget every model (the load count stays)."""
        with self._lock:
            self._models.clear()


#: This process's models (each Dask worker process has its own).
MODEL_CACHE = ModelCache()


def _failure(slide: str | Path, error: BaseException, t0: float) -> SlideResult:
    if isinstance(error, MrsegError):
        message = str(error)
    elif isinstance(error, OSError) and error.filename is not None:
        message = f"{error.filename}: {error.strerror or error}"
    else:
        message = f"{type(error).__name__}: {error}"
    return SlideResult(str(slide), "failed", error=message, seconds=time.perf_counter() - t0)


def run_cached(
    checkpoint_path: str | Path,
    sha256: str,
    slide: str | Path,
    out_dir: str | Path,
    settings: PredictSettings,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SlideResult:
    """Run one slide with this process's cached model; a failure comes back as a ``failed`` result."""
    t0 = time.perf_counter()
    try:
        checkpoint, model = MODEL_CACHE.get(
            checkpoint_path, sha256, settings.device, settings.precision, settings.engine
        )
        result = run_slide(
            checkpoint_path,
            slide,
            out_dir,
            settings,
            model=model,
            checkpoint=checkpoint,
            checkpoint_sha256=sha256,
            overwrite=overwrite,
            progress=progress,
        )
    except Exception as error:  # reported per slide; the other slides go on
        if not isinstance(error, MrsegError):  # the traceback is for --debug / -vv
            log.debug("%s: unexpected error", slide, exc_info=True)
        result = _failure(slide, error, t0)
    result.model_loads = MODEL_CACHE.loads
    return result


def _slide_task(
    checkpoint_path: str, sha256: str, slide: str, out_dir: str, settings: PredictSettings, overwrite: bool
) -> dict[str, Any]:
    """One Dask task: predict one slide on a worker; failures come back as a ``failed`` record."""
    return run_cached(checkpoint_path, sha256, slide, out_dir, settings, overwrite).to_dict()


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
    Writers registered by the caller must also be registered in the Dask worker processes
    (import their module there, e.g. with a worker preload).
    """
    slide_paths = [Path(s) for s in slides]
    _check_stems(slide_paths)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"{out_dir}: output folder exists and is not a folder")
    checkpoint_path = Path(checkpoint_path)
    load_checkpoint(checkpoint_path)  # validate before starting anything
    sha = file_sha256(checkpoint_path)
    if scheduler is not None or workers is not None:
        run = DaskRun(checkpoint_path, sha, Path(out_dir), settings, overwrite)
        return run.predict(slide_paths, scheduler, workers, processes, show_progress)
    return _predict_local(checkpoint_path, sha, slide_paths, Path(out_dir), settings, overwrite, show_progress)


def _predict_local(
    checkpoint_path: Path,
    sha: str,
    slides: list[Path],
    out_dir: Path,
    settings: PredictSettings,
    overwrite: bool,
    show_progress: bool,
) -> list[SlideResult]:
    # a bad device or engine stops the run here
    MODEL_CACHE.get(checkpoint_path, sha, settings.device, settings.precision, settings.engine)
    results = []
    with ExitStack() as stack:
        bar = stack.enter_context(progress_bar()) if show_progress else None
        for slide in slides:
            task = bar.add_task(slide.name, total=None) if bar is not None else None

            def update(done: int, total: int, task: Any = task) -> None:
                if bar is not None:
                    bar.update(task, completed=done, total=total)

            result = run_cached(checkpoint_path, sha, slide, out_dir, settings, overwrite, update)
            if result.status == "failed" and len(slides) > 1:  # one slide: the caller's error says it
                log.error("%s: failed: %s", slide.name, result.error)
            if bar is not None and task is not None:
                bar.update(task, description=f"{slide.name} [{result.status}]")
                if result.status == "skipped":
                    bar.update(task, total=1, completed=1)
            results.append(result)
    return results


class _Rate(TextColumn):
    """Progress column: items per second."""

    def __init__(self, unit: str) -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} {self.unit}/s" if speed else f"- {self.unit}/s")


def progress_bar(unit: str = "tiles") -> Progress:
    """A rich progress bar: description, bar, done/total, percent, rate, elapsed, ETA."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _Rate(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        transient=False,
    )


def _distributed() -> Any:
    """The optional ``distributed`` package (:class:`ConfigError` with the install hint when missing)."""
    try:
        import distributed
    except ImportError as error:
        raise ConfigError(DASK_HINT) from error
    return distributed


class DaskRun:
    """One task per slide on a Dask cluster (an existing scheduler or a LocalCluster started here)."""

    def __init__(
        self, checkpoint_path: Path, sha: str, out_dir: Path, settings: PredictSettings, overwrite: bool
    ) -> None:
        self.checkpoint_path, self.sha, self.out_dir = checkpoint_path, sha, out_dir
        self.settings, self.overwrite = settings, overwrite

    def predict(
        self, slides: list[Path], scheduler: str | None, workers: int | None, processes: bool, show_progress: bool
    ) -> list[SlideResult]:
        """Submit every slide, collect the results as they finish, return them in input order."""
        if scheduler is not None and workers is not None:
            raise ConfigError("give either --scheduler or --workers, not both")
        with self.client(scheduler, workers, processes) as client, ExitStack() as stack:
            log.info("dask: %d slide task(s) on %s", len(slides), client.scheduler.address if client.scheduler else "?")
            futures = {self.submit(client, s): s for s in slides}
            bar = stack.enter_context(progress_bar("slides")) if show_progress else None
            task = bar.add_task("slides", total=len(slides)) if bar is not None else None
            by_slide: dict[Path, SlideResult] = {}
            for slide, result in self.collect(futures):
                by_slide[slide] = result
                if bar is not None and task is not None:
                    bar.advance(task)
        return [by_slide[s] for s in slides]

    @staticmethod
    @contextmanager
    def client(scheduler: str | None, workers: int | None, processes: bool) -> Iterator[Any]:
        """A client of the scheduler at ``scheduler``, or of a LocalCluster of ``workers`` single-thread workers."""
        distributed = _distributed()
        with ExitStack() as stack:
            if scheduler is not None:
                try:
                    client = stack.enter_context(distributed.Client(scheduler, timeout="30s"))
                except OSError as error:
                    raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from error
            else:
                if workers is None or workers < 1:
                    raise ConfigError(f"--workers must be >= 1, got {workers}")
                cluster = distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=processes,
                    dashboard_address=None,
                    silence_logs=logging.WARNING,
                )
                client = stack.enter_context(distributed.Client(stack.enter_context(cluster)))
            yield client

    def submit(self, client: Any, slide: Path) -> Any:
        """Submit the task of one slide (a unique key: a rerun never reuses an old result)."""
        return client.submit(
            _slide_task,
            str(self.checkpoint_path.resolve()),
            self.sha,
            str(slide.resolve()),
            str(self.out_dir.resolve()),
            self.settings,
            self.overwrite,
            key=f"mrseg-predict-{slide.stem}-{self.sha[:8]}-{os.getpid()}-{time.time_ns()}",
            pure=False,
        )

    @staticmethod
    def collect(futures: dict[Any, Path]) -> Iterator[tuple[Path, SlideResult]]:
        """``(slide, result)`` as the tasks finish; a task that could not run is a failed result."""
        for future in _distributed().as_completed(futures):
            slide = futures[future]
            try:
                result = SlideResult(**future.result())
            except Exception as error:  # the worker died or the task could not run
                result = SlideResult(str(slide), "failed", error=f"{type(error).__name__}: {error}")
            if result.status == "failed":
                log.error("%s: failed: %s", slide.name, result.error)
            else:
                log.info("%s: %s (%.1f s)", slide.name, result.status, result.seconds)
            yield slide, result


__all__ = ["DASK_HINT", "MODEL_CACHE", "DaskRun", "ModelCache", "predict_slides", "progress_bar", "run_cached"]
