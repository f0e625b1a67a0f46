"""spec: the msgpack codec with capped lengths, and typed field access."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repofs import spec
from repofs.errors import IntegrityError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=64)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=6),
    max_leaves=40,
)


def unpack(data: bytes) -> object:
    return spec.unpack(data, "thing", "abc")


# -- round trips ---------------------------------------------------------------------------
@given(values)
def test_pack_unpack_round_trip(v: object) -> None:
    assert unpack(spec.pack(v)) == v


@given(st.binary(max_size=200), st.text(max_size=50))
def test_bytes_stay_bytes_and_str_stays_str(b: bytes, s: str) -> None:
    out = unpack(spec.pack({"b": b, "s": s}))
    assert isinstance(out, dict)
    assert type(out["b"]) is bytes and out["b"] == b
    assert type(out["s"]) is str and out["s"] == s


def test_unpack_accepts_memoryview() -> None:
    assert unpack(memoryview(spec.pack([1, b"x"]))) == [1, b"x"]


# -- hostile input -----------------------------------------------------------------------------
@given(st.binary(max_size=300))
def test_unpack_random_bytes_only_integrity_error(data: bytes) -> None:
    try:
        unpack(data)
    except IntegrityError as e:
        assert e.kind == "thing" and e.object_id == "abc"


@given(st.data(), values)
def test_unpack_mutations_only_integrity_error(mutate, data: st.DataObject, v: object) -> None:
    bad = data.draw(mutate(spec.pack(v)))
    try:
        unpack(bad)
    except IntegrityError:
        pass


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing
        b"\xc1",  # the one reserved byte
        b"\x91",  # array of one, no element
        b"\x92\x01",  # truncated array
        b"\xda\xff\xff",  # str 16 with no payload
        b"\xc6\x7f\xff\xff\xff",  # bin 32 claiming 2 GiB
        b"\xdb\xff\xff\xff\xff",  # str 32 claiming 4 GiB
        b"\x01\x02",  # extra data after a record
        b"\xd4\x01\x02",  # fixext: ext types are never valid
        b"\xd6\xff\x00\x00\x00\x00",  # timestamp ext
        b"\xc7\x00\xff",  # ext 8 of length 0
        b"\x81\x91\x00\x01",  # a list as a map key
        b"\x81\x80\x01",  # a map as a map key
        b"\xa2\xff\xfe",  # invalid UTF-8 in a str
        b"\x91" * 5000,  # nested deeper than the stack cap
        b"\x81" * 5000,  # maps nested deeper than the stack cap
    ],
)
def test_unpack_rejects_malformed(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="thing abc"):
        unpack(data)


def _peak_while_rejecting(data: bytes) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError):
            unpack(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "bomb",
    [
        b"\xdd\x00\x7f\xff\xff",  # an array claiming 8 M elements
        b"\xdf\x00\x7f\xff\xff",  # a map claiming 8 M pairs
        b"\xdd\x00\x7f\xff\xff" + b"\xc0" * 1000,  # 8 M claimed, 1000 present
        b"\xdd\x00\x7f\xff\xff\xc6\x0f\xff\xff\xff",  # array, then a 256 MiB bin header
        b"\xc6\x0f\xff\xff\xff" + b"x" * 100,  # bin claiming 256 MiB
        b"\xdf\x00\x7f\xff\xff" * 1000,  # maps nested 1000 deep
    ],
)
def test_length_headers_do_not_allocate(bomb: bytes) -> None:
    assert _peak_while_rejecting(bomb) < 4 * 1024 * 1024


def test_nested_array_headers_cost_is_bounded() -> None:
    """msgpack pre-sizes each list to at most 10 000 slots and nests at most 1024 deep.

    So a few KiB of nested 8 M-element array headers cost a bounded ~80 MiB of
    transient memory, whatever the claimed sizes: bounded, but not proportional to
    the input (see the report of the unit-test pass).
    """
    peaks = [_peak_while_rejecting(b"\xdd\x00\x7f\xff\xff" * n) for n in (1000, 5000)]
    assert all(p < 96 * 1024 * 1024 for p in peaks), peaks


def test_record_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec, "MAX_RECORD", 100)
    assert unpack(spec.pack(b"x" * 50)) == b"x" * 50
    with pytest.raises(IntegrityError, match="too large"):
        unpack(spec.pack(b"x" * 200))


def test_str_length_cap() -> None:
    with pytest.raises(IntegrityError):
        unpack(spec.pack("x" * (spec.MAX_NAME * 16 + 1)))


# -- Fields -----------------------------------------------------------------------------------
def fields(m: object) -> spec.Fields:
    return spec.Fields(m, "tree", "t1")


@pytest.mark.parametrize("obj", [None, 1, b"x", "x", [1, 2], True])
def test_fields_needs_a_map(obj: object) -> None:
    with pytest.raises(IntegrityError, match="not a map"):
        fields(obj)


def test_integer() -> None:
    f = fields({"a": 5, "b": True, "c": "5", "d": -1, "e": 2.0, "big": 2**64 - 1})
    assert f.integer("a") == 5
    assert f.integer("a", lo=5, hi=5) == 5
    assert f.integer("big") == 2**64 - 1
    assert f.integer("d", lo=-1) == -1
    for key in ("b", "c", "e"):
        with pytest.raises(IntegrityError, match="wrong type"):
            f.integer(key)
    with pytest.raises(IntegrityError, match="out of range"):
        f.integer("d")
    with pytest.raises(IntegrityError, match="out of range"):
        f.integer("a", hi=4)
    with pytest.raises(IntegrityError, match="out of range"):
        f.integer("a", lo=6)
    with pytest.raises(IntegrityError, match="missing"):
        f.integer("zz")
    assert f.opt_integer("zz") is None
    assert f.opt_integer("a") == 5
    with pytest.raises(IntegrityError):
        f.opt_integer("a", hi=1)


def test_bool_never_passes_as_int_but_can_be_asked_for() -> None:
    f = fields({"b": True})
    with pytest.raises(IntegrityError):
        f.integer("b")
    assert f._get("b", bool, False) is True


def test_blob() -> None:
    f = fields({"b": b"abc", "s": "abc", "n": None})
    assert f.blob("b") == b"abc"
    assert f.blob("b", size=3) == b"abc"
    with pytest.raises(IntegrityError, match="wrong length"):
        f.blob("b", size=4)
    with pytest.raises(IntegrityError, match="too long"):
        f.blob("b", max_len=2)
    with pytest.raises(IntegrityError, match="wrong type"):
        f.blob("s")
    with pytest.raises(IntegrityError, match="wrong type"):
        f.blob("n")
    assert f.opt_blob("zz") is None
    assert f.opt_blob("b") == b"abc"


def test_text() -> None:
    f = fields({"s": "abc", "b": b"abc"})
    assert f.text("s") == "abc"
    with pytest.raises(IntegrityError, match="too long"):
        f.text("s", max_len=2)
    with pytest.raises(IntegrityError, match="wrong type"):
        f.text("b")
    assert f.opt_text("zz") is None
    assert f.opt_text("s") == "abc"


def test_items_mapping_sub() -> None:
    f = fields({"l": [1, 2, 3], "m": {"x": 1}, "s": "abc"})
    assert f.items("l") == [1, 2, 3]
    with pytest.raises(IntegrityError, match="too many"):
        f.items("l", max_len=2)
    with pytest.raises(IntegrityError, match="wrong type"):
        f.items("m")
    assert f.mapping("m") == {"x": 1}
    with pytest.raises(IntegrityError, match="wrong type"):
        f.mapping("l")
    assert f.sub("m").integer("x") == 1
    with pytest.raises(IntegrityError):
        f.sub("s")
    assert f.raw("zz") is None
    assert f.raw("s") == "abc"


def test_text_list_and_id_list() -> None:
    f = fields({"t": ["a", "b"], "bad": ["a", b"b"], "long": ["x" * (spec.MAX_NAME + 1)],
                "ids": [b"\x01" * 32, b"\x02" * 32], "short": [b"\x01" * 31]})
    assert f.text_list("t") == ["a", "b"]
    for key in ("bad", "long"):
        with pytest.raises(IntegrityError, match="list of strings"):
            f.text_list(key)
    with pytest.raises(IntegrityError, match="too many"):
        f.text_list("t", max_len=1)
    assert f.id_list("ids", 32) == [b"\x01" * 32, b"\x02" * 32]
    with pytest.raises(IntegrityError, match="32-byte ids"):
        f.id_list("short", 32)
    with pytest.raises(IntegrityError, match="32-byte ids"):
        f.id_list("t", 32)


def test_fail_names_the_object() -> None:
    e = fields({}).fail("detail here")
    assert (e.kind, e.object_id, e.detail) == ("tree", "t1", "detail here")
    assert "tree t1 is corrupt or tampered: detail here" in str(e)


@settings(max_examples=50)  # slow to generate; REPOFS_HYPOTHESIS_PROFILE=repofs-long
@given(st.dictionaries(st.text(max_size=4), values, max_size=5), st.text(max_size=4))
def test_field_accessors_never_raise_anything_but_integrity_error(m: dict, key: str) -> None:
    f = fields(m)
    accessors = [
        lambda: f.integer(key), lambda: f.opt_integer(key), lambda: f.blob(key, size=32),
        lambda: f.opt_blob(key), lambda: f.text(key), lambda: f.opt_text(key),
        lambda: f.items(key), lambda: f.mapping(key), lambda: f.sub(key),
        lambda: f.text_list(key), lambda: f.id_list(key, 32),
    ]
    for get in accessors:
        try:
            get()
        except IntegrityError:
            pass


def test_format_constants_are_consistent() -> None:
    assert spec.CHUNK_MIN < spec.CHUNK_AVG < spec.CHUNK_MAX <= spec.MAX_BLOB_RAW
    assert spec.PACK_MAX_BLOBS < spec.TRAILER_NONCE < 2**96
    assert len(spec.MAGIC) == 4
    assert set(spec.NAMESPACES) == {"keys", "data", "index", "snapshots", "removals",
                                    "condemned"}
    assert spec.KDF_MIN_T >= 3 and spec.KDF_MIN_M_KIB >= 64 * 1024
    d = spec.KDF_DEFAULT
    assert spec.KDF_MIN_T <= d["t"] <= spec.KDF_MAX_T
    assert spec.KDF_MIN_M_KIB <= d["m"] <= spec.KDF_MAX_M_KIB
    assert spec.KDF_MIN_P <= d["p"] <= spec.KDF_MAX_P
