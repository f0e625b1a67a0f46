"""Trees, entries and snapshot records, and their strict decoders.

See repofs-format(5), TREES and SNAPSHOTS.

A tree is one directory: its entries sorted by name. Names are bytes, as the
file system gave them. Decoding rejects anything a hostile writer could use
against a reader: names with '/', NUL, '.', '..', empty or duplicate names,
unknown types, out-of-range numbers.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from repofs import spec
from repofs.errors import BadEntry, IntegrityError

FILE, DIR, SYMLINK, BLOCK, CHAR, FIFO = "f", "d", "l", "b", "c", "p"
TYPES = (FILE, DIR, SYMLINK, BLOCK, CHAR, FIFO)
ID_LEN = 32
MAX_FILE_SIZE = 2**63 - 1  # off_t: a larger size is one no OS can take (nor a hole)


@dataclass(frozen=True, slots=True)
class Part:
    """A piece of a file: a chunk (``chunk_id``) or a hole (``chunk_id`` is None)."""

    chunk_id: bytes | None
    size: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry with all the metadata repofs keeps."""

    name: bytes
    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    ctime_ns: int
    user: str | None = None
    group: str | None = None
    size: int = 0
    parts: tuple[Part, ...] = ()
    subtree: bytes | None = None
    target: bytes | None = None
    rdev: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    hardlink: int | None = None  # entries sharing an inode in the source share this number


def check_name(name: bytes, kind: str, object_id: str) -> None:
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name or len(name) > 255:
        raise IntegrityError(kind, object_id, f"entry name {name!r} is unsafe")


def encode_entry(e: Entry) -> dict[str, Any]:
    m: dict[str, Any] = {"n": e.name, "t": e.type, "m": e.mode, "u": e.uid, "g": e.gid,
                         "mt": e.mtime_ns, "ct": e.ctime_ns}
    if e.user is not None:
        m["un"] = e.user
    if e.group is not None:
        m["gn"] = e.group
    if e.type == FILE:
        m["s"] = e.size
        m["c"] = [[p.chunk_id, p.size] for p in e.parts]
    if e.subtree is not None:
        m["sub"] = e.subtree
    if e.target is not None:
        m["tg"] = e.target
    if e.type in (BLOCK, CHAR):
        m["rd"] = e.rdev
    if e.xattrs:
        m["x"] = [[k, v] for k, v in e.xattrs]
    if e.hardlink is not None:
        m["hl"] = e.hardlink
    return m


def _decode_parts(f: spec.Fields, size: int) -> tuple[Part, ...]:
    parts = []
    total = 0
    for p in f.items("c"):
        ok = (isinstance(p, list) and len(p) == 2
              and (p[0] is None or (isinstance(p[0], bytes) and len(p[0]) == ID_LEN))
              and isinstance(p[1], int) and not isinstance(p[1], bool)
              and 0 <= p[1] <= (spec.CHUNK_MAX if p[0] is not None else MAX_FILE_SIZE))
        if not ok:
            raise f.fail("malformed file content list")
        parts.append(Part(p[0], p[1]))
        total += p[1]
    if total != size:
        raise f.fail("file size does not match its content list")
    return tuple(parts)


def decode_entry(raw: Any, kind: str, object_id: str) -> Entry:
    f, name = _named(raw, kind, object_id)
    return _decode_entry(f, name)


def _named(raw: Any, kind: str, object_id: str) -> tuple[spec.Fields, bytes]:
    """An entry's fields and its name, checked: a bad name is the whole tree's fault."""
    f = spec.Fields(raw, kind, object_id)
    name = f.blob("n", max_len=255)
    check_name(name, kind, object_id)
    return f, name


def _decode_entry(f: spec.Fields, name: bytes) -> Entry:
    t = f.text("t")
    if t not in TYPES:
        raise f.fail(f"unknown entry type {t!r}")
    size = f.integer("s", hi=MAX_FILE_SIZE) if t == FILE else 0
    xattrs = []
    for x in f.items("x", 65536) if f.raw("x") is not None else []:
        if not (isinstance(x, list) and len(x) == 2 and isinstance(x[0], bytes)
                and isinstance(x[1], bytes) and 0 < len(x[0]) <= 255
                and len(x[1]) <= spec.MAX_XATTR_VALUE and b"\0" not in x[0]):
            raise f.fail("malformed xattr")
        xattrs.append((x[0], x[1]))
    subtree = f.blob("sub", size=ID_LEN) if t == DIR else None
    target = f.blob("tg", max_len=spec.MAX_NAME) if t == SYMLINK else None
    if target is not None and (not target or b"\0" in target):
        raise f.fail("malformed symlink target")
    return Entry(
        name=name, type=t, mode=f.integer("m", hi=0o7777), uid=f.integer("u", hi=2**32 - 1),
        gid=f.integer("g", hi=2**32 - 1), mtime_ns=f.integer("mt", lo=-(2**63), hi=2**63 - 1),
        ctime_ns=f.integer("ct", lo=-(2**63), hi=2**63 - 1), user=f.opt_text("un", 256),
        group=f.opt_text("gn", 256), size=size, parts=_decode_parts(f, size) if t == FILE else (),
        subtree=subtree, target=target,
        rdev=f.integer("rd") if t in (BLOCK, CHAR) else 0, xattrs=tuple(xattrs),
        hardlink=f.opt_integer("hl", hi=2**63) if t == FILE else None,
    )


