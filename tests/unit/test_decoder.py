"""vfs.decoder: chunks fetched in forked children; and ChunkCache.get_many, which uses them."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repofs.errors import IntegrityError
from repofs.vfs import decoder
from repofs.vfs.decoder import Decoders
from repofs.vfs.reader import BATCH_MAX, ChunkCache


def cid(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


def plain(i: int) -> bytes:
    return bytes([i % 251]) * (i * 37 % 5000)


STORE = {cid(i): plain(i) for i in range(100)}


def fetch(chunk_id: bytes) -> bytes:
    if chunk_id not in STORE:
        raise IntegrityError("chunk", chunk_id.hex(), "missing")
    return STORE[chunk_id]


@pytest.fixture
def decoders():
    d = Decoders(fetch, lambda: None, processes=2)
    yield d
    d.close()


def test_children_answer_with_the_plaintexts_and_none_for_what_fails(decoders):
    ids = [cid(3), cid(999), cid(0), cid(42), cid(3)]
    got = decoders.decode(ids)
    assert got is not None
    assert [None if g is None else bytes(g) for g in got] == \
        [plain(3), None, plain(0), plain(42), plain(3)]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 120), max_size=40))
def test_any_batch_comes_back_in_order(ids):
    d = Decoders(fetch, lambda: None, processes=1)
    try:
        got = d.decode([cid(i) for i in ids])
        assert got is not None
        assert [None if g is None else bytes(g) for g in got] == \
            [plain(i) if i < 100 else None for i in ids]
    finally:
        d.close()


def test_several_threads_share_the_children(decoders):
    errors = []

    def worker(k: int) -> None:
        for j in range(30):
            ids = [cid((k * 7 + j + n) % 100) for n in range(5)]
            got = decoders.decode(ids)
            if got is None or [bytes(g) for g in got if g is not None] != [STORE[i] for i in ids]:
                errors.append((k, j))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_dead_child_is_not_asked_again_and_none_left_means_no_answer(decoders):
    for pid in decoders.pids():
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    first = decoders.decode([cid(1)])
    assert first == [None]  # the child was gone: nothing fetched, nothing wrong
    second = decoders.decode([cid(1)])
    assert second == [None]
    assert decoders.decode([cid(1)]) is None  # nobody left
    assert not decoders.alive


def test_a_child_reads_the_index_again_when_a_chunk_is_not_found():
    added: dict[bytes, bytes] = {}
    state = {"refreshed": 0}

    def fetch_new(chunk_id: bytes) -> bytes:
        if chunk_id in added:
            return added[chunk_id]
        raise IntegrityError("chunk", chunk_id.hex(), "not in the index")

    def refresh() -> None:  # runs in the child: the snapshot added after the fork
        state["refreshed"] += 1
        added[cid(7)] = b"seven"

    d = Decoders(fetch_new, refresh, processes=1)
    try:
        got = d.decode([cid(7)])
        assert got is not None and got[0] is not None and bytes(got[0]) == b"seven"
        assert state["refreshed"] == 0  # that happened in the child, not here
    finally:
        d.close()


def test_close_ends_the_children(decoders):
    pids = decoders.pids()
    decoders.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    assert decoders.decode([cid(1)]) is None


def _ignores_sigint(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


def test_a_child_ignores_sigint(decoders):
    deadline = time.monotonic() + 5
    for pid in decoders.pids():  # wait until each child has set up its loop
        while not _ignores_sigint(pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    for pid in decoders.pids():
        os.kill(pid, signal.SIGINT)  # ^C of a foreground mount reaches the whole group
    time.sleep(0.1)
    got = decoders.decode([cid(5)])
    assert got is not None and bytes(got[0] or b"") == plain(5)


def test_answers_that_do_not_fit_the_request_are_refused():
    with pytest.raises(ValueError):
        decoder._parse(decoder._COUNT.pack(2) + decoder._SIZE.pack(1) * 2 + b"x", 2)
    with pytest.raises(ValueError):
        decoder._parse(decoder._COUNT.pack(1) + decoder._SIZE.pack(0), 2)


# -- ChunkCache.get_many ---------------------------------------------------------------
def test_get_many_takes_small_chunks_from_the_batch_and_large_ones_here():
    big = cid(500)
    store = dict(STORE)
    store[big] = b"L" * (BATCH_MAX + 1)
    here: list[bytes] = []
    batches: list[list[bytes]] = []

    def fetch_here(c: bytes) -> bytes:
        here.append(c)
        return store[c]

    def fetch_many(ids):
        batches.append(list(ids))
        return [memoryview(store[c]) for c in ids]

    cache = ChunkCache(fetch_here, 1 << 30)
    cache.fetch_many = fetch_many
    cache.get_many([(cid(1), len(plain(1))), (big, BATCH_MAX + 1), (cid(2), len(plain(2)))])
    assert batches == [[cid(1), cid(2)]]
    assert here == [big]
    assert bytes(cache.peek(cid(1)) or b"") == plain(1)
    assert cache.peek(big) == store[big]
    cache.get_many([(cid(1), len(plain(1)))])  # cached: no fetch at all
    assert len(batches) == 1


def test_get_many_leaves_failures_out_and_get_reports_them():
    def fetch_many(ids):
        return [None if c == cid(9) else memoryview(STORE[c]) for c in ids]

    def fetch_here(c: bytes) -> bytes:
        raise IntegrityError("chunk", c.hex(), "content does not match its id")

    cache = ChunkCache(fetch_here, 1 << 30)
    cache.fetch_many = fetch_many
    cache.get_many([(cid(8), len(plain(8))), (cid(9), len(plain(9)))])
    assert cache.peek(cid(9)) is None
    assert bytes(cache.get(cid(8), len(plain(8)))) == plain(8)
    with pytest.raises(IntegrityError, match="does not match"):
        cache.get(cid(9), len(plain(9)))


def test_get_many_refuses_a_chunk_of_the_wrong_size():
    cache = ChunkCache(fetch, 1 << 30)
    cache.fetch_many = lambda ids: [memoryview(b"short") for _ in ids]
    cache.get_many([(cid(10), len(plain(10)))])
    assert cache.peek(cid(10)) is None
    assert cache.get(cid(10), len(plain(10))) == plain(10)  # fetched here, verified


def test_get_many_without_a_batch_fetcher_fetches_here():
    cache = ChunkCache(fetch, 1 << 30)
    cache.get_many([(cid(11), len(plain(11))), (cid(999), 5)])
    assert cache.peek(cid(11)) == plain(11)
    assert cache.peek(cid(999)) is None


def test_a_reader_waiting_for_a_batch_that_fails_fetches_itself():
    gate = threading.Event()
    started = threading.Event()

    def slow_many(ids):
        started.set()
        gate.wait(5)
        return [None for _ in ids]

    cache = ChunkCache(fetch, 1 << 30)
    cache.fetch_many = slow_many
    t = threading.Thread(target=cache.get_many, args=([(cid(12), len(plain(12)))],))
    t.start()
    started.wait(5)
    out: list[object] = []
    reader = threading.Thread(target=lambda: out.append(cache.get(cid(12), len(plain(12)))))
    reader.start()
    time.sleep(0.05)
    assert not out  # it waits for the batch rather than fetching twice
    gate.set()
    reader.join(5)
    t.join(5)
    assert out == [plain(12)]
