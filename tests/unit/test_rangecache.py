"""rangecache: small reads served from aligned windows, one fetch per window even when
threads ask at once, big reads straight through, a failed fetch retried next time."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs.rangecache import WindowCache

DATA = bytes(range(256)) * 40  # 10240 bytes


def cache(window: int = 1024, keep: int = 4) -> tuple[WindowCache, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []

    def fetch(ns: str, name: str, offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return DATA[offset:offset + length]
    return WindowCache(fetch, window, keep), calls


@given(st.integers(0, len(DATA) - 1), st.integers(1, 400))
def test_reads_equal_the_object(offset: int, length: int) -> None:
    c, calls = cache()
    assert c.read("data", "p", offset, length, len(DATA)) == DATA[offset:offset + length]
    assert all(0 < n and o + n <= len(DATA) for o, n in calls)


def test_neighbours_cost_one_request_and_big_reads_go_through() -> None:
    c, calls = cache()
    for off in range(0, 1000, 100):
        c.read("data", "p", off, 100, len(DATA))
    assert calls == [(0, 1024)]
    assert c.read("data", "p", 2000, 600, len(DATA)) == DATA[2000:2600]
    assert calls[-1] == (2000, 600)
    assert c.read("data", "p", 10200, 200, len(DATA)) == DATA[10200:]  # the short last one
    assert calls[-1] == (9216, 1024)  # never a window past the end
    assert c.read("data", "p", len(DATA), 10, len(DATA)) == b"" and len(calls) == 3


def test_threads_share_one_fetch_and_failures_are_not_cached() -> None:
    calls: list[int] = []
    fail = [True]

    def fetch(ns: str, name: str, offset: int, length: int) -> bytes:
        calls.append(offset)
        time.sleep(0.05)
        if fail[0]:
            raise OSError("reset")
        return DATA[offset:offset + length]
    c = WindowCache(fetch, 1024, 4)
    with pytest.raises(OSError):
        c.read("data", "p", 10, 10, len(DATA))
    fail[0] = False
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(
        c.read("data", "p", 10, 10, len(DATA)))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [DATA[10:20]] * 8 and calls == [0, 0]
    c.forget("data", "p")
    c.read("data", "p", 10, 10, len(DATA))
    assert calls == [0, 0, 0]
