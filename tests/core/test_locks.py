"""Two runs into one output: the second stops at once and names the first (issue 12 item 7)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mrseg.core.locks import OutputLockedError, output_lock

HOLD = """
import sys, time
from mrseg.core.locks import output_lock
with output_lock(sys.argv[1], "run folder r"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_process_is_refused_with_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / ".r.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=rf"run folder r is in use by process {holder.pid} "):
            with output_lock(lock, "run folder r"):
                pass
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel releases a killed holder's lock: no stale lock
        try:
            with output_lock(lock, "run folder r"):
                break
        except OutputLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
