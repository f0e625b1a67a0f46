"""compression: zstd or none, and decompression bounded by the recorded size."""

from __future__ import annotations

import os
import threading
import tracemalloc

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from repofs import compression
from repofs.compression import Codec, decompress
from repofs.spec import CODEC_NONE, CODEC_ZSTD

compressible = st.builds(lambda unit, n: unit * n, st.binary(min_size=1, max_size=20),
                         st.integers(0, 3000))


@given(st.binary(max_size=4000) | compressible, st.integers(1, 19))
def test_zstd_round_trip(data: bytes, level: int) -> None:
    codec_id, payload = Codec("zstd", level).compress(data)
    assert codec_id in (CODEC_NONE, CODEC_ZSTD)
    if codec_id == CODEC_ZSTD:
        assert len(payload) < len(data)
    else:
        assert bytes(payload) == data
    assert decompress(codec_id, payload, len(data)) == data
    assert decompress(codec_id, memoryview(bytes(payload)), len(data)) == data


@given(st.binary(max_size=2000))
def test_none_round_trip(data: bytes) -> None:
    codec_id, payload = Codec("none").compress(data)
    assert codec_id == CODEC_NONE and bytes(payload) == data
    assert decompress(CODEC_NONE, payload, len(data)) == data


def test_compressible_data_is_compressed() -> None:
    codec_id, payload = Codec().compress(b"a" * 100_000)
    assert codec_id == CODEC_ZSTD and len(payload) < 1000


def test_incompressible_data_is_stored_as_is() -> None:
    data = os.urandom(10_000)
    codec_id, payload = Codec().compress(memoryview(data))
    assert codec_id == CODEC_NONE and bytes(payload) == data
    assert Codec().compress(b"") == (CODEC_NONE, b"")


def test_frames_record_their_size() -> None:
    _, payload = Codec().compress(b"b" * 5000)
    assert zstandard.frame_content_size(payload) == 5000


@pytest.mark.parametrize("spec,expect", [
    ("zstd", ("zstd", 3)), ("zstd,1", ("zstd", 1)), ("zstd,22", ("zstd", 22)),
    ("none", ("none", 3)),
])
def test_parse(spec: str, expect: tuple[str, int]) -> None:
    c = Codec.parse(spec)
    assert (c.name, c.level) == expect


@pytest.mark.parametrize("spec", ["", "zstd,0", "zstd,23", "zstd,x", "zstd,-1", "lz4", "gzip,6",
                                  "ZSTD", "zstd,3,4"])
def test_parse_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="compression"):
        Codec.parse(spec)


def test_compressors_are_per_thread() -> None:
    data = b"thread data " * 1000
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for level in (1, 3, 9):
                codec_id, payload = Codec("zstd", level).compress(data)
                assert decompress(codec_id, payload, len(data)) == data
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# -- hostile payloads -----------------------------------------------------------------------
def test_wrong_size_is_refused() -> None:
    codec_id, payload = Codec().compress(b"c" * 1000)
    for n in (0, 999, 1001):
        with pytest.raises(ValueError):
            decompress(codec_id, payload, n)
    with pytest.raises(ValueError, match="differs"):
        decompress(CODEC_NONE, b"abc", 2)


@pytest.mark.parametrize("codec_id", [2, 3, 255, -1])
def test_unknown_codec(codec_id: int) -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        decompress(codec_id, b"", 0)


def test_frame_promising_more_than_recorded_is_refused_before_allocating() -> None:
    big = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(512 * 1024 * 1024))
    assert len(big) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="larger than the recorded"):
            decompress(CODEC_ZSTD, big, 4 * 1024 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


def test_frame_header_lying_about_its_size() -> None:
    """A header that promises a huge size on a tiny frame: refused, nothing allocated."""
    honest = zstandard.ZstdCompressor(write_content_size=True).compress(b"d" * 100)
    params = zstandard.get_frame_parameters(honest)
    assert params.content_size == 100
    # Frame header descriptor with an 8-byte content size field (FCS flag = 3, single segment).
    lying = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + (2**40).to_bytes(8, "little") + b"\x01\x00\x00"
    assert zstandard.frame_content_size(lying) == 2**40
    with pytest.raises(ValueError, match="larger than the recorded"):
        decompress(CODEC_ZSTD, lying, 1000)


def test_frame_without_size_is_bounded_by_the_recorded_size() -> None:
    unknown = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(50_000_000))
    assert zstandard.frame_content_size(unknown) == -1
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            decompress(CODEC_ZSTD, unknown, 1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    small = zstandard.ZstdCompressor(write_content_size=False).compress(b"e" * 3000)
    assert decompress(CODEC_ZSTD, small, 3000) == b"e" * 3000


@given(st.binary(max_size=500), st.integers(0, 1 << 20))
def test_garbage_gives_value_error_only(payload: bytes, raw_len: int) -> None:
    try:
        out = decompress(CODEC_ZSTD, payload, raw_len)
    except ValueError:
        return
    assert len(out) == raw_len


@given(st.data(), compressible.filter(lambda d: len(d) > 100))
def test_mutated_frames_give_value_error_or_exact_size(mutate, data: st.DataObject,
                                                      raw: bytes) -> None:
    codec_id, payload = Codec().compress(raw)
    if codec_id != CODEC_ZSTD:
        return
    bad = data.draw(mutate(bytes(payload)))
    try:
        out = decompress(CODEC_ZSTD, bad, len(raw))
    except ValueError:
        return
    assert len(out) == len(raw)


def test_module_owns_level_default() -> None:
    assert compression.DEFAULT_LEVEL == Codec().level == 3


@pytest.mark.parametrize("spec", ["zstd,", "none,3", "none,", " zstd", "zstd ", "zstd, 3",
                                  "zstd,+3", "zstd,3 ", "zstd,0x3", "zstd,٣", "zstd,1_0",
                                  "zstd,003", "none\n"])
def test_parse_rejects_what_int_or_partition_would_let_through(spec: str) -> None:
    with pytest.raises(ValueError, match="compression"):
        Codec.parse(spec)


@given(st.text(max_size=12))
def test_parse_accepts_exactly_the_documented_forms(spec: str) -> None:
    """zstd, zstd,N (N in 1..22 as ASCII digits, no leading zero needed but at most two
    digits), none: everything else is a ValueError that names --compression."""
    documented = {"zstd": ("zstd", 3), "none": ("none", 3)}
    documented.update({f"zstd,{n}": ("zstd", n) for n in range(1, 23)})
    documented.update({f"zstd,0{n}": ("zstd", n) for n in range(1, 10)})
    if spec in documented:
        c = Codec.parse(spec)
        assert (c.name, c.level) == documented[spec]
    else:
        with pytest.raises(ValueError, match="compression"):
            Codec.parse(spec)


@given(st.sampled_from(["zstd", "none"]), st.text(alphabet="0123456789,+- x", max_size=4))
def test_parse_of_near_misses(name: str, tail: str) -> None:
    spec = f"{name},{tail}" if tail else name
    ok = tail == "" or (name == "zstd" and tail.isascii() and tail.isdigit()
                        and len(tail) <= 2 and 1 <= int(tail) <= 22)
    if ok:
        c = Codec.parse(spec)
        assert (c.name, c.level) == (name, int(tail) if tail else 3)
    else:
        with pytest.raises(ValueError, match="compression"):
            Codec.parse(spec)
