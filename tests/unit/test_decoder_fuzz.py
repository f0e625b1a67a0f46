"""Every decoder of bytes from storage or the wire, fed random and mutated input: each
either returns a record that keeps the invariants its readers rely on, or raises its
module's documented error (IntegrityError; BadKeyFile for key files; ProtocolError for
frames; CannotRead for a sealed object a key cannot open). Never another exception:
that would be a crash (an internal error) where the rule is "leave it out, name it".

Hostile plaintext is sealed with real keys where the decoder sits behind AEAD: a writer
key can seal anything, so authentication is no defence for what comes after it."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from repofs import crypto, index, keys, model, pack, protocol, signed, spec
from repofs.envelope import HEADER_LEN, CannotRead, new_object, open_object
from repofs.errors import BadKeyFile, IntegrityError
from repofs.model import (
    DIR,
    FILE,
    MAX_FILE_SIZE,
    Entry,
    Part,
    SnapshotBody,
    SnapshotHead,
    encode_body,
    encode_head,
    encode_tree,
)
from tests.conftest import mutations

PAIR = crypto.X25519Pair(crypto.X25519Pair.generate_private())
SHARED = crypto.random_bytes(32)
REPO_ID = b"\x42" * 32
ADMIN = keys.restrict(keys.generate(REPO_ID), keys.CAP_ADMIN)

# a share of the profile's examples for the tests whose values are slow to draw
FEWER = settings(max_examples=max(40, (settings.default.max_examples or 100) * 2 // 5))

# msgpack values of every kind a hostile writer can encode, nested
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
    st.binary(max_size=40), st.binary(min_size=32, max_size=32), st.text(max_size=8),
    st.sampled_from(["f", "d", "l", "b", "c", "p", "x"]),
    st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1, -1, spec.CHUNK_MAX,
                     spec.CHUNK_MAX + 1]),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
        st.sampled_from(["n", "t", "m", "u", "g", "mt", "ct", "s", "c", "sub", "tg", "rd",
                         "x", "hl", "un", "gn", "v", "e", "id", "blobs", "packs"]) | scalars,
        inner, max_size=8),
    max_leaves=30)


def only(errors: tuple[type[BaseException], ...], decode: Callable[[], Any]) -> Any:
    """decode(), or None if it raised one of ``errors``; anything else fails the test."""
    try:
        return decode()
    except errors:
        return None


# -- spec --------------------------------------------------------------------------------
@given(st.binary(max_size=200))
def test_unpack_of_any_bytes(data: bytes) -> None:
    only((IntegrityError,), lambda: spec.unpack(data, "x", "y"))


# -- trees ---------------------------------------------------------------------------------
def _check_entry(e: Entry) -> None:
    assert e.name and e.name not in (b".", b"..") and b"/" not in e.name \
        and b"\0" not in e.name and len(e.name) <= 255
    assert e.type in model.TYPES
    assert 0 <= e.mode <= 0o7777 and 0 <= e.uid < 2**32 and 0 <= e.gid < 2**32
    assert -(2**63) <= e.mtime_ns < 2**63 and -(2**63) <= e.ctime_ns < 2**63
    if e.type == FILE:
        assert 0 <= e.size <= MAX_FILE_SIZE  # fits off_t
        assert sum(p.size for p in e.parts) == e.size
        for p in e.parts:
            assert 0 <= p.size <= (spec.CHUNK_MAX if p.chunk_id else MAX_FILE_SIZE)
            assert p.chunk_id is None or len(p.chunk_id) == 32
    else:
        assert e.size == 0 and e.parts == ()
    assert (e.subtree is not None and len(e.subtree) == 32) == (e.type == DIR)


def _check_tree(entries: list[Entry]) -> None:
    for e in entries:
        _check_entry(e)
    names = [e.name for e in entries]
    assert names == sorted(set(names))


def _tree(data: bytes) -> None:
    for left_out in (None, []):
        got = only((IntegrityError,), lambda lo=left_out: model.decode_tree(data, "t", lo))
        if got is not None:
            _check_tree(got)


@given(st.lists(values, max_size=4), st.integers(0, 2))
def test_decode_tree_of_hostile_entries(raw_entries: list[Any], v: int) -> None:
    _tree(spec.pack({"v": v, "e": raw_entries}))


def _field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, sometimes a hostile one: finds the one bad field."""
    return st.one_of(valid, valid, valid, scalars)


sizes = st.sampled_from([0, 1, 5, spec.CHUNK_MAX, spec.CHUNK_MAX + 1, 2**62, 2**63 - 1, 2**63,
                         2**64 - 1, -1])
