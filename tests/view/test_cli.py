"""``mrseg view`` as a user runs it: prints its URL (port 0: a free port), serves, stops cleanly on Ctrl-C;
a bad start is one line on stderr and exit status 1 (in-process, through typer's CliRunner)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mrseg.cli import app
from view_scenes import Scene

ROOT = Path(__file__).resolve().parents[2]


def mrseg(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "mrseg", "-q", "view", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_prints_its_url_serves_and_stops_on_ctrl_c(scene: Scene) -> None:
    preds = [f"--pred={name}={folder}" for name, folder in scene.preds.items()]
    proc = mrseg(str(scene.slide), *preds, "--truth", str(scene.truth), "--port", "0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "1 slide(s), 2 model(s) at http://127.0.0.1:" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        url = line.split(" at ")[1].strip()
        with urllib.request.urlopen(url + "dzi/s1.dzi", timeout=30) as response:
            assert response.status == 200 and b"Width" in response.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped" in out and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "no such slide or folder"),
        (["{slide}", "--pred", "m={root}/nowhere"], "prediction folder not found"),
        (["{slide}", "--port", "99999"], "--port must be in 0..65535"),
        (["{slide}", "--slide-mpp", "-1"], "--slide-mpp must be positive"),
    ],
)
def test_a_bad_start_is_one_line_and_status_1(scene: Scene, args: list[str], message: str) -> None:
    values = {"missing": str(scene.root / "missing.tif"), "slide": str(scene.slide), "root": str(scene.root)}
    result = CliRunner().invoke(app, ["-q", "view", *(a.format(**values) for a in args)])
    assert message in _one_error_line(result)


def test_a_port_in_use_is_a_clear_error(scene: Scene) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["-q", "view", str(scene.slide), "--port", str(port)])
    assert f"cannot listen on 127.0.0.1:{port}" in _one_error_line(result)
