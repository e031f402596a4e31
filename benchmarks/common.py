"""What every benchmark script records: the machine it ran on, and the JSON result written whole."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mrseg.core.atomic import atomic_path


def machine() -> dict[str, Any]:
    """Platform, CPU count, Python and the load average (1, 5, 15 min) when the result is written."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def as_the_command_line() -> None:
    """What ``mrseg`` does first, before torch loads (:func:`mrseg.core.openmp.prefer_short_spin`).

    Call it in a benchmark's child before ``import torch``; code before session 9 (``--today``) has no
    such step, and then nothing is done.
    """
    try:
        from mrseg.core.openmp import prefer_short_spin
    except ImportError:
        return
    prefer_short_spin()


def ratio_summary(ratios: list[float]) -> dict[str, Any]:
    """Median and ``[min, max]`` of per-round ratios (this / other), under the keys every result uses."""
    return {"ratio_median": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)]}


def run_json_child(script: str | Path, cfg: dict[str, Any], src: str | Path | None = None) -> dict[str, Any]:
    """Run ``script --_child CFG`` in a fresh interpreter and return the JSON of its last line of output.

    With ``src``, the child imports ``mrseg`` from that folder (``PYTHONPATH``): another checkout to compare with.
    """
    env = os.environ if src is None else {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, str(script), "--_child", json.dumps(cfg)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def answered_as_child(args: Any, child: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """In a child started by :func:`run_json_child` (``args._child`` set): print ``child(cfg)`` as JSON and say so."""
    if not getattr(args, "_child", None):
        return False
    print(json.dumps(child(json.loads(args._child))))
    return True


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON to ``path`` (atomically: a temporary name, then renamed) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}", file=sys.stderr)
