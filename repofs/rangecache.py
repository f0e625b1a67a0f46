"""Small ranged reads of a remote object served from aligned windows, the last few kept.

Why: over S3 every request waits a round trip, and a restore (or the mount) reads a
pack blob by blob, often tens of small blobs in a row from one pack. Reading the
aligned window around a small read once and serving its neighbours from memory turns
those into one request. Threads asking for the same window wait for the one fetch.
The bytes are no more trusted than any others: callers verify every blob they cut out.
Memory is bounded: ``keep`` windows of ``window`` bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

Fetch = Callable[[str, str, int, int], bytes]  # (namespace, name, offset, length)


class WindowCache:
    """Reads shorter than a quarter window come from cached windows; others go through."""

    def __init__(self, fetch: Fetch, window: int = 1 << 20, keep: int = 48) -> None:
        self.fetch = fetch
        self.window = window
        self.keep = keep
        self._lock = threading.Lock()
        self._windows: OrderedDict[tuple[str, str, int], Future[bytes]] = OrderedDict()

    def read(self, namespace: str, name: str, offset: int, length: int, size: int) -> bytes:
        """``length`` bytes at ``offset`` of an object of ``size`` bytes (fewer at its end)."""
        length = min(length, size - offset)  # never ask past the end, windowed or not
        if length <= 0:
            return b""
        if length * 4 > self.window:
            return self.fetch(namespace, name, offset, length)
        w = self.window
        first, last = offset // w, (offset + length - 1) // w
        data = b"".join(self._window(namespace, name, i, size) for i in range(first, last + 1))
        start = offset - first * w
        return data[start:start + length]

    def _window(self, namespace: str, name: str, index: int, size: int) -> bytes:
        key = (namespace, name, index)
        with self._lock:
            fut = self._windows.get(key)
            mine = fut is None
            if fut is None:
                fut = self._windows[key] = Future()
                while len(self._windows) > self.keep:
                    self._windows.popitem(last=False)
            else:
                self._windows.move_to_end(key)
        if mine:
            start = index * self.window
            try:
                fut.set_result(self.fetch(namespace, name, start,
                                          min(self.window, size - start)))
            except BaseException as e:  # the waiters get it too; the next read tries again
                fut.set_exception(e)
                with self._lock:
                    if self._windows.get(key) is fut:
                        del self._windows[key]
        return fut.result()

    def forget(self, namespace: str, name: str) -> None:
        """Drop an object's windows (it was deleted)."""
        with self._lock:
            for key in [k for k in self._windows if k[:2] == (namespace, name)]:
                del self._windows[key]


__all__ = ["WindowCache"]
