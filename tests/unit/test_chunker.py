"""chunker: keyed FastCDC 2020 over streams, identical to chunking the whole buffer."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from repofs import chunker, spec
from repofs.chunker import Chunker, gear_seed, permutation

# Small sizes (FastCDC's smallest legal ones, scaled x4) so that properties see many chunks.
MIN, AVG, MAX = 256, 1024, 4096
KEY = bytes(range(32))
keys32 = st.binary(min_size=32, max_size=32)


def small(key: bytes = KEY) -> Chunker:
    return Chunker(key, MIN, AVG, MAX)


def random_data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def reader(data: bytes, sizes: list[int]) -> tuple[Callable[[memoryview], int], list[int]]:
    """A readinto over ``data`` that returns at most sizes[i % len] bytes per call."""
    pos = 0
    calls: list[int] = []

    def readinto(view: memoryview) -> int:
        nonlocal pos
        n = min(len(view), sizes[len(calls) % len(sizes)], len(data) - pos)
        calls.append(n)
        view[:n] = data[pos : pos + n]
        pos += n
        return n

    return readinto, calls


def split(data: bytes, lengths: list[int]) -> list[bytes]:
    out, pos = [], 0
    for n in lengths:
        out.append(data[pos : pos + n])
        pos += n
    return out


@contextmanager
def small_reads() -> Iterator[None]:
    """Buffers of a few max-size chunks, so streams span many buffers."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chunker, "READ_SIZE", 3 * MAX)
        yield


# -- the permutation ---------------------------------------------------------------------------
@given(keys32)
def test_permutation_is_a_permutation(key: bytes) -> None:
    p = permutation(key)
    assert sorted(p) == list(range(256))
    assert permutation(key) == p


@given(keys32, keys32)
def test_permutation_depends_on_the_key(a: bytes, b: bytes) -> None:
    if a != b:
        assert permutation(a) != permutation(b)


def test_permutation_is_not_the_identity() -> None:
    assert permutation(KEY) != bytes(range(256))


# -- boundaries ---------------------------------------------------------------------------------
@given(st.integers(0, 2**32), st.integers(0, 40_000))
def test_chunks_concatenate_to_the_input_and_respect_sizes(seed: int, size: int) -> None:
    data = random_data(seed, size)
    lengths = small().boundaries(data)
    assert sum(lengths) == size
    assert b"".join(split(data, lengths)) == data
    for n in lengths[:-1]:
        assert MIN <= n <= MAX
    if lengths:
        assert 0 < lengths[-1] <= MAX
    else:
        assert size == 0


@given(st.binary(max_size=20_000))
def test_low_entropy_input_respects_sizes(data: bytes) -> None:
    data = data * 3
    lengths = small().boundaries(data)
    assert sum(lengths) == len(data)
    assert all(MIN <= n <= MAX for n in lengths[:-1])


@settings(max_examples=50)
@given(keys32, keys32, st.integers(0, 2**32))
def test_different_keys_give_different_boundaries(a: bytes, b: bytes, seed: int) -> None:
    if a == b:
        return
    data = random_data(seed, 64 * 1024)
    assert small(a).boundaries(data) != small(b).boundaries(data)


def lengths_of(cdc: FastCDC, data: bytes) -> list[int]:
    return [c.length for c in cdc.cut_buf(data)]


def test_keyed_boundaries_are_not_public_fastcdc() -> None:
    data = random_data(7, 256 * 1024)
    def cdc(seed: int) -> FastCDC:
        return FastCDC(AVG, min_size=MIN, max_size=MAX, normalized_chunking=1, seed=seed)
    keyed = data.translate(permutation(KEY))
    mine = small().boundaries(data)
    assert mine != lengths_of(cdc(0), data)  # public FastCDC
    assert mine != lengths_of(cdc(0), keyed)  # the permutation alone
    assert mine != lengths_of(cdc(gear_seed(KEY)), data)  # the seed alone
    # ...but exactly FastCDC 2020 with the secret seed on the permuted bytes
    assert mine == lengths_of(cdc(gear_seed(KEY)), keyed)