parts = st.lists(st.tuples(st.none() | st.just(b"\x01" * 32), sizes).map(list), max_size=3)
entry_dicts = st.fixed_dictionaries(
    {"n": _field(st.sampled_from([b"a", b"b", b"c"])), "t": _field(st.sampled_from(model.TYPES)),
     "m": _field(st.integers(0, 0o7777)), "u": _field(st.integers(0, 2**32 - 1)),
     "g": _field(st.integers(0, 2**32 - 1)), "mt": _field(st.integers(-(2**63), 2**63 - 1)),
     "ct": _field(st.integers(-(2**63), 2**63 - 1))},
    optional={"s": _field(sizes), "c": _field(parts), "sub": _field(st.just(b"\x02" * 32)),
              "tg": _field(st.binary(min_size=1, max_size=8)), "rd": _field(sizes),
              "hl": _field(sizes), "un": _field(st.text(max_size=4)),
              "x": _field(st.lists(st.lists(st.binary(max_size=4), min_size=2, max_size=2),
                                   max_size=2))})


@st.composite
def file_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """File entries whose size is the sum of their parts more often than not: the sizes
    alone then decide (2^63 must not pass: no off_t holds it)."""
    ps = draw(parts)
    total = min(sum(p[1] for p in ps), 2**64 - 2)  # msgpack holds no more
    return {"n": b"f", "t": "f", "m": 0o644, "u": 0, "g": 0, "mt": 0, "ct": 0,
            "s": draw(st.sampled_from([total, total, total + 1]) | sizes), "c": ps}


@given(st.lists(entry_dicts | file_dicts(), max_size=4))
def test_decode_tree_of_nearly_valid_entries(raw_entries: list[Any]) -> None:
    _tree(spec.pack({"v": spec.FORMAT_VERSION, "e": raw_entries}))


@given(values)
def test_decode_tree_of_any_record(record: Any) -> None:
    _tree(spec.pack(record))


GOOD_TREE = encode_tree([
    Entry(b"a", FILE, 0o644, 0, 0, 1, 2, size=7, parts=(Part(b"\x01" * 32, 5), Part(None, 2))),
    Entry(b"b", DIR, 0o755, 0, 0, 1, 2, subtree=b"\x02" * 32),
    Entry(b"c", "l", 0o777, 0, 0, 1, 2, target=b"a"),
])


@given(st.data())
def test_decode_tree_of_mutated_trees(data: st.DataObject) -> None:
    _tree(data.draw(mutations(GOOD_TREE)))


# -- snapshots -------------------------------------------------------------------------------
HEAD = SnapshotHead(3, (b"\x01" * 32,), 10**18)
BODY = SnapshotBody(b"\x03" * 32, (b"/home",), "h", "u", ("t",), "n", {0: 2}, {"files": 1})


@given(st.data())
def test_decode_head_and_body_of_mutated_records(data: st.DataObject) -> None:
    head = only((IntegrityError,), lambda: model.decode_head(
        data.draw(mutations(encode_head(HEAD, b"sealed"))), "s"))
    if head is not None:
        assert 0 <= head[0].seq <= 2**62 and 0 <= head[0].time_ns < 2**63
    body = only((IntegrityError,), lambda: model.decode_body(
        data.draw(mutations(encode_body(HEAD, BODY))), "s", HEAD))
    if body is not None:
        assert len(body.tree) == 32 and all(p.startswith(b"/") for p in body.paths)


@given(values)
def test_decode_body_of_any_record(record: Any) -> None:
    only((IntegrityError,), lambda: model.decode_body(spec.pack(record), "s", HEAD))
    only((IntegrityError,), lambda: model.decode_head(spec.pack(record), "s"))


# -- packs and index segments: hostile plaintext under real keys ---------------------------
_CIPHERS = {k: new_object(k, spec.MODE_SEALED, SHARED, PAIR.public)
            for k in (spec.KIND_PACK, spec.KIND_INDEX)}


def _cipher(kind: int) -> Any:
    """One object key per kind for the whole module: a fresh one costs an X25519
    agreement, and nonce reuse does not matter to a decoder under test."""
    return _CIPHERS[kind]


@FEWER
@given(st.lists(st.lists(values, max_size=7) | values, max_size=4))
def test_read_trailer_of_sealed_hostile_rows(rows: list[Any]) -> None:
    c = _cipher(spec.KIND_PACK)
    trailer = c.seal(spec.TRAILER_NONCE, spec.pack(rows), b"trailer")
    data = c.header + bytes(500) + trailer + struct.pack(">I", len(trailer))
    got = only((IntegrityError,), lambda: pack.read_trailer(c, data))
    for e in got or []:
        assert pack.HEADER_LEN <= e.offset and e.offset + e.length <= len(data)
        assert 0 <= e.raw_len <= spec.MAX_BLOB_RAW and e.blob_type in spec.BLOB_NAMES


