"""Run independent demo stage bodies in worker processes, ``jobs`` at a time (e.g. one model per core).

A stage body here is a module-level function (picklable) returning ``(outputs, info)``. Each runs in a
``spawn``-started process (no torch/OpenMP state crosses a fork), which measures its own wall and CPU
seconds (its threads plus the DataLoader workers it reaped), so the stage records stay per stage.
Tasks are submitted longest first (by the given cost), the classic LPT rule, so two cores finish
together when the costs are known. After every task the worker gives its freed heap back to the
operating system (glibc ``malloc_trim``: about 0.4 GB after an MRN), which bounds the summed RSS.

Stopping: when the demo ends early (an error, Ctrl-C, SIGTERM) the workers are killed at once, so none
finishes its task or starts a queued one; an unfinished stage is never recorded, and the next run
clears and redoes it. SIGTERM to the demo becomes a one-line :class:`DemoInterrupted` error. A demo
killed outright (SIGKILL) takes its workers with it (the parent-death signal, Linux).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrseg.core.errors import MrsegError
from mrseg.core.memory import release_memory
from mrseg.core.workers import worker_pool
from mrseg.demo.cache import StageRecord, StageRunner, fmt_seconds, stage_key

log = logging.getLogger(__name__)

#: What a stage body returns: its outputs (paths relative to the demo folder) and extra facts.
StageOut = tuple[list[str], dict[str, Any]]


@dataclass(frozen=True)
class Task:
    """One stage body to run in a worker: ``fn(*args) -> (outputs, info)``; ``cost`` orders the queue."""

    name: str
    fn: Callable[..., StageOut]
    args: tuple[Any, ...]
    cost: float = 1.0


@dataclass(frozen=True)
class ParallelStage:
    """A stage for :func:`run_stages`: its cache ``payload``, its :class:`Task` and the paths to clear first."""

    payload: Any
    task: Task
    clean: tuple[Path, ...] = ()


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _init_worker(level: int) -> None:
    """Logging as in the parent (the worker's end with its parent is :func:`~mrseg.core.workers.worker_pool`'s)."""
    logging.basicConfig(level=level, format=f"%(asctime)s [worker {os.getpid()}] %(name)s %(message)s")


class DemoInterrupted(MrsegError):
    """The demo got SIGTERM while worker processes ran; they were stopped, finished stages are kept."""


def _interrupted() -> DemoInterrupted:
    return DemoInterrupted(
        "interrupted by SIGTERM: the worker processes were stopped; finished stages are kept, "
        "run the same command again to continue"
    )


def _timed(fn: Callable[..., StageOut], args: tuple[Any, ...]) -> tuple[StageOut, float, float]:
    t0, c0 = time.perf_counter(), _cpu_seconds()
    try:
        out = fn(*args)
    finally:
        release_memory()
    return out, time.perf_counter() - t0, _cpu_seconds() - c0


def run_tasks(tasks: Sequence[Task], jobs: int) -> Iterator[tuple[Task, StageOut, float, float]]:
    """Yield ``(task, (outputs, info), seconds, cpu_seconds)`` as tasks finish (``jobs`` processes at a time).

    The first failure (or Ctrl-C, SIGTERM, or the caller closing the generator) kills the workers:
    running tasks end at once, queued ones never start. The failure is then re-raised; SIGTERM
    raises :class:`DemoInterrupted`.
    """
    order = sorted(tasks, key=lambda t: -t.cost)
    ctx = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    with worker_pool(max(1, jobs), _interrupted, mp_context=ctx, initializer=_init_worker, initargs=(level,)) as pool:
        futures: dict[Future[Any], Task] = {pool.submit(_timed, t.fn, t.args): t for t in order}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                out, seconds, cpu = future.result()
                yield futures[future], out, seconds, cpu


def run_stages(runner: StageRunner, stages: Sequence[ParallelStage], jobs: int) -> dict[str, StageRecord]:
    """Run ``stages`` through ``runner``'s cache, the stale ones in ``jobs`` worker processes.

    Cache lookups, invalidation and cleaning happen here (in the parent), records are stored as
    tasks finish; the records are returned (and kept by ``runner``) in the given order.
    """
    found: dict[str, StageRecord] = {}
    todo: list[tuple[str, Task]] = []
    for stage in stages:
        name, key = stage.task.name, stage_key(stage.payload)
        record = runner.reuse_or_clear(name, key, stage.clean)
        if record is not None:
            found[name] = record
            continue
        todo.append((key, stage.task))
    keys = {task.name: key for key, task in todo}
    for task, (outputs, info), seconds, cpu in run_tasks([t for _, t in todo], jobs):
        found[task.name] = runner.cache.store(task.name, keys[task.name], outputs, seconds, cpu, info)
        log.info("stage %s: done in %s (CPU %s)", task.name, fmt_seconds(seconds), fmt_seconds(cpu))
    ordered = {s.task.name: found[s.task.name] for s in stages}
    runner.records.extend(ordered.values())
    return ordered


__all__ = ["DemoInterrupted", "ParallelStage", "StageOut", "Task", "run_stages", "run_tasks"]
