"""model: trees, entries and snapshot records; strict decoders against hostile writers."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from repofs import spec
from repofs.errors import BadEntry, IntegrityError
from repofs.model import (
    BLOCK,
    CHAR,
    DIR,
    FIFO,
    FILE,
    SYMLINK,
    TYPES,
    Entry,
    Part,
    Snapshot,
    SnapshotBody,
    SnapshotHead,
    check_name,
    decode_body,
    decode_entry,
    decode_head,
    decode_tree,
    encode_body,
    encode_entry,
    encode_head,
    encode_tree,
)

ID = b"\x07" * 32
names = st.binary(min_size=1, max_size=255).filter(
    lambda n: n not in (b".", b"..") and b"/" not in n and b"\0" not in n)
ids = st.binary(min_size=32, max_size=32)
times = st.integers(-(2**63), 2**63 - 1)
xattrs = st.lists(
    st.tuples(st.binary(min_size=1, max_size=255).filter(lambda k: b"\0" not in k),
              st.binary(max_size=300)),
    max_size=4,
).map(tuple)
chunk_parts = st.builds(Part, ids, st.integers(0, spec.CHUNK_MAX))
hole_parts = st.builds(Part, st.none(), st.integers(0, 2**40))


@st.composite
def entries(draw: st.DrawFn, name: st.SearchStrategy[bytes] = names) -> Entry:
    t = draw(st.sampled_from(TYPES))
    kw: dict = {}
    if t == FILE:
        parts = tuple(draw(st.lists(chunk_parts | hole_parts, max_size=6)))
        kw.update(parts=parts, size=sum(p.size for p in parts),
                  hardlink=draw(st.none() | st.integers(0, 2**63)))
    elif t == DIR:
        kw["subtree"] = draw(ids)
    elif t == SYMLINK:
        kw["target"] = draw(st.binary(min_size=1, max_size=300).filter(lambda b: b"\0" not in b))
    elif t in (BLOCK, CHAR):
        kw["rdev"] = draw(st.integers(0, 2**64 - 1))
    return Entry(
        name=draw(name), type=t, mode=draw(st.integers(0, 0o7777)),
        uid=draw(st.integers(0, 2**32 - 1)), gid=draw(st.integers(0, 2**32 - 1)),
        mtime_ns=draw(times), ctime_ns=draw(times),
        user=draw(st.none() | st.text(max_size=32)), group=draw(st.none() | st.text(max_size=32)),
        xattrs=draw(xattrs), **kw,
    )


def trees() -> st.SearchStrategy[list[Entry]]:
    return st.lists(entries(), max_size=8, unique_by=lambda e: e.name)


def fifo(name: bytes = b"p") -> Entry:
    return Entry(name=name, type=FIFO, mode=0o644, uid=1, gid=2, mtime_ns=3, ctime_ns=4)


def raw_entry(**kw: object) -> dict:
    """An encoded FIFO entry with fields overridden (or removed when the value is ...)."""
    m = encode_entry(fifo())
    m.update(kw)
    return {k: v for k, v in m.items() if v is not ...}


def raw_file(**kw: object) -> dict:
    m = encode_entry(Entry(name=b"f", type=FILE, mode=0o600, uid=0, gid=0, mtime_ns=0,
                           ctime_ns=0, size=10, parts=(Part(ID, 6), Part(None, 4))))
    m.update(kw)
    return {k: v for k, v in m.items() if v is not ...}


def tree_bytes(*raw_entries: object, v: object = 1) -> bytes:
    return spec.pack({"v": v, "e": list(raw_entries)})


# -- round trips ---------------------------------------------------------------------------------
@given(entries())
def test_entry_round_trip(e: Entry) -> None:
    assert decode_entry(encode_entry(e), "tree", "t") == e
    assert decode_entry(spec.unpack(spec.pack(encode_entry(e)), "tree", "t"), "tree", "t") == e


@given(trees())
def test_tree_round_trip(es: list[Entry]) -> None:
    data = encode_tree(es)
    assert decode_tree(data, "t") == sorted(es, key=lambda e: e.name)


@given(trees())
def test_tree_encoding_is_canonical(es: list[Entry]) -> None:
    assert encode_tree(es) == encode_tree(list(reversed(es)))


def test_empty_tree() -> None:
    assert decode_tree(encode_tree([]), "t") == []


heads = st.builds(SnapshotHead, seq=st.integers(0, 2**62),
                  prev=st.lists(ids, max_size=5).map(tuple), time_ns=st.integers(0, 2**63 - 1))
bodies = st.builds(
    SnapshotBody, tree=ids,
    paths=st.lists(st.binary(max_size=40).map(lambda p: b"/" + p), max_size=4).map(tuple),
    host=st.text(max_size=40), user=st.text(max_size=40),
    tags=st.lists(st.text(max_size=20), max_size=4).map(tuple),
    name=st.none() | st.text(max_size=50),
    hardlinks=st.dictionaries(st.integers(0, 2**40), st.integers(0, 2**40), max_size=4),
    stats=st.dictionaries(st.text(max_size=10), st.integers(-(2**63), 2**63 - 1), max_size=5),
)


@given(heads, st.binary(max_size=200))
def test_head_round_trip(head: SnapshotHead, sealed: bytes) -> None:
    assert decode_head(encode_head(head, sealed), "s") == (head, sealed)


@given(heads, bodies)
def test_body_round_trip(head: SnapshotHead, body: SnapshotBody) -> None:
    assert decode_body(encode_body(head, body), "s", head) == body


@given(heads, heads, bodies)
def test_body_is_bound_to_its_head(a: SnapshotHead, b: SnapshotHead, body: SnapshotBody) -> None:
    assume(a != b)
    with pytest.raises(IntegrityError, match="replayed"):
        decode_body(encode_body(a, body), "s", b)


def test_snapshot_short_id() -> None:
    s = Snapshot("0123456789abcdef" * 4, SnapshotHead(0, (), 0), None)
    assert s.short_id == "01234567"


# -- names ---------------------------------------------------------------------------------------
UNSAFE = [b"", b".", b"..", b"/", b"a/b", b"../x", b"a/", b"/etc", b"\0", b"a\0b", b"x" * 256]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_names_are_refused(name: bytes) -> None:
    with pytest.raises(IntegrityError):
        check_name(name, "tree", "t")
    with pytest.raises(IntegrityError, match="tree t9"):
        decode_tree(tree_bytes(raw_entry(n=name)), "t9")


@given(st.binary(max_size=300))
def test_check_name_accepts_exactly_safe_names(name: bytes) -> None:
    safe = (0 < len(name) <= 255 and name not in (b".", b"..") and b"/" not in name
            and b"\0" not in name)
    try:
        check_name(name, "tree", "t")
        assert safe
    except IntegrityError:
        assert not safe


def test_names_that_are_not_utf8_are_fine() -> None:
    e = fifo(b"\xff\xfe caf\xe9")
    assert decode_tree(encode_tree([e]), "t") == [e]


# -- hostile trees -------------------------------------------------------------------------------
def test_unsorted_and_duplicate_entries_are_refused() -> None:
    a, b = encode_entry(fifo(b"a")), encode_entry(fifo(b"b"))
    assert len(decode_tree(tree_bytes(a, b), "t")) == 2
    for bad in ([b, a], [a, a], [a, b, a], [a, b, b]):
        with pytest.raises(IntegrityError, match="not sorted or a name is duplicated"):
            decode_tree(tree_bytes(*bad), "t")


@pytest.mark.parametrize("raw", [
    raw_entry(t="x"), raw_entry(t="ff"), raw_entry(t="s"), raw_entry(t=b"p"), raw_entry(t=1),
    raw_entry(n="p"), raw_entry(n=None), raw_entry(n=...), raw_entry(t=...),
    raw_entry(m=0o10000), raw_entry(m=-1), raw_entry(m=True), raw_entry(m="644"),
    raw_entry(m=1.0), raw_entry(m=...),
    raw_entry(u=2**32), raw_entry(u=-1), raw_entry(g=2**32), raw_entry(g=None),
    raw_entry(mt=2**63), raw_entry(mt="now"),
    raw_entry(ct=2**64 - 1), raw_entry(ct=...),
    raw_entry(un=1), raw_entry(un="u" * 257), raw_entry(gn=b"g"), raw_entry(gn="g" * 257),
    raw_entry(x="attrs"), raw_entry(x=[b"k", b"v"]), raw_entry(x=[[b"k"]]),
    raw_entry(x=[[b"", b"v"]]), raw_entry(x=[[b"k\0", b"v"]]), raw_entry(x=[[b"k" * 256, b"v"]]),
    raw_entry(x=[["k", b"v"]]), raw_entry(x=[[b"k", "v"]]),
    raw_entry(x=[[b"k", b"v" * (spec.MAX_XATTR_VALUE + 1)]]),
    raw_entry(x=[[b"k", b"v"]] * 65537),
    raw_entry(t=DIR), raw_entry(t=DIR, sub=b"x" * 31), raw_entry(t=DIR, sub="x" * 32),
    raw_entry(t=SYMLINK), raw_entry(t=SYMLINK, tg=b""), raw_entry(t=SYMLINK, tg=b"a\0b"),
    raw_entry(t=SYMLINK, tg="text"), raw_entry(t=SYMLINK, tg=b"x" * (spec.MAX_NAME + 1)),
    raw_entry(t=BLOCK), raw_entry(t=CHAR, rd=-1),
    raw_entry(t=CHAR, rd=b"1"),
    raw_file(s=11), raw_file(s=9), raw_file(s=-1), raw_file(s=2**63 + 1), raw_file(s=...),
    raw_file(c=...), raw_file(c="chunks"), raw_file(c=[[ID]]), raw_file(c=[[ID, 6, 0]]),
    raw_file(c=[[ID, 6], [None, 4, 1]]), raw_file(c=[[b"x" * 31, 6], [None, 4]]),
    raw_file(c=[["x" * 32, 6], [None, 4]]), raw_file(c=[[ID, True], [None, 9]]),
    raw_file(c=[[ID, -1], [None, 11]]), raw_file(c=[[ID, 6.0], [None, 4]]),
    raw_file(s=spec.CHUNK_MAX + 1, c=[[ID, spec.CHUNK_MAX + 1]]),
    raw_file(s=2**63 + 1, c=[[None, 2**63], [None, 1]]),
    raw_file(c=[[None, 2**63 + 1]], s=2**63 + 1),
    raw_file(hl=-1), raw_file(hl=2**63 + 1), raw_file(hl="1"),
    [b"n", b"t"], b"entry", None, 5,
])
def test_hostile_entries_are_refused(raw: object) -> None:
    with pytest.raises(IntegrityError, match="tree t7"):
        decode_tree(tree_bytes(raw), "t7")


@pytest.mark.parametrize("data", [
    tree_bytes(v=2), tree_bytes(v=0), tree_bytes(v="1"), tree_bytes(v=True),
    spec.pack({"e": []}), spec.pack({"v": 1}), spec.pack({"v": 1, "e": {}}),
    spec.pack({"v": 1, "e": "entries"}), spec.pack([1, []]), spec.pack(None), b"", b"\xc1",
    spec.pack({"v": 1, "e": []}) + b"\x00",
])
def test_malformed_trees_are_refused(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="tree t8"):
        decode_tree(data, "t8")


def test_entry_count_is_capped() -> None:
    n = spec.MAX_ENTRIES + 1
    data = (b"\x82\xa1v\x01\xa1e\xdd" + n.to_bytes(4, "big")) + b"\xc0" * n
    with pytest.raises(IntegrityError, match="tree t"):
        decode_tree(data, "t")


def test_fields_of_other_types_are_ignored_not_trusted() -> None:
    """A FIFO with a subtree, a target and content: none of it reaches the entry."""
    raw = raw_entry(sub=ID, tg=b"/etc/passwd", c=[[ID, 5]], s=5, rd=5, hl=3)
    [e] = decode_tree(tree_bytes(raw), "t")
    assert (e.subtree, e.target, e.parts, e.size, e.rdev, e.hardlink) == (None, None, (), 0, 0,
                                                                           None)


def _check_decoded(es: list[Entry]) -> None:
    for e in es:
        check_name(e.name, "tree", "t")
        assert e.type in TYPES
        if e.type == FILE:
            assert sum(p.size for p in e.parts) == e.size
        if e.type == DIR:
            assert e.subtree is not None and len(e.subtree) == 32
    assert all(a.name < b.name for a, b in zip(es, es[1:], strict=False))


@given(st.binary(max_size=400))
def test_random_bytes_give_integrity_error_only(data: bytes) -> None:
    try:
        _check_decoded(decode_tree(data, "t"))
    except IntegrityError:
        pass


@given(st.data(), trees())
def test_mutated_trees_give_integrity_error_or_valid_entries(mutate, data: st.DataObject,
                                                             es: list[Entry]) -> None:
    bad = data.draw(mutate(encode_tree(es)))
    try:
        _check_decoded(decode_tree(bad, "t"))
    except IntegrityError:
        pass


leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=3)
        | st.binary(max_size=40) | st.sampled_from(list(TYPES)) | st.just(ID)
        | st.floats(allow_nan=False))
entry_keys = st.sampled_from(["n", "t", "m", "u", "g", "mt", "ct", "un", "gn", "s", "c", "sub",
                              "tg", "rd", "x", "hl"])
values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(entry_keys, inner, max_size=6), max_leaves=20)


@settings(max_examples=50)  # slow to generate; REPOFS_HYPOTHESIS_PROFILE=repofs-long
@given(st.lists(st.dictionaries(entry_keys, values, max_size=16) | values, max_size=4))
def test_hostile_records_give_integrity_error_only(raws: list) -> None:
    try:
        _check_decoded(decode_tree(tree_bytes(*raws), "t"))
    except IntegrityError:
        pass


@settings(max_examples=50)  # slow to generate; REPOFS_HYPOTHESIS_PROFILE=repofs-long
@given(st.lists(entries(), max_size=3), st.data())
def test_one_field_replaced_gives_integrity_error_or_valid(es: list[Entry],
                                                           data: st.DataObject) -> None:
    raws = [encode_entry(e) for e in sorted(es, key=lambda e: e.name)]
    if raws:
        i = data.draw(st.integers(0, len(raws) - 1))
        raws[i][data.draw(entry_keys)] = data.draw(values)
    try:
        _check_decoded(decode_tree(tree_bytes(*raws), "t"))
    except IntegrityError:
        pass


# -- hostile snapshot records ---------------------------------------------------------------------
HEAD = SnapshotHead(seq=3, prev=(ID,), time_ns=10**18)
BODY = SnapshotBody(tree=ID, paths=(b"/home",), host="h", user="u", tags=("t",), name="n",
                    hardlinks={1: 2}, stats={"files": 3})


def head_record(**kw: object) -> bytes:
    m = spec.unpack(encode_head(HEAD, b"sealed"), "s", "s")
    m.update(kw)
    return spec.pack({k: v for k, v in m.items() if v is not ...})


def body_record(**kw: object) -> bytes:
    m = spec.unpack(encode_body(HEAD, BODY), "s", "s")
    m.update(kw)
    return spec.pack({k: v for k, v in m.items() if v is not ...})


@pytest.mark.parametrize("data", [
    head_record(v=2), head_record(seq=-1), head_record(seq=2**62 + 1), head_record(seq="3"),
    head_record(prev=[b"x" * 31]), head_record(prev=["x" * 32]), head_record(prev=b"x" * 32),
    head_record(prev=[ID] * 4097), head_record(time=-1), head_record(time=2**63),
    head_record(body="sealed"), head_record(body=None), head_record(body=...),
    head_record(seq=...), head_record(prev=...), head_record(time=...),
    b"", b"\xc1", spec.pack([]), spec.pack(None),
])
def test_hostile_heads(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="snapshot s1"):
        decode_head(data, "s1")


@pytest.mark.parametrize("data", [
    body_record(seq=4), body_record(prev=[]), body_record(time=1), body_record(seq="3"),
    body_record(tree=b"x" * 31), body_record(tree=...), body_record(paths=[b"home"]),
    body_record(paths=["/home"]), body_record(paths=b"/home"), body_record(paths=[b"/"] * 65537),
    body_record(host=b"h"), body_record(host=...), body_record(user=None),
    body_record(tags=["t", 1]), body_record(tags="t"), body_record(tags=["x" * 5000]),
    body_record(name=1), body_record(name="n" * 257), body_record(name=b"n"),
    body_record(hardlinks=[[1]]), body_record(hardlinks=[[1, -2]]),
    body_record(hardlinks=[[True, 2]]), body_record(hardlinks=[["1", 2]]),
    body_record(hardlinks={1: 2}), body_record(stats=[]), body_record(stats={"a": "b"}),
    body_record(stats={1: 2}), body_record(stats=...), body_record(hardlinks=...),
    b"", b"\xc1", spec.pack([]),
])
def test_hostile_bodies(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="snapshot s2"):
        decode_body(data, "s2", HEAD)


def test_unnamed_body() -> None:
    assert decode_body(body_record(name=None), "s", HEAD).name is None
    assert decode_body(body_record(name=...), "s", HEAD).name is None


@given(st.binary(max_size=300))
def test_random_head_and_body_bytes(data: bytes) -> None:
    for decode in (lambda: decode_head(data, "s"), lambda: decode_body(data, "s", HEAD)):
        try:
            decode()
        except IntegrityError:
            pass


@given(st.data(), heads, bodies)
def test_mutated_heads_and_bodies(mutate, data: st.DataObject, head: SnapshotHead,
                                  body: SnapshotBody) -> None:
    try:
        decode_head(data.draw(mutate(encode_head(head, b"x" * 60))), "s")
    except IntegrityError:
        pass
    try:
        decode_body(data.draw(mutate(encode_body(head, body))), "s", head)
    except IntegrityError:
        pass


snapshot_keys = st.sampled_from(["v", "seq", "prev", "time", "body", "tree", "paths", "host",
                                 "user", "tags", "name", "hardlinks", "stats"])


@settings(max_examples=50)  # slow to generate; REPOFS_HYPOTHESIS_PROFILE=repofs-long
@given(st.dictionaries(snapshot_keys, values, max_size=13), st.booleans())
def test_hostile_snapshot_records(fields: dict, on_top: bool) -> None:
    for base, decode in ((head_record(), lambda d: decode_head(d, "s")),
                         (body_record(), lambda d: decode_body(d, "s", HEAD))):
        m = {**spec.unpack(base, "s", "s"), **fields} if on_top else fields
        try:
            decode(spec.pack(m))
        except IntegrityError:
            pass


def test_a_bad_entry_alone_is_left_out_when_asked() -> None:
    """Per-entry rules (sizes, types, ranges) cost the entry; name rules cost the tree."""
    good = raw_entry(n=b"a")
    big = {**raw_entry(n=b"big"), "t": "f", "s": 2**63, "c": [[None, 2**63]]}
    off = {**raw_entry(n=b"off"), "t": "f", "s": 5, "c": []}
    data = tree_bytes(good, big, off)
    with pytest.raises(IntegrityError, match="out of range"):
        decode_tree(data, "t")
    left: list[BadEntry] = []
    assert [e.name for e in decode_tree(data, "t", left)] == [b"a"]
    assert [str(e) for e in left] == [
        "tree t is corrupt or tampered: entry big: field 's' out of range",
        "tree t is corrupt or tampered: entry off: file size does not match its "
        "content list"]
    assert [e.entry for e in left] == [b"big", b"off"]
    largest = {**raw_entry(n=b"h"), "t": "f", "s": 2**63 - 1, "c": [[None, 2**63 - 1]]}
    assert decode_tree(tree_bytes(largest), "t")[0].size == 2**63 - 1
    with pytest.raises(IntegrityError, match="not sorted"):
        decode_tree(tree_bytes(off, good), "t", [])
    with pytest.raises(IntegrityError, match="unsafe"):
        decode_tree(tree_bytes(raw_entry(n=b"..")), "t", [])


@pytest.mark.parametrize("names", [
    [b"a/b"], [b"a\0"], [b"."], [b".."], [b""], [b"x" * 256], [b"b", b"a"], [b"a", b"a"],
    [b"a", "b"], [b"a", 7]])
def test_split_tree_refuses_what_decode_tree_refuses(names: list[object]) -> None:
    """split_tree checks names in bulk; a bad one raises just as decode_tree says it."""
    from repofs.model import split_tree
    data = spec.pack({"v": spec.FORMAT_VERSION, "e": [
        {"n": n, "t": "f", "m": 0o644, "u": 0, "g": 0, "mt": 1, "ct": 1, "s": 0, "c": []}
        for n in names]})
    with pytest.raises(IntegrityError) as slow:
        decode_tree(data, "t")
    with pytest.raises(IntegrityError) as fast:
        split_tree(data, "t")
    assert fast.value.detail == slow.value.detail


def test_split_tree_keeps_good_names_and_their_maps() -> None:
    from repofs.model import decode_raw, split_tree
    names = [b"-", b"...", b".a", b"a", b"b" * 255, "\u00e9".encode()]
    data = spec.pack({"v": spec.FORMAT_VERSION, "e": [
        {"n": n, "t": "f", "m": 0o644, "u": 0, "g": 0, "mt": 1, "ct": 1, "s": 0, "c": []}
        for n in names]})
    raw = split_tree(data, "t")
    assert [r[0] for r in raw] == names
    assert [decode_raw(r, "t") for r in raw] == decode_tree(data, "t")
