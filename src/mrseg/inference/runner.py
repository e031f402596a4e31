"""One slide's run: predict it and write its outputs, resumably and atomically.

:func:`run_slide` is the unit of work of ``mrseg predict`` (and of each Dask task,
:mod:`mrseg.inference.cluster`): :func:`plan_run` resolves the settings against the checkpoint
and names the outputs of the chosen writers. The rest runs under the slide's lock
(``OUT/.<stem>.lock``, :mod:`mrseg.core.locks`: a second run on the same slide and folder stops,
naming the first): temporary folders of killed runs are swept, a file at an output's name that
no earlier run of this slide wrote is refused (:func:`check_outputs_owned`), and a slide whose
record names the same checkpoint (SHA-256) and the same output-defining settings, with every file
it names intact (size and SHA-256), is skipped (:func:`is_done`). Otherwise the slide is opened
once (dimensions, mpp, tissue mask and thumbnail come from that handle; the loader threads open
their own), predicted (:func:`mrseg.inference.inferer.predict_slide`), every writer writes into a
hidden scratch folder inside ``out_dir`` (:func:`write_outputs`), and the files are committed as
a unit, the JSON record last (:func:`commit`): an interrupted slide leaves no record, so it is
never mistaken for a finished one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mrseg.core.atomic import atomic_write_text, fsync_dir, fsync_file, remove, sweep_stale
from mrseg.core.device import resolve_device
from mrseg.core.errors import ConfigError
from mrseg.core.locks import output_lock
from mrseg.core.prediction_record import file_sha256, files_intact, load_record_json
from mrseg.inference.inferer import ProgressCallback, SlidePrediction, predict_slide
from mrseg.inference.predictor import ModelFn, prepare_model
from mrseg.inference.settings import PredictSettings
from mrseg.inference.writers import RecordWriter, WriteJob, Writer, create_writers
from mrseg.models.checkpoint import Checkpoint, load_checkpoint
from mrseg.wsi.slide import Slide

log = logging.getLogger(__name__)


def worker_name() -> str:
    """``host:pid`` of this process (which worker ran a slide)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class SlideResult:
    """Outcome of one slide: ``status`` is ``done``, ``skipped`` or ``failed`` (then ``error`` says why).

    ``worker`` is the ``host:pid`` of the process that ran it; ``model_loads`` how many models that
    process had loaded by then (:class:`mrseg.inference.cluster.ModelCache`; 0 when not counted).
    """

    slide: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    tiles: int = 0
    worker: str = field(default_factory=worker_name)
    model_loads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunPlan:
    """What :func:`plan_run` decides for one slide before anything is read.

    Attributes
    ----------
    slide_path, out_dir, stem
        The slide, the output folder and the slide's output name.
    checkpoint_path, sha256
        The checkpoint file and its SHA-256.
    settings
        The settings resolved against the checkpoint (:meth:`PredictSettings.resolve`).
    writers
        The chosen writers, then the record writer.
    names
        ``{output key: file name}`` of every writer (the record's ``outputs``).
    """

    slide_path: Path
    out_dir: Path
    stem: str
    checkpoint_path: Path
    sha256: str
    settings: PredictSettings
    writers: list[Writer]
    names: dict[str, str]


def output_names(writers: list[Writer], stem: str, checkpoint: Checkpoint) -> dict[str, str]:
    """The outputs of ``writers`` for slide ``stem`` (:class:`ConfigError` when two writers claim one key)."""
    names: dict[str, str] = {}
    for writer in writers:
        outputs = writer.outputs(stem, checkpoint.labels)
        clash = sorted(set(outputs) & set(names))
        if clash:
            raise ConfigError(f"writer {writer.name!r} writes output(s) {clash} that another writer writes")
        names.update(outputs)
    return names


def plan_run(
    checkpoint_path: str | Path,
    checkpoint: Checkpoint,
    slide_path: str | Path,
    out_dir: str | Path,
    settings: PredictSettings,
    sha256: str,
) -> RunPlan:
    """Resolve ``settings`` against ``checkpoint``, create the writers and name the outputs.

    Raises
    ------
    ConfigError
        An unknown writer, ``record`` among the chosen writers (it is always written), or two
        writers writing the same output.
    """
    if "record" in settings.writers:
        raise ConfigError("the JSON record is always written; leave 'record' out of the writers")
    writers = [*create_writers(settings.writers), RecordWriter()]
    stem = Path(slide_path).stem
    names = output_names(writers, stem, checkpoint)
    resolved = settings.resolve(checkpoint.tissue)
    return RunPlan(Path(slide_path), Path(out_dir), stem, Path(checkpoint_path), sha256, resolved, writers, names)


