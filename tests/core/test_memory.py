"""release_memory: garbage collection on request, then glibc's malloc_trim where there is one."""

from __future__ import annotations

import gc

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
