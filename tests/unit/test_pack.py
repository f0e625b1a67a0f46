"""pack: shuffled, padded, sealed blobs with a sealed trailer; hostile packs."""

from __future__ import annotations

import dataclasses
import struct

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from repofs import crypto, spec
from repofs.compression import Codec
from repofs.envelope import (
    HEADER_LEN,
    CannotRead,
    new_object,
    open_object,
    open_trailer_cipher,
    trailer_cipher,
)
from repofs.errors import IntegrityError
from repofs.pack import (
    BlobEntry,
    PackBuilder,
    blob_aad,
    entry_from_list,
    open_blob,
    padme,
    read_trailer,
)

PAIR = crypto.X25519Pair(crypto.X25519Pair.generate_private())
SHARED = crypto.random_bytes(32)
ZSTD = Codec("zstd", 3)
NONE = Codec("none")


def cipher():
    return new_object(spec.KIND_PACK, spec.MODE_SEALED, SHARED, PAIR.public)


def reader_for(pack: bytes, name: str = "p" * 64):
    return open_object(pack[:HEADER_LEN], spec.KIND_PACK, name, SHARED, PAIR.public, PAIR)


def build(blobs: list[tuple[bytes, int, bytes]], codec: Codec = ZSTD):
    """Seal (id, type, plaintext) blobs into a pack: (pack bytes, entries)."""
    b = PackBuilder()
    for blob_id, blob_type, data in blobs:
        c, payload = codec.compress(data)
        b.add(blob_id, blob_type, c, bytes(payload), len(data))
    return b.seal(cipher())


def blob_list(n: int, size: int = 100) -> list[tuple[bytes, int, bytes]]:
    return [(crypto.keyed_id(b"k" * 32, b"%d" % i), spec.BLOB_DATA, bytes([i % 256]) * size)
            for i in range(n)]


blobs_strategy = st.lists(
    st.tuples(st.binary(min_size=32, max_size=32), st.sampled_from([spec.BLOB_DATA,
                                                                      spec.BLOB_TREE]),
              st.binary(max_size=600) | st.builds(lambda b, n: b * n, st.binary(min_size=1,
                                                                             max_size=8),
                                                  st.integers(0, 400))),
    max_size=12, unique_by=lambda t: t[0],
)


# -- PADME -------------------------------------------------------------------------------------
def test_padme_known_values() -> None:
    assert [padme(n) for n in range(0, 10)] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]
    assert padme(1000) == 1024  # E = 9, S = 4: the low 5 bits are rounded up
    assert padme(2**20) == 2**20
    assert padme(2**20 + 1) == 2**20 + 2**15  # E = 20, S = 5: low 15 bits


@given(st.integers(0, 2**40))
def test_padme_properties(n: int) -> None:
    p = padme(n)
    assert p >= n
    assert padme(p) == p  # padded sizes are fixed points
    if n >= 2:
        assert p - n <= n * 0.12  # PADME's overhead stays under 12 %
        e = n.bit_length() - 1
        s = e.bit_length()
        assert p % (1 << (e - s)) == 0  # the low e - s bits carry nothing


@given(st.integers(0, 2**30), st.integers(0, 2**30))
def test_padme_is_monotonic(a: int, b: int) -> None:
    if a <= b:
        assert padme(a) <= padme(b)


def test_padme_leaks_few_distinct_sizes() -> None:
    sizes = {padme(n) for n in range(2**20, 2**21)}
    assert len(sizes) == 33  # multiples of 2**15 from 2**20 to 2**21: about 5 bits


# -- builder -----------------------------------------------------------------------------------
def test_builder_bookkeeping(monkeypatch: pytest.MonkeyPatch) -> None:
    b = PackBuilder()
    assert len(b) == 0 and b.size == 0 and not b.full()
    b.add(b"a" * 32, spec.BLOB_DATA, spec.CODEC_NONE, b"12345", 5)
    assert len(b) == 1 and b.size == 5 and b"a" * 32 in b and b"b" * 32 not in b
    monkeypatch.setattr(spec, "PACK_TARGET", 10)
    assert not b.full()
    b.add(b"b" * 32, spec.BLOB_TREE, spec.CODEC_NONE, b"12345", 5)
    assert b.full()
    monkeypatch.setattr(spec, "PACK_TARGET", 10**9)
    monkeypatch.setattr(spec, "PACK_MAX_BLOBS", 2)
    assert b.full()