def is_done(out_dir: str | os.PathLike[str], stem: str, checkpoint_sha256: str, settings: dict[str, Any]) -> bool:
    """True when ``<stem>.json`` records this checkpoint and these settings and its files are intact.

    Intact: every output it names exists with the size and SHA-256 it records
    (:func:`mrseg.core.prediction_record.files_intact`).
    """
    out_dir = Path(out_dir)
    record = load_record_json(out_dir / f"{stem}.json")
    if record is None:
        return False
    if record.get("checkpoint", {}).get("sha256") != checkpoint_sha256:
        return False
    if record.get("settings") != json.loads(json.dumps(settings)):
        return False
    return files_intact(out_dir, record)


def pending_path(out_dir: Path, stem: str) -> Path:
    """The commit journal of slide ``stem``: the outputs being renamed into place (only during a commit)."""
    return out_dir / f".{stem}.pending.json"


def owned_outputs(out_dir: Path, stem: str, record_name: str) -> set[str]:
    """File names in ``out_dir`` that earlier runs of slide ``stem`` wrote: its record's and an unfinished commit's."""
    owned: set[str] = set()
    for path in (out_dir / record_name, pending_path(out_dir, stem)):
        document = load_record_json(path)
        outputs = document.get("outputs") if document is not None else None
        if isinstance(outputs, dict):
            owned |= {str(name) for name in outputs.values()}
    return owned


def check_outputs_owned(plan: RunPlan) -> None:
    """Refuse to replace a file at an output's name that no earlier run of this slide wrote (e.g. the slide itself).

    Raises
    ------
    ConfigError
        Naming the first such file.
    """
    owned = owned_outputs(plan.out_dir, plan.stem, plan.names["record"])
    foreign = [name for name in plan.names.values() if (plan.out_dir / name).exists() and name not in owned]
    if foreign:
        raise ConfigError(
            f"{plan.out_dir / foreign[0]}: exists and was not written by mrseg predict for slide {plan.stem} "
            "(no record names it); it will not be replaced: move it or choose another --out"
        )


def checkpoint_summary(plan: RunPlan, checkpoint: Checkpoint) -> dict[str, Any]:
    """The record's ``checkpoint`` section."""
    return {
        "path": str(plan.checkpoint_path.resolve()),
        "sha256": plan.sha256,
        "model": checkpoint.model_name,
        "model_kwargs": checkpoint.model_kwargs,
        "input": checkpoint.input_spec.to_dict(),
        "labels": checkpoint.labels.to_dict(),
    }


def _timed_write(writer: Writer, job: WriteJob) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    facts = writer.write(job)
    return facts, time.perf_counter() - t0


def write_outputs(job: WriteJob, writers: list[Writer], stem: str, t_start: float, threads: int = 1) -> None:
    """Run every writer with outputs on ``job`` (timing ``write_<name>_s``), the record last.

    Writers whose class allows it (:attr:`Writer.concurrent`: the built-in ones, which only read
    the map and the slide) run at once on up to ``threads`` threads: after the tile loop the cores
    the model used are free, and the TIFF's and the PNG's encoders release the GIL. The others then
    run one after the other, in order, seeing every earlier writer's facts. The facts are recorded
    in the writers' order whatever the threads; the first writer (in that order) that failed
    raises, after the others have finished.
    """
    timings = job.prediction.timings
    active = [w for w in writers if w.outputs(stem, job.labels) and not isinstance(w, RecordWriter)]
    together = [w for w in active if w.concurrent] if threads > 1 else []
    if len(together) < 2:
        together = []  # one writer needs no pool
    t0 = time.perf_counter()
    if together:
        with ThreadPoolExecutor(min(threads, len(together)), thread_name_prefix="mrseg-write") as pool:
            futures = [pool.submit(_timed_write, writer, job) for writer in together]
        for writer, future in zip(together, futures, strict=True):  # leaving the pool waited for every one
            job.facts[writer.name], timings[f"write_{writer.name}_s"] = future.result()
    for writer in active:
        if writer not in together:
            job.facts[writer.name], timings[f"write_{writer.name}_s"] = _timed_write(writer, job)
    job.facts = {w.name: job.facts[w.name] for w in active}  # the writers' order
    timings["write_s"] = time.perf_counter() - t0
    for writer in writers:
        if isinstance(writer, RecordWriter) and writer.outputs(stem, job.labels):
            timings["total_s"] = time.perf_counter() - t_start
            job.facts[writer.name] = writer.write(job)


