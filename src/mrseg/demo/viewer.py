"""The ``mrseg view`` command that opens a demo's test slides with all its models and the ground truth."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path


def view_command(root: str | os.PathLike[str], models: Iterable[str]) -> str:
    """``mrseg view DIR/data/test --pred KEY=DIR/preds/test/KEY ... --truth DIR/data/test/annotations``, quoted."""
    root = Path(root)
    test = root / "data" / "test"
    preds = [f"--pred {shlex.quote(key + '=' + str(root / 'preds' / 'test' / key))}" for key in models]
    truth = shlex.quote(str(test / "annotations"))
    return " ".join(["mrseg view", shlex.quote(str(test)), *preds, "--truth", truth])


__all__ = ["view_command"]
