"""``mrseg synth --workers 2`` stopped mid-way: its slide workers end with it and nothing is left at the output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; parent-death signal")


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopped_synth_leaves_no_worker_and_no_output(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "mrseg", "synth", str(out), "-n", "8", "--size", "2048", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            workers = _children(proc.pid)
            time.sleep(0.05)
        assert len(workers) >= 2, "the slide workers never started"
        time.sleep(1.0)  # mid-slide
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "a slide worker outlived synth"
        assert not out.exists(), "a data set appeared although synth was stopped"
        if sig == signal.SIGTERM:
            assert proc.returncode == 1
            assert err.strip().splitlines()[-1] == (
                "error: interrupted by SIGTERM: the slide workers were stopped, no data set was written"
            )
            left = [p.name for p in tmp_path.iterdir() if p.name != ".data.lock"]  # the lock file stays
            assert not left, f"the temporary data set was left behind: {left}"
        else:
            assert proc.returncode == -signal.SIGKILL  # its temporary is swept by the next run (sweep_stale)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
