"""What every benchmark script records: the machine it ran on, and the JSON result written whole."""

from __future__ import annotations

import json
import os
import platform
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


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON to ``path`` (atomically: a temporary name, then renamed) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}", file=sys.stderr)