# -- round trips ---------------------------------------------------------------------------------
@settings(max_examples=60)
@given(blobs_strategy, st.sampled_from([ZSTD, NONE]))
def test_seal_read_trailer_open_blob_round_trip(blobs: list, codec: Codec) -> None:
    pack, entries = build(blobs, codec)
    r = reader_for(pack)
    assert read_trailer(r, pack) == entries
    by_id = {e.blob_id: e for e in entries}
    assert set(by_id) == {b[0] for b in blobs}
    for blob_id, blob_type, data in blobs:
        e = by_id[blob_id]
        assert e.blob_type == blob_type and e.raw_len == len(data)
        ct = pack[e.offset : e.offset + e.length]
        assert open_blob(r, e, ct) == data


@given(blobs_strategy)
def test_pack_layout(blobs: list) -> None:
    pack, entries = build(blobs)
    assert pack[:4] == spec.MAGIC and pack[5] == spec.KIND_PACK and pack[6] == spec.MODE_SEALED
    offset = HEADER_LEN
    for e in sorted(entries, key=lambda e: e.offset):
        assert e.offset == offset
        offset += e.length
    (tlen,) = struct.unpack(">I", pack[-4:])
    assert offset + tlen + 4 == len(pack)
    assert sorted(e.nonce for e in entries) == list(range(len(entries)))
    assert all(e.nonce < spec.TRAILER_NONCE for e in entries)


@given(st.binary(max_size=5000))
def test_stored_sizes_are_padded(data: bytes) -> None:
    pack, [e] = build([(b"i" * 32, spec.BLOB_DATA, data)], NONE)
    assert e.length == padme(5 + len(data)) + crypto.TAG_LEN


def test_blobs_are_shuffled() -> None:
    blobs = blob_list(30)
    orders = set()
    for _ in range(3):
        _, entries = build(blobs)
        order = tuple(e.blob_id for e in sorted(entries, key=lambda e: e.offset))
        assert order != tuple(b[0] for b in blobs)
        orders.add(order)
    assert len(orders) == 3


def test_empty_pack() -> None:
    pack, entries = build([])
    assert entries == [] and read_trailer(reader_for(pack), pack) == []


def test_blob_aad_binds_type_and_id() -> None:
    ids = [b"a" * 32, b"b" * 32]
    aads = {blob_aad(t, i) for t in (spec.BLOB_DATA, spec.BLOB_TREE) for i in ids}
    assert len(aads) == 4


def test_entry_list_round_trip() -> None:
    e = BlobEntry(b"x" * 32, spec.BLOB_TREE, 7, 40, 100, 1000)
    assert entry_from_list(e.to_list(), "pack", "p", 10**6) == e


# -- tampering ------------------------------------------------------------------------------------
def test_swapped_blobs_are_detected() -> None:
    blobs = blob_list(2, size=300)
    pack, entries = build(blobs, NONE)
    a, b = entries
    assert a.length == b.length
    r = reader_for(pack)
    ct_b = pack[b.offset : b.offset + b.length]
    with pytest.raises(IntegrityError, match="authentication failed"):
        open_blob(r, a, ct_b)
    # even with b's nonce: the AAD binds the id
    with pytest.raises(IntegrityError, match="authentication failed"):
        open_blob(r, dataclasses.replace(a, nonce=b.nonce), ct_b)


def test_relabelled_entries_are_detected() -> None:
    pack, [e] = build([(b"i" * 32, spec.BLOB_DATA, b"data" * 50)])
    r = reader_for(pack)
    ct = pack[e.offset : e.offset + e.length]
    for bad in (dataclasses.replace(e, blob_type=spec.BLOB_TREE),
                dataclasses.replace(e, blob_id=b"j" * 32),
                dataclasses.replace(e, nonce=e.nonce + 1)):
        with pytest.raises(IntegrityError, match="pack " + "p" * 64):
            open_blob(r, bad, ct)
    with pytest.raises(IntegrityError, match="truncated"):
        open_blob(r, e, ct[:-1])
    with pytest.raises(IntegrityError, match="recorded size"):
        open_blob(r, dataclasses.replace(e, raw_len=e.raw_len + 1), ct)


