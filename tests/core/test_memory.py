"""release_memory: garbage collection on request, then glibc's malloc_trim where there is one."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

import mrseg.core.memory as memory


class _FakeLibc:
    def __init__(self) -> None:
        self.trims: list[int] = []

    def malloc_trim(self, pad: int) -> int:
        self.trims.append(pad)
        return 1


@pytest.mark.parametrize("collect", [True, False])
def test_release_memory_trims_and_collects_only_when_asked(monkeypatch: pytest.MonkeyPatch, collect: bool) -> None:
    fake, collected = _FakeLibc(), []
    monkeypatch.setattr(memory, "libc", lambda: fake)
    monkeypatch.setattr(gc, "collect", lambda: collected.append(1) or 0)
    memory.release_memory(collect=collect)
    assert fake.trims == [0]
    assert collected == ([1] if collect else [])


def test_release_memory_without_glibc_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "libc", lambda: None)
    memory.release_memory(collect=False)  # musl, macOS, Windows: nothing to call, no error
    monkeypatch.setattr(memory, "libc", lambda: object())  # a libc without malloc_trim
    memory.release_memory(collect=False)


class _FakeMallopt:
    def __init__(self, refuse_above: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.refuse_above = refuse_above

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 0 if self.refuse_above is not None and value > self.refuse_above and param == -3 else 1


@pytest.fixture()
def fresh_heap_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    memory.keep_freed_heap.cache_clear()
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    yield
    memory.keep_freed_heap.cache_clear()


@pytest.mark.usefixtures("fresh_heap_setting")
def test_keep_freed_heap_sets_both_thresholds_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeMallopt()
    monkeypatch.setattr(memory, "libc", lambda: fake)
    assert memory.keep_freed_heap() is True
    assert memory.keep_freed_heap() is True  # once per process
    assert fake.calls == [(-3, memory.HEAP_MMAP_THRESHOLD), (-1, memory.HEAP_TRIM_THRESHOLD)]


@pytest.mark.usefixtures("fresh_heap_setting")
def test_keep_freed_heap_falls_back_where_glibc_refuses_a_large_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeMallopt(refuse_above=32 << 20)  # glibc before 2.35: at most half of a 64 MiB arena heap
    monkeypatch.setattr(memory, "libc", lambda: fake)
    assert memory.keep_freed_heap() is True
    assert fake.calls == [(-3, memory.HEAP_MMAP_THRESHOLD), (-3, 32 << 20), (-1, memory.HEAP_TRIM_THRESHOLD)]


@pytest.mark.usefixtures("fresh_heap_setting")
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MALLOC_MMAP_THRESHOLD_", "65536"),
        ("MALLOC_TRIM_THRESHOLD_", "0"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1"),
    ],
)
def test_keep_freed_heap_leaves_the_users_own_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    fake = _FakeMallopt()
    monkeypatch.setattr(memory, "libc", lambda: fake)
    monkeypatch.setenv(name, value)
    assert memory.keep_freed_heap() is False
    assert fake.calls == []


@pytest.mark.usefixtures("fresh_heap_setting")
def test_keep_freed_heap_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "libc", lambda: None)
    assert memory.keep_freed_heap() is False


_FAULTS = """
import resource, sys
import numpy as np
import mrseg.core.memory as memory
if sys.argv[1] == "keep":
    assert memory.keep_freed_heap()
def batch():  # a network's activations: several 16 MB arrays alive at once, all freed at the end
    arrays = [np.ones(4 << 20, np.float32) for _ in range(6)]
    return sum(float(a[0]) for a in arrays)
for _ in range(3):  # warm up: the heap reaches its size
    batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_kept_heap_serves_batch_after_batch_without_page_faults() -> None:
    """The real effect, in fresh processes: 20 batches of 6 arrays of 16 MB fault their pages in each time, or once."""
    import subprocess
    import sys

    from mrseg.core.workers import libc

    c = libc()
    if c is None or not hasattr(c, "mallopt"):
        pytest.skip("not glibc")
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}

    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, env=env, check=True)
        return int(out.stdout.strip())

    default, kept = faults("default"), faults("keep")
    assert default > 20 * 2000  # glibc's own thresholds: pages faulted in again on every batch
    assert kept < default / 10