@given(keys32)
def test_gear_seed_is_in_range_and_keyed(key: bytes) -> None:
    seed = gear_seed(key)
    assert 1 <= seed < 2**63  # pyfastcdc shifts it left by one into 64 bits
    assert gear_seed(key) == seed
    other = bytes([key[0] ^ 1]) + key[1:]
    assert gear_seed(other) != seed


def test_same_key_same_boundaries() -> None:
    data = random_data(8, 100_000)
    assert small(b"\x01" * 32).boundaries(data) == small(b"\x01" * 32).boundaries(data)


@settings(max_examples=60)
@given(st.integers(0, 2**32), st.integers(10_000, 80_000), st.integers(0, 10**9),
       st.integers(1, 300))
def test_an_insertion_only_changes_chunks_near_it(seed: int, size: int, where: int,
                                                  k: int) -> None:
    rnd = random.Random(seed)
    data = rnd.randbytes(size)
    p = where % (size + 1)
    edited = data[:p] + rnd.randbytes(k) + data[p:]
    c = small()
    old = split(data, c.boundaries(data))
    new = split(edited, c.boundaries(edited))
    # every chunk that ends before the edit is unchanged, in place (the last one is cut
    # by the end of the data, not by its content). FastCDC 2020 decides a cut at i
    # from the bytes up to and including i, so the byte just after a chunk counts too.
    pos, prefix = 0, 0
    for chunk in old[:-1]:
        if pos + len(chunk) >= p:
            break
        pos += len(chunk)
        prefix += 1
    assert new[:prefix] == old[:prefix]
    # the chunks resynchronise soon after the edit: few new bytes to store
    known = set(old)
    changed = sum(len(ch) for ch in new if ch not in known)
    assert changed <= k + 4 * MAX
    # and the tail after the resync point is shared
    assert new[-1] == old[-1] or changed >= len(new[-1])


# -- streams ---------------------------------------------------------------------------------
@given(st.integers(0, 2**32), st.integers(0, 60_000),
       st.lists(st.integers(1, 20_000), min_size=1, max_size=8),
       st.none() | st.integers(0, 70_000))
def test_stream_chunks_equal_whole_buffer_chunks(seed: int, size: int, sizes: list[int],
                                                 hint: int | None) -> None:
    data = random_data(seed, size)
    readinto, _ = reader(data, sizes)
    with small_reads():
        got = [bytes(ch) for ch in small().chunks(readinto, hint)]
    assert got == split(data, small().boundaries(data))
    assert b"".join(got) == data


@given(st.integers(0, 2**32), st.integers(0, 60_000),
       st.lists(st.integers(1, 20_000), min_size=1, max_size=8))
def test_stream_chunks_with_exact_size_hint(seed: int, size: int, sizes: list[int]) -> None:
    data = random_data(seed, size)
    readinto, _ = reader(data, sizes)
    with small_reads():
        got = [bytes(ch) for ch in small().chunks(readinto, size)]
    assert got == split(data, small().boundaries(data))


def test_stream_buffers_just_above_max(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunker, "READ_SIZE", MAX + 1)
    data = bytes(50_000)  # no cut point at all: every chunk is cut at MAX
    readinto, _ = reader(data, [7000])
    got = [bytes(ch) for ch in small().chunks(readinto)]
    assert [len(c) for c in got] == small().boundaries(data)
    assert all(len(c) == MAX for c in got[:-1])


def test_chunks_stay_valid_after_later_reads() -> None:
    """Chunks may be queued for compression while the stream goes on: never overwritten."""
    data = random_data(3, 50_000)
    readinto, _ = reader(data, [5000])
    with small_reads():
        views = list(small().chunks(readinto))
    assert b"".join(bytes(v) for v in views) == data


def test_empty_and_tiny_streams() -> None:
    for hint in (None, 0, 5):
        readinto, _ = reader(b"", [100])
        assert list(small().chunks(readinto, hint)) == []
        readinto, _ = reader(b"tiny", [1])
        assert [bytes(c) for c in small().chunks(readinto, hint)] == [b"tiny"]


def test_readinto_returning_none_means_eof() -> None:
    got = list(small().chunks(lambda view: None))
    assert got == []


