"""Sample the summed RSS of a process tree every 0.5 s: python rss_monitor.py PID OUT.txt (peak MB written at exit)."""

import os
import sys
import time
from pathlib import Path


def tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


pid, out = int(sys.argv[1]), Path(sys.argv[2])
peak_sum = peak_one = 0.0
while Path(f"/proc/{pid}").exists():
    vals = [rss_mb(p) for p in tree(pid)]
    peak_sum, peak_one = max(peak_sum, sum(vals)), max(peak_one, max(vals, default=0))
    out.write_text(f"peak_sum_mb {peak_sum:.0f} peak_one_mb {peak_one:.0f}\n")
    time.sleep(0.5)
