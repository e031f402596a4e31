"""Bounded pools of open file handles (slides, map TIFFs) and the bounded tile cache of the viewer.

The server answers requests from a thread pool; a slide or TIFF handle is never used by two threads
at once (not every backend is thread-safe): a request borrows a handle from its :class:`HandlePool`,
which opens at most ``size`` of them and makes further requests wait. :class:`TileCache` keeps
encoded tiles up to a byte budget, dropping the least recently used first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

#: Handles opened per file at most (requests beyond wait for one).
HANDLES_PER_FILE = 4


class HandlePool(Generic[T]):
    """At most ``size`` handles made by ``opener``, lent to one thread at a time.

    Parameters
    ----------
    opener
        Opens a new handle (called lazily, at most ``size`` times while none is closed).
    closer
        Closes a handle (:meth:`close`).
    size
        Most handles open at once.
    """

    def __init__(self, opener: Callable[[], T], closer: Callable[[T], None], size: int = HANDLES_PER_FILE) -> None:
        self._opener, self._closer = opener, closer
        self._free: list[T] = []
        self._all: list[T] = []
        self._size = max(1, int(size))
        self._cond = threading.Condition()
        self._closed = False

    @contextmanager
    def borrow(self) -> Iterator[T]:
        """A handle for the ``with`` block (opened when none is free and fewer than ``size`` exist)."""
        handle = self._take()
        try:
            yield handle
        finally:
            with self._cond:
                self._free.append(handle)
                self._cond.notify()

    def _take(self) -> T:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the handle pool is closed")
                if self._free:
                    return self._free.pop()
                if len(self._all) < self._size:
                    break
                self._cond.wait()
        handle = self._opener()  # outside the lock: opening may be slow
        with self._cond:
            self._all.append(handle)
        return handle

    def close(self) -> None:
        """Close every handle (borrowed ones too: call it when no request runs)."""
        with self._cond:
            self._closed = True
            handles, self._all, self._free = self._all, [], []
            self._cond.notify_all()
        for handle in handles:
            self._closer(handle)


class TileCache:
    """Encoded tiles by key, at most ``max_bytes`` in all (least recently used dropped first); thread-safe.

    Attributes
    ----------
    hits, misses
        Lookups that found / did not find their key.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: Hashable, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)

    def get_or_make(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        """The cached bytes of ``key``, else ``make()`` (cached). Two threads may make the same tile once each."""
        data = self.get(key)
        if data is None:
            data = make()
            self.put(key, data)
        return data


__all__ = ["HANDLES_PER_FILE", "HandlePool", "TileCache"]
