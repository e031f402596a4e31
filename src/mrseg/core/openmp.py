"""OpenMP's wait policy for torch's CPU threads: a short spin before a waiting thread sleeps, unless the user chose.

torch's CPU wheels run their intra-op threads on GNU OpenMP (libgomp), whose threads spin for up to
300,000 rounds at every barrier before they sleep. On a machine whose cores other processes also
use, a spinning thread holds a core that the thread it waits for needs. On session 9's 2-core VM, a
2-thread U-Net (width 16, depth 4) beside two busy processes ran at 18-25 tiles/s (128 px) with the
default, 35-39 with ``OMP_WAIT_POLICY=PASSIVE`` or ``GOMP_SPINCOUNT=10000``; beside three, 18-19 /
28-29 (128 px) and 5.9-6.1 / 6.7-7.9 (256 px) with the default / the short spin or passive. Idle, the
short spin cost about 0-5 % at 256 px and about 10 % at 128 px (docs/performance.md). libgomp reads
the setting once, when it is loaded (the first ``import torch``), so :func:`prefer_short_spin` must run
before that; the command line calls it first thing, and every process it starts (the demo's workers, a
local Dask cluster, ``torchrun``'s ranks) inherits it.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

#: Variables by which a user chooses how OpenMP threads wait (any of them set: mrseg leaves the policy alone).
WAIT_VARIABLES: tuple[str, ...] = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


#: libgomp's spin rounds before a waiting thread sleeps (its default: 300,000).
SPIN_COUNT = 10_000


def prefer_short_spin() -> bool:
    """Set ``GOMP_SPINCOUNT`` to :data:`SPIN_COUNT` here and in children, unless one of :data:`WAIT_VARIABLES` is set.

    Returns
    -------
    bool
        True when this process's torch will use it: the variable was set here, and torch was not
        imported yet (after that, only processes started later get it).
    """
    if any(name in os.environ for name in WAIT_VARIABLES):
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    if "torch" in sys.modules:
        log.debug("GOMP_SPINCOUNT set after torch was imported: only child processes use it")
        return False
    return True


__all__ = ["SPIN_COUNT", "WAIT_VARIABLES", "prefer_short_spin"]
