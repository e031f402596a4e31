"""What every benchmark script records: the machine it ran on, and the JSON result written whole."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
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


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON to ``path`` (atomically: a temporary name, then renamed) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}", file=sys.stderr)