def test_exact_hint_needs_no_extra_read() -> None:
    data = random_data(4, 1000)
    readinto, calls = reader(data, [10**6])
    with small_reads():
        list(small().chunks(readinto, len(data)))
    assert calls == [1000, 0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("hint", [0, 10, 5000])
def test_stream_longer_than_its_size_hint_is_read_in_big_buffers(hint: int) -> None:
    """A file that grows while read (or a /proc file with st_size 0) must not be read
    byte by byte, re-chunking the carried tail for every byte."""
    data = random_data(5, 300_000)
    readinto, calls = reader(data, [10**9])
    start = time.monotonic()
    with small_reads():
        got = [bytes(c) for c in small().chunks(readinto, hint)]
    assert b"".join(got) == data
    assert got == split(data, small().boundaries(data))
    assert len(calls) <= len(data) // (3 * MAX) + 3, f"{len(calls)} reads for {len(data)} bytes"
    assert time.monotonic() - start < 5


def test_default_sizes_over_several_real_buffers() -> None:
    """The real READ_SIZE and chunk sizes, over a stream of 2.5 buffers."""
    data = os.urandom(chunker.READ_SIZE * 2 + chunker.READ_SIZE // 2)
    c = Chunker(KEY)
    readinto, calls = reader(data, [1 << 20])
    lengths = [len(ch) for ch in c.chunks(readinto)]
    assert lengths == c.boundaries(data)
    assert all(spec.CHUNK_MIN <= n <= spec.CHUNK_MAX for n in lengths[:-1])
    assert (c.min_size, c.avg_size, c.max_size) == (spec.CHUNK_MIN, spec.CHUNK_AVG,
                                                    spec.CHUNK_MAX)


def spec_cut(data: bytes, g: list[int], gl: list[int]) -> int:
    """cut() of repofs-format(5), CHUNKING, written out line by line."""
    n = len(data)
    if n <= spec.CHUNK_MIN:
        return n
    end = min(n, spec.CHUNK_MAX)
    center = spec.CHUNK_AVG if n >= spec.CHUNK_AVG else n
    mask_s, mask_l, m64 = 0x0000D91767537000, 0x0000D91707537000, 2**64 - 1
    h = 0
    i = spec.CHUNK_MIN // 2 * 2
    while i < center // 2 * 2:
        h = ((h << 2) + gl[data[i]]) & m64
        if h & (mask_s << 1) == 0:
            return i
        h = (h + g[data[i + 1]]) & m64
        if h & mask_s == 0:
            return i + 1
        i += 2
    while i < end // 2 * 2:
        h = ((h << 2) + gl[data[i]]) & m64
        if h & (mask_l << 1) == 0:
            return i
        h = (h + g[data[i + 1]]) & m64
        if h & mask_l == 0:
            return i + 1
        i += 2
    return end


def test_boundaries_follow_the_format_spec() -> None:
    """An independent reading of the spec's pseudo-code gives the same cuts (real sizes)."""
    from pyfastcdc.py.constants import GEAR  # the public table the spec names

    p, seed = permutation(KEY), gear_seed(KEY)
    g = [GEAR[p[b]] ^ seed for b in range(256)]
    gl = [((GEAR[p[b]] << 1) % 2**64) ^ (seed << 1) for b in range(256)]
    # text-like bytes, then random: both loops of cut() and the MAX cut are reached
    data = random.Random(11).randbytes(3 << 20) + bytes(5 << 20) + os.urandom(2 << 20)
    want, pos = [], 0
    while pos < len(data):
        n = spec_cut(data[pos:pos + spec.CHUNK_MAX], g, gl)
        want.append(n)
        pos += n
    assert Chunker(KEY).boundaries(data) == want
    assert spec.CHUNK_MAX in want  # the run of zeros is cut at MAX


def test_the_compiled_pyfastcdc_is_in_use() -> None:
    """pyfastcdc falls back to pure Python (hundreds of times slower, with only a warning)
    when its extension does not load: that must fail here, not in a user's backup."""
    from pyfastcdc import FastCDC as Loaded

    assert Loaded.__module__ == "pyfastcdc.cy.fastcdc"
