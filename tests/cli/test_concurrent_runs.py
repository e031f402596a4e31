"""Two runs into one output through the CLI: the second stops with one line naming the first (issue 12 item 7)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner

from mrseg.cli import app

runner = CliRunner()

HOLD = """
import sys, time
from mrseg.core.locks import output_lock
with output_lock(sys.argv[1], "held by a test"):
    print("held", flush=True)
    time.sleep(60)
"""


@contextmanager
def held(lock: Path) -> Iterator[int]:
    """Another process holding ``lock``; yields its pid."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def _refused(argv: list[str], pid: int) -> str:
    result = runner.invoke(app, ["-q", *argv])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"in use by process {pid} " in lines[0], result.stderr
    return lines[0]


def test_a_second_predict_of_one_slide_is_refused(tmp_path: Path, slide: Path, binary_checkpoint: Path) -> None:
    out = tmp_path / "out"
    with held(out / f".{slide.stem}.lock") as pid:
        line = _refused(["predict", str(binary_checkpoint), str(slide), "--out", str(out)], pid)
    assert f"slide {slide.name}" in line
    assert not (out / f"{slide.stem}.json").exists()


def test_a_second_train_into_one_run_folder_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with held(tmp_path / ".run.lock") as pid:
        line = _refused(["train", "--config", "synthetic_unet", "--data", str(tmp_path), "--out", str(run)], pid)
    assert "run folder" in line and not run.exists()


def test_a_second_synth_into_one_folder_is_refused(tmp_path: Path) -> None:
    with held(tmp_path / ".data.lock") as pid:
        _refused(["synth", str(tmp_path / "data"), "--slides", "1", "--size", "512"], pid)
    assert not (tmp_path / "data").exists()