def _segment(record: Any) -> tuple[Any, bytes]:
    c = _cipher(spec.KIND_INDEX)
    return c, c.header + c.seal(0, spec.pack(record), b"index")


@FEWER
@given(st.lists(st.dictionaries(st.sampled_from(["id", "blobs", "x"]), values
                                | st.lists(st.lists(values, max_size=7), max_size=3),
                                max_size=3), max_size=3), st.integers(0, 2))
def test_decode_segment_of_sealed_hostile_records(packs: list[Any], v: int) -> None:
    c, data = _segment({"v": v, "packs": packs})
    got = only((IntegrityError,), lambda: index.decode_segment(c, data))
    for name, entries in got or []:
        assert len(name) == 64
        for e in entries:
            assert e.offset + e.length <= spec.MAX_OBJECT


@given(values)
def test_decode_segment_of_any_sealed_record(record: Any) -> None:
    c, data = _segment(record)
    only((IntegrityError,), lambda: index.decode_segment(c, data))


# -- object headers ----------------------------------------------------------------------------
@given(st.binary(min_size=HEADER_LEN, max_size=HEADER_LEN) | st.binary(max_size=50),
       st.sampled_from(sorted(spec.KIND_NAMES)))
def test_open_object_of_any_header(header: bytes, kind: int) -> None:
    for reader in (PAIR, None):
        only((IntegrityError, CannotRead),
             lambda r=reader: open_object(header, kind, "o", SHARED, PAIR.public, r))


# -- key files ---------------------------------------------------------------------------------
KEYFILE = keys.wrap(keys.generate(REPO_ID), b"pass", dict(spec.KDF_DEFAULT))


@given(st.data())
def test_describe_of_mutated_key_files(data: st.DataObject) -> None:
    info = only((BadKeyFile,), lambda: keys.describe(data.draw(mutations(KEYFILE)), "k"))
    if info is not None:
        assert spec.KDF_MIN_T <= info.t <= spec.KDF_MAX_T
        assert spec.KDF_MIN_M_KIB <= info.m <= spec.KDF_MAX_M_KIB


@given(values)
def test_describe_and_unwrap_of_any_record(record: Any) -> None:
    data = spec.pack(record)
    only((BadKeyFile,), lambda: keys.describe(data, "k"))
    only((BadKeyFile, IntegrityError), lambda: keys.unwrap(data, "k", b"pass", REPO_ID))


@settings(max_examples=8)  # each example that passes the KDF checks runs Argon2id
@given(st.data())
def test_unwrap_of_mutated_key_files(data: st.DataObject) -> None:
    only((BadKeyFile, IntegrityError),
         lambda: keys.unwrap(data.draw(mutations(KEYFILE)), "k", b"pass", REPO_ID))


# -- signed records: any body, properly signed ---------------------------------------------------
@FEWER
@given(st.sampled_from([signed.TYPE_REMOVAL, signed.TYPE_CONDEMN]), values,
       st.dictionaries(st.sampled_from(["v", "time", "explicit", "snapshots", "packs",
                                        "segments"]), values, max_size=6))
def test_signed_decode_of_signed_hostile_bodies(rtype: str, record: Any,
                                                body: dict[str, Any]) -> None:
    assert ADMIN.admin is not None
    for b in (body, record):
        data = signed._sign(ADMIN.admin, REPO_ID, rtype, b)  # type: ignore[arg-type]
        only((IntegrityError,), lambda d=data: signed.decode(d, crypto.object_name(d), rtype,
                                                             ADMIN))


# -- the serve protocol ------------------------------------------------------------------------
def _framed(v: Any) -> bytes:
    body = spec.pack(v)
    return struct.pack(">I", len(body)) + body


@given(st.binary(max_size=100) | values.map(_framed))
def test_read_frame_of_any_stream(stream: bytes) -> None:
    msg = only((protocol.ProtocolError,), lambda: protocol.read_frame(io.BytesIO(stream)))
    if msg is not None:
        assert isinstance(msg, dict) and all(isinstance(k, str) for k in msg)
        for key in ("op", "ns", "size", "data"):
            only((protocol.ProtocolError,), lambda k=key: protocol.text(msg, k))
            only((protocol.ProtocolError,), lambda k=key: protocol.integer(msg, k))
            only((protocol.ProtocolError,), lambda k=key: protocol.blob(msg, k))
