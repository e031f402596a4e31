"""Stage cache of the demo: a small JSON per finished stage, keyed on a hash of what the stage used.

:class:`StageRunner` runs a stage through the cache: reused when fresh, else its old outputs are
removed, the body runs (timed) and its record is stored.

A stage is *fresh* when ``DIR/.stages/<name>.json`` exists, records the same key (SHA-256 of the
stage's resolved settings and of its inputs' keys) and every output it lists still exists. The
record is written last and atomically, so an interrupted stage is never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mrseg.core.atomic import atomic_write_text

log = logging.getLogger(__name__)

STAGE_DIR = ".stages"


def stage_key(payload: Any) -> str:
    """SHA-256 (hex) of a JSON-serialisable payload, with sorted keys (stable across runs)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class StageRecord:
    """What a finished stage left: its key, outputs (relative to the demo folder), timings and extras."""

    name: str
    key: str
    outputs: list[str]
    seconds: float
    cpu_seconds: float
    finished: str
    info: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "outputs": self.outputs,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "finished": self.finished,
            "info": self.info,
        }


class StageCache:
    """Records of finished stages under ``root/.stages``.

    Parameters
    ----------
    root
        The demo folder; stage outputs are given relative to it.
    fresh
        Ignore (and overwrite) every existing record.
    """

    def __init__(self, root: str | os.PathLike[str], *, fresh: bool = False) -> None:
        self.root = Path(root)
        self.fresh = fresh
        self.dir = self.root / STAGE_DIR

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def lookup(self, name: str, key: str) -> StageRecord | None:
        """The record of stage ``name`` if it finished with this ``key`` and its outputs exist, else None."""
        if self.fresh:
            return None
        path = self._path(name)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        outputs = [str(o) for o in data.get("outputs", [])]
        missing = [o for o in outputs if not (self.root / o).exists()]
        if missing:
            log.info("stage %s: cached outputs missing (%s); running it again", name, ", ".join(missing[:3]))
            return None
        return StageRecord(
            name=name,
            key=key,
            outputs=outputs,
            seconds=float(data.get("seconds", 0.0)),
            cpu_seconds=float(data.get("cpu_seconds", 0.0)),
            finished=str(data.get("finished", "")),
            info=dict(data.get("info", {})),
            cached=True,
        )

    def store(
        self, name: str, key: str, outputs: list[str], seconds: float, cpu_seconds: float, info: dict[str, Any]
    ) -> StageRecord:
        """Write the record of a finished stage (atomically, after its outputs)."""
        record = StageRecord(
            name=name,
            key=key,
            outputs=outputs,
            seconds=seconds,
            cpu_seconds=cpu_seconds,
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            info=info,
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._path(name), json.dumps(record.to_dict(), indent=2, default=str))
        return record

    def invalidate(self, name: str) -> None:
        """Forget stage ``name`` (before re-running it, so a crash leaves no stale record)."""
        self._path(name).unlink(missing_ok=True)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and of its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Timer:
    """Wall and CPU seconds of a block.

    CPU seconds sum every thread of this process and the child processes that ended within the block
    (slide-generation workers, DataLoader workers), so on an idle machine with ``n`` cores the wall
    time of a CPU-bound stage is roughly ``cpu_seconds / n`` or more.
    """

    def __enter__(self) -> Timer:
        self.t0, self.c0 = time.perf_counter(), _cpu_seconds()
        self.seconds = self.cpu_seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu_seconds = _cpu_seconds() - self.c0


def fmt_seconds(seconds: float) -> str:
    """``42 s`` below 90 seconds, ``1.5 min`` above (log messages)."""
    seconds = max(0.0, seconds)
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


class StageRunner:
    """Runs one stage through the cache and keeps every record (in order) for the report."""

    def __init__(self, root: Path, fresh: bool = False) -> None:
        self.cache = StageCache(root, fresh=fresh)
        self.records: list[StageRecord] = []

    def reuse_or_clear(self, name: str, key: str, clean: Sequence[Path] = ()) -> StageRecord | None:
        """The record of stage ``name`` if fresh for ``key``; else forget it, remove ``clean`` and return None."""
        record = self.cache.lookup(name, key)
        if record is not None:
            log.info("stage %s: reused (finished %s, took %s)", name, record.finished, fmt_seconds(record.seconds))
            return record
        self.cache.invalidate(name)
        for path in clean:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return None

    def run(
        self,
        name: str,
        payload: Any,
        body: Callable[[], tuple[list[str], dict[str, Any]]],
        clean: Sequence[Path] = (),
    ) -> StageRecord:
        """Reuse stage ``name`` when its record matches ``payload``'s key, else remove ``clean`` and run ``body``.

        ``body`` returns the stage's outputs (paths relative to the demo folder) and extra facts;
        the record is stored after it returns.
        """
        key = stage_key(payload)
        record = self.reuse_or_clear(name, key, clean)
        if record is not None:
            self.records.append(record)
            return record
        with Timer() as timer:
            outputs, info = body()
        record = self.cache.store(name, key, outputs, timer.seconds, timer.cpu_seconds, info)
        log.info("stage %s: done in %s (CPU %s)", name, fmt_seconds(timer.seconds), fmt_seconds(timer.cpu_seconds))
        self.records.append(record)
        return record
