"""Figures on disk: matplotlib on the Agg backend and atomic PNG writing (every figure mrseg draws)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mrseg.core.atomic import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], *, tight: bool = False) -> Path:
    """Write ``fig`` as a PNG atomically (temporary name, then rename), close it and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **({"bbox_inches": "tight"} if tight else {}))
    pyplot().close(fig)
    return path


__all__ = ["pyplot", "save_figure"]
