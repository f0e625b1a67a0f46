"""index: sealed index segments (the table they fill is test_blobtable.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs import crypto, spec
from repofs.envelope import HEADER_LEN, new_object, open_object
from repofs.errors import IntegrityError
from repofs.index import decode_segment, encode_segment
from repofs.pack import BlobEntry

PAIR = crypto.X25519Pair(crypto.X25519Pair.generate_private())
SHARED = crypto.random_bytes(32)
NAME = "a" * 64


def cipher():
    return new_object(spec.KIND_INDEX, spec.MODE_SHARED, SHARED, PAIR.public)


def reader_for(data: bytes, reader=None):
    return open_object(data[:HEADER_LEN], spec.KIND_INDEX, NAME, SHARED, PAIR.public, reader)


def decode(data: bytes):
    return decode_segment(reader_for(data), data)


entries = st.builds(
    BlobEntry,
    blob_id=st.binary(min_size=32, max_size=32),
    blob_type=st.sampled_from([spec.BLOB_DATA, spec.BLOB_TREE]),
    nonce=st.integers(0, spec.PACK_MAX_BLOBS - 1),
    offset=st.integers(HEADER_LEN, 2**29),
    length=st.integers(17, 2**29),
    raw_len=st.integers(0, spec.MAX_BLOB_RAW),
)
packs = st.lists(
    st.tuples(st.binary(min_size=32, max_size=32).map(bytes.hex), st.lists(entries, max_size=6)),
    max_size=5,
)


def entry(i: int, t: int = spec.BLOB_DATA) -> BlobEntry:
    return BlobEntry(bytes([i]) * 32, t, i, HEADER_LEN + 100 * i, 100, 50)


# -- segments ----------------------------------------------------------------------------------
@given(packs)
def test_segment_round_trip(ps: list) -> None:
    data = encode_segment(cipher(), ps)
    assert decode(data) == ps


def test_segments_are_shared_mode_and_readable_without_the_private_key() -> None:
    data = encode_segment(cipher(), [("b" * 64, [entry(1)])])
    assert data[:4] == spec.MAGIC and data[5] == spec.KIND_INDEX and data[6] == spec.MODE_SHARED
    assert decode_segment(reader_for(data, reader=None), data) == [("b" * 64, [entry(1)])]


def test_segments_hide_their_content() -> None:
    e = entry(7)
    data = encode_segment(cipher(), [("c" * 64, [e])])
    assert e.blob_id not in data and bytes.fromhex("c" * 64) not in data


def test_segment_under_another_kind_is_refused() -> None:
    data = encode_segment(cipher(), [("b" * 64, [entry(1)])])
    with pytest.raises(IntegrityError):
        open_object(data[:HEADER_LEN], spec.KIND_SNAPSHOT, NAME, SHARED, PAIR.public, PAIR)


@given(st.data(), packs)
def test_mutated_segments_are_refused(mutate, data: st.DataObject, ps: list) -> None:
    good = encode_segment(cipher(), ps)
    bad = data.draw(mutate(good))
    with pytest.raises(IntegrityError, match=NAME):
        decode(bad)


@given(st.binary(max_size=300))
def test_random_segments_are_refused(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        decode(spec.MAGIC + bytes([1, spec.KIND_INDEX, spec.MODE_SHARED, 0]) + data)


# -- hostile but authenticated records (every key holds the shared key) --------------------------
def sealed(record: object) -> bytes:
    c = cipher()
    return c.header + c.seal(0, spec.pack(record), b"index")


def sealed_raw(plain: bytes) -> bytes:
    c = cipher()
    return c.header + c.seal(0, plain, b"index")


GOOD_ROW = [b"x" * 32, spec.BLOB_DATA, 0, HEADER_LEN, 100, 1000]


@pytest.mark.parametrize("record", [
    None, [], "index", {}, {"v": 2, "packs": []}, {"v": "1", "packs": []}, {"v": True, "packs": []},
    {"v": 1}, {"v": 1, "packs": {}}, {"v": 1, "packs": [None]}, {"v": 1, "packs": [[]]},
    {"v": 1, "packs": [{"id": b"x" * 32}]}, {"v": 1, "packs": [{"blobs": []}]},
    {"v": 1, "packs": [{"id": b"x" * 31, "blobs": []}]},
    {"v": 1, "packs": [{"id": "x" * 32, "blobs": []}]},
    {"v": 1, "packs": [{"id": b"x" * 32, "blobs": [GOOD_ROW[:5]]}]},
    {"v": 1, "packs": [{"id": b"x" * 32, "blobs": [[*GOOD_ROW[:4], 2**40, 1]]}]},
    {"v": 1, "packs": [{"id": b"x" * 32, "blobs": [GOOD_ROW] * (spec.PACK_MAX_BLOBS + 1)}]},
    {"v": 1, "packs": [{"id": b"x" * 32, "blobs": "rows"}]},
])
def test_hostile_segment_records(record: object) -> None:
    with pytest.raises(IntegrityError, match="index segment " + NAME):
        decode(sealed(record))


def test_not_msgpack_behind_a_valid_tag() -> None:
    for plain in (b"", b"\xc1", b"\x91", b"\x80\x00"):
        with pytest.raises(IntegrityError):
            decode(sealed_raw(plain))


leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40)
        | st.binary(min_size=32, max_size=32) | st.text(max_size=5))
tree = st.recursive(leaf, lambda inner: st.lists(inner, max_size=6)
                    | st.dictionaries(st.sampled_from(["v", "packs", "id", "blobs"]), inner,
                                      max_size=4), max_leaves=30)


@given(tree)
def test_any_authenticated_record_gives_entries_or_integrity_error(record: object) -> None:
    try:
        out = decode(sealed(record))
    except IntegrityError:
        return
    for pack, es in out:
        assert len(pack) == 64
        assert all(isinstance(e, BlobEntry) for e in es)
