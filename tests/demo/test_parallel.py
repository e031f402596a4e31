"""Demo worker processes end with the demo, whatever ends it: SIGKILL, SIGTERM or Ctrl-C (SIGINT to the group).

The workers here behave like a trainer that stops only after its step: they ignore SIGINT and SIGTERM
(and sleep), and a second task waits in the queue, so only a kill stops them and nothing may start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import os, signal, sys, time
from pathlib import Path
from mrseg.demo.parallel import DemoInterrupted, Task, run_tasks

def body(path):
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: None)  # a worker busy with its step
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(120)
    return [], {}

if __name__ == "__main__":
    # Ctrl-C reaches a terminal's foreground job; a test run started in the background (nohup ... &)
    # hands its children SIGINT ignored (POSIX), and Python then never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    tasks = [Task(f"sleep{i}", body, (sys.argv[1],)) for i in range(2)]  # jobs=1: one waits in the queue
    try:
        for _ in run_tasks(tasks, 1):
            pass
    except DemoInterrupted:
        sys.exit(3)
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended (its new parent may not reap it at once)


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    script, pid_file = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)], env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (pid_file.exists() and pid_file.read_text().endswith("\n")) and time.monotonic() < deadline:
        assert parent.poll() is None, "the parent ended before its worker started"
        time.sleep(0.1)
    time.sleep(0.5)  # the worker's signal handlers are set right before its pid is written
    return parent, pid_file


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_workers_end_with_the_demo(tmp_path: Path, how: str) -> None:
    parent, pid_file = _start(tmp_path)
    try:
        workers = [int(line) for line in pid_file.read_text().split()]
        assert len(workers) == 1 and _alive(workers[0])
        if how == "SIGKILL":
            parent.send_signal(signal.SIGKILL)
        elif how == "SIGTERM":
            parent.send_signal(signal.SIGTERM)
        else:
            os.killpg(parent.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
        rc = parent.wait(20)
        assert not _wait_gone(workers, 20), f"a worker outlived the demo ({how})"
        assert pid_file.read_text().split() == [str(w) for w in workers], "the queued task started"
        expected = {"SIGKILL": -signal.SIGKILL, "SIGTERM": 3, "Ctrl-C": -signal.SIGINT}[how]  # 3: DemoInterrupted
        assert rc == expected
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(10)