def test_blob_from_another_pack_is_detected() -> None:
    blobs = blob_list(1)
    pack1, [e1] = build(blobs)
    pack2, [e2] = build(blobs)
    with pytest.raises(IntegrityError):
        open_blob(reader_for(pack2), e2, pack1[e1.offset : e1.offset + e1.length])


@settings(max_examples=150)
@given(st.data())
def test_mutated_packs_are_detected_and_never_give_wrong_bytes(mutate,
                                                               data: st.DataObject) -> None:
    blobs = blob_list(4, size=64)
    pack, entries = build(blobs)
    bad = data.draw(mutate(pack))
    expected = {b[0]: b[2] for b in blobs}
    try:
        r = reader_for(bad)
        got = read_trailer(r, bad)
        assert got == entries  # the trailer is authenticated: same entries or an error
        for e in got:
            assert open_blob(r, e, bad[e.offset : e.offset + e.length]) == expected[e.blob_id]
    except IntegrityError:
        return
    pytest.fail("a mutated pack read back without an error")


@pytest.mark.parametrize("cut", [0, 1, HEADER_LEN, HEADER_LEN + 3])
def test_truncated_packs(cut: int) -> None:
    pack, _ = build(blob_list(1))
    with pytest.raises(IntegrityError, match="truncated"):
        read_trailer(reader_for(pack), pack[:cut] if cut >= HEADER_LEN else pack[:HEADER_LEN])
    with pytest.raises(IntegrityError):
        read_trailer(reader_for(pack), pack[: HEADER_LEN + 4 + cut])


def test_bytes_between_blobs_and_trailer_are_detected() -> None:
    """The trailer still opens and every blob still reads: only the layout shows the gap."""
    pack, entries = build(blob_list(3))
    end = max(e.offset + e.length for e in entries)
    for bad in (pack[:end] + b"\x00" + pack[end:], pack[:HEADER_LEN] + b"junk" + pack[HEADER_LEN:]):
        with pytest.raises(IntegrityError, match="do not fill the pack"):
            read_trailer(reader_for(pack), bad)


def test_overlapping_or_sparse_entries_are_refused() -> None:
    c = cipher()
    body = bytes(200)
    overlapping = [[b"a" * 32, 1, 0, HEADER_LEN, 100, 5],
                   [b"b" * 32, 1, 1, HEADER_LEN + 50, 150, 5]]
    for rows in (overlapping, [[b"a" * 32, 1, 0, HEADER_LEN + 100, 100, 5]],
                 [[b"a" * 32, 1, 0, HEADER_LEN, 100, 5]]):
        trailer = c.seal(spec.TRAILER_NONCE, spec.pack(rows), b"trailer")
        pack = c.header + body + trailer + struct.pack(">I", len(trailer))
        with pytest.raises(IntegrityError, match="do not fill the pack"):
            read_trailer(c, pack)


def test_trailer_length_out_of_range() -> None:
    pack, _ = build(blob_list(1))
    for tlen in (2**32 - 1, len(pack), len(pack) - HEADER_LEN - 3):
        bad = pack[:-4] + struct.pack(">I", tlen)
        with pytest.raises(IntegrityError, match="bad trailer length"):
            read_trailer(reader_for(pack), bad)


# -- hostile but authenticated content (a writer's key can seal anything) --------------------------
def sealed_trailer_pack(plain: bytes) -> tuple[bytes, object]:
    c = cipher()
    body = bytes(1000)
    trailer = c.seal(spec.TRAILER_NONCE, plain, b"trailer")
    return c.header + body + trailer + struct.pack(">I", len(trailer)), c


@given(st.binary(max_size=300))
def test_authenticated_garbage_trailers(plain: bytes) -> None:
    pack, c = sealed_trailer_pack(plain)
    try:
        entries = read_trailer(c, pack)
    except IntegrityError:
        return
    assert all(e.offset + e.length <= len(pack) for e in entries)