def commit(scratch: Path, out_dir: Path, names: dict[str, str], stem: str) -> None:
    """Move the finished files from ``scratch`` into ``out_dir`` as one unit, the record last.

    A journal (:func:`pending_path`) names the outputs first; then the old record is removed (so
    no moment shows an old record beside new files), the outputs are synced and renamed, files of
    the old record that this run does not write are removed, and the record is renamed into
    place. A run killed in between leaves no record: the slide is predicted again, and the
    journal tells that run which files are its own.
    """
    record = out_dir / names["record"]
    old = load_record_json(record) or {}
    pending = pending_path(out_dir, stem)
    atomic_write_text(pending, json.dumps({"outputs": names}))
    record.unlink(missing_ok=True)
    fsync_dir(out_dir)
    for key, name in names.items():
        if key != "record":
            fsync_file(scratch / name)
            os.replace(scratch / name, out_dir / name)
    old_outputs = old.get("outputs")
    if not isinstance(old_outputs, dict):
        old_outputs = {}
    for name in set(map(str, old_outputs.values())) - set(names.values()):
        remove(out_dir / name)
    fsync_file(scratch / names["record"])
    os.replace(scratch / names["record"], record)
    fsync_dir(out_dir)
    pending.unlink()


def predict_and_write(
    plan: RunPlan, model: ModelFn, checkpoint: Checkpoint, progress: ProgressCallback | None, t_start: float
) -> SlidePrediction:
    """Predict the slide of ``plan`` and write all its outputs into place (through a scratch folder)."""
    settings = plan.settings
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{plan.stem}.tmp-", dir=plan.out_dir))
    try:
        with Slide.open(plan.slide_path, backend=settings.backend, mpp=settings.slide_mpp) as slide:
            pred = predict_slide(model, checkpoint, slide, scratch, settings, progress=progress)
            device = getattr(model, "device", None) or resolve_device(settings.device)
            run = {"device": str(device), "batch_size": settings.batch_size, "backend": slide.backend}
            job = WriteJob(
                scratch, plan.names, pred, slide, checkpoint.labels, settings, checkpoint_summary(plan, checkpoint), run
            )
            write_outputs(job, plan.writers, plan.stem, t_start, settings.writer_threads)
        commit(scratch, plan.out_dir, plan.names, plan.stem)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return pred


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
    progress: ProgressCallback | None = None,
) -> SlideResult:
    """Predict one slide and write its outputs into ``out_dir`` (resumable, atomic; see the module docstring).

    Parameters
    ----------
    checkpoint_path
        The checkpoint file (hashed to identify it in the record, unless ``checkpoint_sha256`` is given).
    model, checkpoint
        The loaded checkpoint and its prepared model, to reuse across slides; loaded when omitted.
    overwrite
        Redo the slide even when its outputs are up to date.
    progress
        Called with ``(tiles done, tiles total)`` after every batch.

    Errors propagate (the caller decides whether a multi-slide run continues).
    """
    t_start = time.perf_counter()
    sha = checkpoint_sha256 or file_sha256(checkpoint_path)
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(checkpoint_path)
    plan = plan_run(checkpoint_path, checkpoint, slide_path, out_dir, settings, sha)
    lock = plan.out_dir / f".{plan.stem}.lock"
    with output_lock(lock, f"{plan.out_dir / plan.names['record']} (slide {plan.slide_path.name})"):
        sweep_stale(plan.out_dir, plan.stem)
        check_outputs_owned(plan)
        if not overwrite and is_done(plan.out_dir, plan.stem, sha, plan.settings.identity()):
            log.info("%s: outputs up to date in %s, skipping (--overwrite to redo)", plan.slide_path.name, plan.out_dir)
            record = load_record_json(plan.out_dir / plan.names["record"]) or {}
            return SlideResult(str(plan.slide_path), "skipped", dict(record.get("outputs", {})))
        if model is None:
            model = prepare_model(checkpoint, settings.device, settings.precision, settings.engine)
        pred = predict_and_write(plan, model, checkpoint, progress, t_start)
    seconds = time.perf_counter() - t_start
    log.info("%s: %d tiles in %.1f s -> %s", plan.slide_path.name, pred.tiling.n_tiles, seconds, plan.out_dir)
    return SlideResult(str(plan.slide_path), "done", plan.names, None, seconds, pred.tiling.n_tiles)


__all__ = [
    "RunPlan",
    "SlideResult",
    "check_outputs_owned",
    "checkpoint_summary",
    "commit",
    "file_sha256",
    "is_done",
    "output_names",
    "owned_outputs",
    "pending_path",
    "plan_run",
    "predict_and_write",
    "run_slide",
    "worker_name",
]