def encode_tree(entries: list[Entry]) -> bytes:
    """A directory's tree blob; ValueError if readers would refuse it as too large."""
    entries = sorted(entries, key=lambda e: e.name)
    data = spec.pack({"v": spec.FORMAT_VERSION, "e": [encode_entry(e) for e in entries]})
    if len(data) > spec.MAX_TREE_RAW or len(entries) > spec.MAX_ENTRIES:
        raise ValueError(f"a directory of {len(entries)} entries is larger than a tree may be")
    return data


def decode_tree(data: bytes, tree_id: str,
                left_out: list[BadEntry] | None = None) -> list[Entry]:
    """A tree's entries, every invariant a reader relies on checked (repofs-format(5),
    TREES). What is wrong with the tree as a whole (not a tree, unknown version, a name
    unsafe, unsorted or repeated) raises IntegrityError. An entry whose other fields
    break a rule (a size no OS can take, sizes that do not add up, a field out of range)
    raises too, unless ``left_out`` is given: then that entry alone is left out, its
    error appended there, and its directory keeps its other entries."""
    entries = []
    for raw in split_tree(data, tree_id):
        try:
            entries.append(decode_raw(raw, tree_id))
        except IntegrityError as e:
            if left_out is None:
                raise
            left_out.append(bad_entry(raw, tree_id, e))
    return entries


# An entry whose name (and the tree's order) is checked but whose other fields are not
# decoded yet: (name, stored map), or (name, Entry) for trees already decoded. Two equal
# pairs are the same entry, so a reader comparing trees (diff) or matching names (find)
# decodes only what it uses. A plain tuple: built in C by zip, compared in C.
RawEntry = tuple[bytes, Any]


def split_tree(data: bytes, tree_id: str) -> list[RawEntry]:
    """A tree's entries undecoded; what is wrong with the tree as a whole (not a tree,
    unknown version, a name unsafe, unsorted or repeated) raises IntegrityError, the
    same as ``decode_tree``. The names are checked in bulk (C loops over the whole
    list); only when that finds something wrong does the entry-by-entry check run, to
    name what is wrong."""
    f = spec.Fields(spec.unpack(data, "tree", tree_id), "tree", tree_id)
    if f.integer("v") != spec.FORMAT_VERSION:
        raise f.fail("unknown version")
    items = f.items("e")
    try:
        names = [r["n"] for r in items]  # only a map (dict) takes ["n"]
    except (KeyError, TypeError, IndexError):
        names = []
    if len(names) == len(items) and _names_ok(names):
        return list(zip(names, items, strict=True))
    named = [(_named(r, "tree", tree_id)[1], r) for r in items]
    for a, b in itertools.pairwise(named):
        if a[0] >= b[0]:
            raise f.fail("entries not sorted or a name is duplicated")
    return named  # not reached while _names_ok agrees with _named, kept for safety


def _names_ok(names: list[Any]) -> bool:
    """check_name for every name, and strictly sorted (so no repeats), in bulk."""
    if not names:
        return True
    if set(map(type, names)) != {bytes} or names != sorted(set(names)):
        return False
    joined = b"/".join(names)
    return (bool(names[0]) and max(map(len, names)) <= 255 and b"\0" not in joined
            and joined.count(b"/") == len(names) - 1
            and b"." not in names and b".." not in names)


def decode_raw(raw: RawEntry, tree_id: str) -> Entry:
    """One entry of split_tree decoded, every per-entry rule checked (IntegrityError)."""
    name, stored = raw
    if isinstance(stored, Entry):
        return stored
    return _decode_entry(spec.Fields(stored, "tree", tree_id), name)


def bad_entry(raw: RawEntry, tree_id: str, e: IntegrityError) -> BadEntry:
    shown = raw[0].decode("utf-8", "backslashreplace")
    return BadEntry("tree", tree_id, f"entry {shown}: {e.detail}", raw[0])