row_items = st.one_of(
    st.binary(min_size=32, max_size=32), st.binary(max_size=40), st.none(), st.booleans(),
    st.integers(-(2**63), 2**64 - 1), st.integers(0, 70000), st.text(max_size=4),
)
rows = st.lists(row_items, max_size=7) | row_items


@given(st.lists(rows, max_size=5))
def test_authenticated_hostile_trailer_rows(table: list) -> None:
    pack, c = sealed_trailer_pack(spec.pack(table))
    try:
        entries = read_trailer(c, pack)
    except IntegrityError:
        return
    start = len(pack) - 4 - struct.unpack(">I", pack[-4:])[0]
    for e in entries:
        assert HEADER_LEN <= e.offset and e.offset + e.length <= start
        assert e.blob_type in spec.BLOB_NAMES and 0 <= e.nonce < spec.PACK_MAX_BLOBS


@pytest.mark.parametrize("trailer", [{"a": 1}, b"list", 5, None, [[1, 2]], [None]])
def test_trailer_must_be_a_list_of_rows(trailer: object) -> None:
    pack, c = sealed_trailer_pack(spec.pack(trailer))
    with pytest.raises(IntegrityError):
        read_trailer(c, pack)


GOOD_ROW = [b"x" * 32, spec.BLOB_DATA, 0, HEADER_LEN, 100, 1000]


def row(**kw: object) -> list:
    names = ["id", "type", "nonce", "offset", "length", "raw_len"]
    return [kw.get(n, v) for n, v in zip(names, GOOD_ROW, strict=True)]


@pytest.mark.parametrize("bad", [
    row(id=b"x" * 31), row(id="x" * 32), row(type=0), row(type=3), row(type=True),
    row(nonce=-1), row(nonce=spec.PACK_MAX_BLOBS), row(nonce=spec.TRAILER_NONCE),
    row(offset=0), row(offset=HEADER_LEN - 1), row(length=16), row(length=0),
    row(length=10**6 + 1), row(offset=10**6 - 50), row(raw_len=-1),
    row(raw_len=spec.MAX_BLOB_RAW + 1), row(raw_len=1.5), GOOD_ROW[:5], [*GOOD_ROW, 0],
    tuple(GOOD_ROW), "row", None,
])
def test_entry_rows_out_of_range(bad: object) -> None:
    with pytest.raises(IntegrityError, match="index segment s1"):
        entry_from_list(bad, "index segment", "s1", 10**6)


@given(rows)
def test_entry_from_list_only_integrity_error(r: object) -> None:
    try:
        e = entry_from_list(r, "pack", "p", 10**6)
    except IntegrityError:
        return
    assert e.offset >= HEADER_LEN and e.offset + e.length <= 10**6


def sealed_blob(plain: bytes, raw_len: int):
    c = cipher()
    blob_id = b"b" * 32
    ct = c.seal(0, plain, blob_aad(spec.BLOB_DATA, blob_id))
    return c, BlobEntry(blob_id, spec.BLOB_DATA, 0, HEADER_LEN, len(ct), raw_len), ct


@given(st.binary(max_size=300), st.integers(0, 5000))
def test_authenticated_garbage_blobs(plain: bytes, raw_len: int) -> None:
    c, e, ct = sealed_blob(plain, raw_len)
    try:
        out = open_blob(c, e, ct)
    except IntegrityError:
        return
    assert len(out) == raw_len


@pytest.mark.parametrize("plain,raw_len,match", [
    (b"", 0, "too short"),
    (b"\x00\x00\x00\x00", 0, "too short"),
    (b"\x00\x00\x00\x00\x09abc", 3, "bad length"),
    (b"\x07\x00\x00\x00\x03abc", 3, "unknown codec"),
    (b"\x00\x00\x00\x00\x03abc", 4, "recorded size"),
    (b"\x01\x00\x00\x00\x03abc", 3, "zstd"),
])
def test_malformed_blob_plaintexts(plain: bytes, raw_len: int, match: str) -> None:
    c, e, ct = sealed_blob(plain, raw_len)
    with pytest.raises(IntegrityError, match=match):
        open_blob(c, e, ct)