@dataclass(frozen=True)
class SnapshotHead:
    """The part of a snapshot every key can read: its place in the history."""

    seq: int
    prev: tuple[bytes, ...]
    time_ns: int


@dataclass(frozen=True)
class SnapshotBody:
    """The sealed part: what was backed up, from where, and its root tree."""

    tree: bytes
    paths: tuple[bytes, ...]
    host: str
    user: str
    tags: tuple[str, ...]
    name: str | None
    hardlinks: dict[int, int]
    stats: dict[str, int]


@dataclass(frozen=True)
class Snapshot:
    id: str
    head: SnapshotHead
    body: SnapshotBody | None  # None when this key cannot read bodies

    @property
    def short_id(self) -> str:
        return self.id[:8]


def encode_head(head: SnapshotHead, sealed_body: bytes) -> bytes:
    return spec.pack({"v": spec.FORMAT_VERSION, "seq": head.seq, "prev": list(head.prev),
                      "time": head.time_ns, "body": sealed_body})


def decode_head(data: bytes, snap_id: str) -> tuple[SnapshotHead, bytes]:
    f = spec.Fields(spec.unpack(data, "snapshot", snap_id), "snapshot", snap_id)
    if f.integer("v") != spec.FORMAT_VERSION:
        raise f.fail("unknown version")
    head = SnapshotHead(seq=f.integer("seq", hi=2**62), prev=tuple(f.id_list("prev", 32, 4096)),
                        time_ns=f.integer("time", hi=2**63 - 1))
    return head, f.blob("body", max_len=spec.MAX_RECORD)


def encode_body(head: SnapshotHead, body: SnapshotBody) -> bytes:
    return spec.pack({
        "v": spec.FORMAT_VERSION, "seq": head.seq, "prev": list(head.prev), "time": head.time_ns,
        "tree": body.tree, "paths": list(body.paths), "host": body.host, "user": body.user,
        "tags": list(body.tags), "name": body.name,
        "hardlinks": [[k, v] for k, v in sorted(body.hardlinks.items())], "stats": body.stats,
    })


MAX_LABEL = 256  # snapshot names, hosts, users and tags


def check_labels(name: str | None, host: str, tags: Sequence[str]) -> None:
    """Refuse, before anything is written, labels a reader would refuse later."""
    for what, value in [("name", name), ("host", host), *(("tag", t) for t in tags)]:
        if value is None:
            continue
        if not 0 < len(value) <= MAX_LABEL or any(ord(c) < 32 or c == "\x7f" for c in value):
            raise ValueError(f"{what} must be 1 to {MAX_LABEL} printable characters")
    if name is not None and (":" in name or name == "latest"):
        raise ValueError("a snapshot name cannot contain ':' or be 'latest'")
    if len(tags) > 4096:
        raise ValueError("at most 4096 tags")


def decode_body(data: bytes, snap_id: str, head: SnapshotHead) -> SnapshotBody:
    f = spec.Fields(spec.unpack(data, "snapshot", snap_id), "snapshot", snap_id)
    if f.integer("v") != spec.FORMAT_VERSION:
        raise f.fail("unknown version")
    bound = (f.integer("seq", hi=2**62), tuple(f.id_list("prev", 32, 4096)),
             f.integer("time", hi=2**63 - 1))
    if bound != (head.seq, head.prev, head.time_ns):
        raise f.fail("body belongs to another snapshot (replayed)")
    paths = f.items("paths", 65536)
    if not all(isinstance(p, bytes) and p.startswith(b"/") for p in paths):
        raise f.fail("malformed paths")
    hl = {}
    for row in f.items("hardlinks"):
        if not (isinstance(row, list) and len(row) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in row)):
            raise f.fail("malformed hardlink table")
        hl[row[0]] = row[1]
    stats = f.mapping("stats")
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in stats.items()):
        raise f.fail("malformed stats")
    name = None if f.raw("name") is None else f.text("name", MAX_LABEL)
    return SnapshotBody(tree=f.blob("tree", size=ID_LEN), paths=tuple(paths),
                        host=f.text("host", MAX_LABEL), user=f.text("user", MAX_LABEL),
                        tags=tuple(f.text_list("tags")), name=name,
                        hardlinks=hl, stats=stats)


def find_entry(entries: list[Entry], name: bytes) -> Entry | None:
    """Binary search: tree entries are sorted by name (the decoder enforces it)."""
    i = bisect.bisect_left(entries, name, key=lambda e: e.name)
    if i < len(entries) and entries[i].name == name:
        return entries[i]
    return None