def test_zstd_bomb_inside_an_authenticated_blob() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(64 * 1024 * 1024))
    plain = struct.pack(">BI", spec.CODEC_ZSTD, len(frame)) + frame
    c, e, ct = sealed_blob(plain, 1024)
    with pytest.raises(IntegrityError, match="larger than the recorded size"):
        open_blob(c, e, ct)


def test_padding_is_ignored_but_authenticated() -> None:
    plain = struct.pack(">BI", spec.CODEC_NONE, 3) + b"abc" + b"\xff" * 20
    c, e, ct = sealed_blob(plain, 3)
    assert open_blob(c, e, ct) == b"abc"
    flipped = bytearray(ct)
    flipped[10] ^= 1
    with pytest.raises(IntegrityError, match="authentication failed"):
        open_blob(c, e, bytes(flipped))


def build_form(blobs: list[tuple[bytes, int, bytes]], form: int) -> tuple[bytes, list[BlobEntry]]:
    """A pack whose trailer has ``form`` (header byte 7), as a repository of that format
    writes it."""
    b = PackBuilder()
    for blob_id, blob_type, data in blobs:
        b.add(blob_id, blob_type, spec.CODEC_NONE, data, len(data))
    c = new_object(spec.KIND_PACK, spec.MODE_SEALED, SHARED, PAIR.public, form)
    return b.seal(c, trailer_cipher(c, SHARED))


@pytest.mark.parametrize("form", spec.TRAILER_FORMS)
def test_both_trailer_forms_round_trip(form: int) -> None:
    pack, entries = build_form(blob_list(5), form)
    assert pack[7] == form
    t = open_trailer_cipher(pack[:HEADER_LEN], "p", SHARED, PAIR.public, PAIR)
    assert read_trailer(t, pack) == entries
    r = reader_for(pack)
    assert {open_blob(r, e, pack[e.offset:e.offset + e.length]) for e in entries} == \
        {d for _, _, d in blob_list(5)}
    # the pack's own cipher opens a form 1 trailer only through trailer_cipher
    if form == spec.TRAILER_SHARED:
        with pytest.raises(IntegrityError, match="authentication failed"):
            read_trailer(r, pack)


def test_a_write_only_key_reads_a_form_1_trailer_but_no_blob() -> None:
    pack, entries = build_form(blob_list(3), spec.TRAILER_SHARED)
    t = open_trailer_cipher(pack[:HEADER_LEN], "p", SHARED, PAIR.public, None)
    assert read_trailer(t, pack) == entries
    e = entries[0]
    with pytest.raises(IntegrityError, match="authentication failed"):
        open_blob(t, e, pack[e.offset:e.offset + e.length])
    with pytest.raises(CannotRead):
        open_object(pack[:HEADER_LEN], spec.KIND_PACK, "p", SHARED, PAIR.public, None)
    old, _ = build_form(blob_list(3), spec.TRAILER_SEALED)
    with pytest.raises(CannotRead):
        open_trailer_cipher(old[:HEADER_LEN], "p", SHARED, PAIR.public, None)


def test_a_form_1_trailer_tampered_or_swapped_fails() -> None:
    pack, _ = build_form(blob_list(3), spec.TRAILER_SHARED)
    other, _ = build_form(blob_list(3), spec.TRAILER_SHARED)
    t = open_trailer_cipher(pack[:HEADER_LEN], "p", SHARED, PAIR.public, None)
    (tlen,) = struct.unpack(">I", pack[-4:])
    flipped = bytearray(pack)
    flipped[len(pack) - 5] ^= 1
    with pytest.raises(IntegrityError, match="authentication failed"):
        read_trailer(t, bytes(flipped))
    # the other pack's trailer (same blob count and sizes, so the same length) moved here
    swapped = pack[:len(pack) - 4 - tlen] + other[len(other) - 4 - tlen:]
    assert len(swapped) == len(pack)
    with pytest.raises(IntegrityError, match="authentication failed"):
        read_trailer(t, swapped)
    relabelled = pack[:7] + bytes([spec.TRAILER_SEALED]) + pack[8:]  # form byte changed
    with pytest.raises(IntegrityError, match="authentication failed"):
        read_trailer(open_trailer_cipher(relabelled[:HEADER_LEN], "p", SHARED, PAIR.public,
                                         PAIR), relabelled)
