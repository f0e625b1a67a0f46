"""The file system model of ``repofs mount`` (repofs.vfs), without FUSE.

A fake repository holds trees and chunks in memory and counts what is loaded,
so the tests can show laziness as well as results.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repofs.errors import IntegrityError
from repofs.model import (
    CHAR,
    DIR,
    FIFO,
    FILE,
    SYMLINK,
    Entry,
    Part,
    Snapshot,
    SnapshotBody,
    SnapshotHead,
)
from repofs.vfs import ROOT, Attr, ChunkCache, Presentation, SnapshotFS, WouldBlock
from repofs.vfs.ahead import FIRST_WALK_FILES, files_after
from repofs.vfs.layout import contexts, local_time
from repofs.vfs.reader import OpenFile

T0 = 1_700_000_000 * 10**9
ACL = b"system.posix_acl_access"


class FakeLog:
    def __init__(self) -> None:
        self.snaps: list[Snapshot] = []

    def list(self) -> list[Snapshot]:
        return sorted(self.snaps, key=lambda s: (s.head.time_ns, s.head.seq, s.id))


class FakeRepo:
    def __init__(self) -> None:
        self.trees: dict[bytes, list[Entry]] = {}
        self.blobs: dict[bytes, bytes] = {}
        self.broken: set[bytes] = set()
        self.snapshots = FakeLog()
        self.tree_loads: Counter[bytes] = Counter()
        self.blob_reads: Counter[bytes] = Counter()
        self.index_loads = 0

    # the Source protocol
    def load_tree(self, tree_id: bytes) -> list[Entry]:
        self.tree_loads[tree_id] += 1
        return self.trees[tree_id]

    def read_blob(self, blob_id: bytes, blob_type: int) -> bytes:
        self.blob_reads[blob_id] += 1
        if blob_id in self.broken:
            raise IntegrityError("pack", "ab" * 32, "authentication failed")
        return self.blobs[blob_id]

    def load_index(self) -> None:
        self.index_loads += 1

    # building content
    def tree(self, entries: list[Entry]) -> bytes:
        tid = hashlib.sha256(repr(sorted(entries, key=lambda e: e.name)).encode()).digest()
        self.trees[tid] = sorted(entries, key=lambda e: e.name)
        return tid

    def chunk(self, data: bytes) -> Part:
        cid = hashlib.sha256(data).digest()
        self.blobs[cid] = data
        return Part(cid, len(data))

    def snapshot(self, root: list[Entry], time_ns: int = T0, host: str = "web1",
                 tags: tuple[str, ...] = (), name: str | None = None,
                 hardlinks: dict[int, int] | None = None) -> Snapshot:
        tree = self.tree(root)
        seq = len(self.snapshots.snaps)
        sid = hashlib.sha256(b"%d" % seq + tree).hexdigest()
        s = Snapshot(sid, SnapshotHead(seq, (), time_ns),
                     SnapshotBody(tree, (b"/",), host, "root", tags, name, hardlinks or {}, {}))
        self.snapshots.snaps.append(s)
        return s


def ent(name: bytes, type_: str = FILE, mode: int = 0o644, **kw: object) -> Entry:
    base: dict[str, object] = {"uid": 1000, "gid": 1000, "mtime_ns": T0 + 123, "ctime_ns": T0 + 456}
    base.update(kw)
    return Entry(name=name, type=type_, mode=mode, **base)  # type: ignore[arg-type]


def file(repo: FakeRepo, name: bytes, data: bytes, **kw: object) -> Entry:
    parts = (repo.chunk(data),) if data else ()
    return ent(name, FILE, size=len(data), parts=parts, **kw)


def directory(repo: FakeRepo, name: bytes, children: list[Entry], **kw: object) -> Entry:
    return ent(name, DIR, kw.pop("mode", 0o755), subtree=repo.tree(children), **kw)  # type: ignore[arg-type]


def listing(fs: SnapshotFS, ino: int) -> dict[bytes, tuple[int, Attr]]:
    out: dict[bytes, tuple[int, Attr]] = {}
    fh = fs.opendir(ino)

    def reply(name: bytes, child: int, attr: Attr, _next: int) -> bool:
        out[name] = (child, attr)
        return True

    fs.readdir(fh, 0, reply)
    fs.releasedir(fh)
    return out


def walk(fs: SnapshotFS, *names: bytes) -> tuple[int, Attr]:
    ino, attr = ROOT, fs.getattr(ROOT)
    for n in names:
        ino, attr = fs.lookup(ino, n)
    return ino, attr


def read_all(fs: SnapshotFS, ino: int, size: int) -> bytes:
    fh = fs.open(ino, 0)
    try:
        return bytes(fs.read(fh, 0, size + 10))
    finally:
        fs.release(fh)


@pytest.fixture
def repo() -> FakeRepo:
    return FakeRepo()


# -- layout ------------------------------------------------------------------------------
def test_root_layout_names_every_snapshot(repo: FakeRepo) -> None:
    s1 = repo.snapshot([file(repo, b"a", b"1")], T0, host="web1", tags=("daily",))
    s2 = repo.snapshot([file(repo, b"a", b"2")], T0 + 3600 * 10**9, host="db/1",
                       name="before-upgrade")
    fs = SnapshotFS(repo)
    assert sorted(listing(fs, ROOT)) == [b"history", b"hosts", b"ids", b"snapshots", b"tags"]
    ids_ino, _ = walk(fs, b"ids")
    assert sorted(listing(fs, ids_ino)) == sorted([s1.id.encode(), s2.id.encode()])
    snaps_ino, _ = walk(fs, b"snapshots")
    t1, t2 = local_time(T0).encode(), local_time(T0 + 3600 * 10**9).encode()
    assert sorted(listing(fs, snaps_ino)) == sorted([t1, t2 + b"_before-upgrade", b"latest"])
    latest, attr = walk(fs, b"snapshots", b"latest")
    assert stat.S_ISLNK(attr.mode) and fs.readlink(latest) == t2 + b"_before-upgrade"
    hosts_ino, _ = walk(fs, b"hosts")
    assert sorted(listing(fs, hosts_ino)) == [b"db%2F1", b"web1"]  # a '/' cannot be in a name
    assert list(listing(fs, walk(fs, b"tags", b"daily")[0])) == [t1]
    ino, _ = walk(fs, b"hosts", b"web1", t1, b"a")
    assert read_all(fs, ino, 1) == b"1"
    with pytest.raises(FileNotFoundError):
        walk(fs, b"ids", b"0" * 64)


def test_names_stay_unique_and_stable(repo: FakeRepo) -> None:
    a = repo.snapshot([], T0)
    b = repo.snapshot([], T0 + 5)  # the same second
    c = repo.snapshot([], T0 + 5)  # the same microsecond too
    ctxs = contexts(repo.snapshots.list(), {})
    names = [x.dirname for x in ctxs]
    assert len(set(names)) == 3
    assert names[0] == local_time(T0).encode()
    assert names[1] == local_time(T0 + 5, precise=True).encode()
    assert names[2].endswith(c.short_id.encode()) or names[1].endswith(b.short_id.encode())
    # an older snapshot appearing later does not take a name already shown
    earlier = repo.snapshot([], T0 - 1)
    again = contexts(repo.snapshots.list(), {x.id: x for x in ctxs})
    by_id = {x.id: x.dirname for x in again}
    assert by_id[a.id] == names[0] and by_id[earlier.id] != names[0]
    assert len(set(by_id.values())) == 4


def test_new_snapshots_appear_without_remount(repo: FakeRepo) -> None:
    now = [100.0]
    repo.snapshot([file(repo, b"a", b"1")], T0)
    fs = SnapshotFS(repo, refresh_seconds=3.0, clock=lambda: now[0])
    ids_ino, _ = walk(fs, b"ids")
    new = repo.snapshot([file(repo, b"b", b"2")], T0 + 10**9)
    assert new.id.encode() not in listing(fs, ids_ino)  # listed at most every few seconds
    now[0] += 3.5
    loads = repo.index_loads
    assert new.id.encode() in listing(fs, ids_ino)
    assert repo.index_loads == loads + 1  # the new snapshot's blobs become readable
    ino, _ = fs.lookup(ids_ino, new.id.encode())
    assert read_all(fs, fs.lookup(ino, b"b")[0], 1) == b"2"
    latest = walk(fs, b"snapshots", b"latest")[0]
    assert fs.readlink(latest) == local_time(T0 + 10**9).encode()


def test_snapshot_mode_shows_one_tree_at_the_root(repo: FakeRepo) -> None:
    s = repo.snapshot([file(repo, b"only", b"x"), directory(repo, b"d", [])])
    repo.snapshot([file(repo, b"other", b"y")], T0 + 1)
    fs = SnapshotFS(repo, snapshot=s)
    assert sorted(listing(fs, ROOT)) == [b"d", b"only"]
    assert stat.S_ISDIR(fs.getattr(ROOT).mode)


# -- lazy loading, inodes ---------------------------------------------------------------------
def test_trees_load_on_first_lookup_only(repo: FakeRepo) -> None:
    deep = directory(repo, b"deep", [file(repo, b"f", b"data")])
    big = directory(repo, b"big", [file(repo, b"%05d" % i, b"") for i in range(2000)])
    s = repo.snapshot([deep, big])
    fs = SnapshotFS(repo)
    assert not repo.tree_loads  # mounting reads no tree
    root_ino, _ = walk(fs, b"ids", s.id.encode())
    assert sorted(listing(fs, root_ino)) == [b"big", b"deep"]
    assert set(repo.tree_loads) == {s.body.tree}  # type: ignore[union-attr]
    walk(fs, b"ids", s.id.encode(), b"deep", b"f")
    assert deep.subtree in repo.tree_loads and big.subtree not in repo.tree_loads


def test_readdir_resumes_and_counts_references(repo: FakeRepo) -> None:
    names = [b"n%03d" % i for i in range(50)]
    s = repo.snapshot([file(repo, n, b"") for n in names])
    fs = SnapshotFS(repo, snapshot=s)
    fh = fs.opendir(ROOT)
    seen: list[tuple[bytes, int]] = []
    start = 0
    while True:
        budget = [7]
        batch: list[int] = []

        def reply(name: bytes, ino: int, attr: Attr, nxt: int, budget: list[int] = budget,
                  batch: list[int] = batch) -> bool:
            if budget[0] == 0:
                return False
            budget[0] -= 1
            seen.append((name, ino))
            batch.append(nxt)
            return True

        fs.readdir(fh, start, reply)
        if not batch:
            break
        start = batch[-1]
    fs.releasedir(fh)
    assert [n for n, _ in seen] == names  # every entry once, in order
    assert fs.statfs().inodes == 51  # refused entries left no inode behind
    for name, ino in seen:
        assert fs.lookup(ROOT, name)[0] == ino  # a looked-up name keeps its inode
    fs.forget([(ino, 2) for _, ino in seen])
    assert fs.statfs().inodes == 1  # forgotten by the kernel: gone
    with pytest.raises(FileNotFoundError):
        fs.getattr(seen[0][1])


def test_hardlinks_share_an_inode_per_snapshot(repo: FakeRepo) -> None:
    body = repo.chunk(b"shared")
    link = ent(b"x", FILE, size=6, parts=(body,), hardlink=7)
    lone = ent(b"lone", FILE, size=6, parts=(body,), hardlink=8)  # its other links were not saved
    d = directory(repo, b"d", [ent(b"y", FILE, size=6, parts=(body,), hardlink=7)])
    s1 = repo.snapshot([link, lone, d], T0, hardlinks={7: 2})
    s2 = repo.snapshot([link, lone, d], T0 + 10**9, hardlinks={7: 2})
    fs = SnapshotFS(repo)
    x_ino, x = walk(fs, b"ids", s1.id.encode(), b"x")
    y_ino, y = walk(fs, b"ids", s1.id.encode(), b"d", b"y")
    assert x_ino == y_ino and x.nlink == y.nlink == 2
    assert walk(fs, b"snapshots", local_time(T0).encode(), b"x")[0] == x_ino  # same snapshot
    assert walk(fs, b"ids", s2.id.encode(), b"x")[0] != x_ino  # another snapshot
    lone_ino, lone_attr = walk(fs, b"ids", s1.id.encode(), b"lone")
    assert lone_attr.nlink == 1 and lone_ino != x_ino
    assert read_all(fs, y_ino, 6) == b"shared"


# -- attributes -------------------------------------------------------------------------------
def test_attributes_are_shown_as_stored(repo: FakeRepo) -> None:
    hole, data = Part(None, 1 << 20), repo.chunk(b"z" * 5000)
    entries = [
        ent(b"sparse", FILE, 0o4755, size=(1 << 20) + 5000, parts=(hole, data),
            xattrs=((b"user.k", b"v"), (ACL, b"\x02\x00\x00\x00"))),
        ent(b"link", SYMLINK, 0o777, target=b"/etc/passwd"),
        ent(b"null", CHAR, 0o666, rdev=0x103, uid=0, gid=0),
        ent(b"pipe", FIFO, 0o600, mtime_ns=-5, ctime_ns=1),
        directory(repo, b"sticky", [], mode=0o1777),
    ]
    s = repo.snapshot(entries)
    fs = SnapshotFS(repo, snapshot=s)
    got = {n: a for n, (_, a) in listing(fs, ROOT).items()}
    sp = got[b"sparse"]
    assert sp.mode == stat.S_IFREG | 0o4755 and sp.size == (1 << 20) + 5000
    assert sp.blocks == 16  # 5000 bytes of data in 4 KiB blocks; the hole takes none
    assert (sp.uid, sp.gid, sp.mtime_ns, sp.ctime_ns) == (1000, 1000, T0 + 123, T0 + 456)
    assert got[b"link"].mode == stat.S_IFLNK | 0o777 and got[b"link"].size == 11
    assert got[b"null"].mode == stat.S_IFCHR | 0o666 and got[b"null"].rdev == 0x103
    assert got[b"pipe"].mode == stat.S_IFIFO | 0o600 and got[b"pipe"].mtime_ns == -5
    assert got[b"sticky"].mode == stat.S_IFDIR | 0o1777
    ino = fs.lookup(ROOT, b"sparse")[0]
    assert fs.listxattr(ino) == [b"user.k", ACL]
    assert fs.getxattr(ino, b"user.k") == b"v"
    with pytest.raises(OSError) as e:
        fs.getxattr(ino, b"user.missing")
    assert e.value.errno == errno.ENODATA
    assert fs.readlink(fs.lookup(ROOT, b"link")[0]) == b"/etc/passwd"
    with pytest.raises(OSError) as e:
        fs.readlink(ino)
    assert e.value.errno == errno.EINVAL


def test_owner_and_mode_overrides_hide_acls(repo: FakeRepo) -> None:
    s = repo.snapshot([ent(b"f", FILE, 0o664, xattrs=((b"user.k", b"v"), (ACL, b"x")))])
    fs = SnapshotFS(repo, Presentation(uid=5, gid=6, umask=0o027), snapshot=s)
    ino, a = fs.lookup(ROOT, b"f")
    assert (a.uid, a.gid, a.mode) == (5, 6, stat.S_IFREG | 0o640)
    assert fs.listxattr(ino) == [b"user.k"]  # an ACL would grant what the mode no longer shows


def test_writes_are_refused(repo: FakeRepo) -> None:
    s = repo.snapshot([file(repo, b"f", b"x"), directory(repo, b"d", [])])
    fs = SnapshotFS(repo, snapshot=s)
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(OSError) as e:
            fs.open(fs.lookup(ROOT, b"f")[0], flags)
        assert e.value.errno == errno.EROFS
    with pytest.raises(IsADirectoryError):
        fs.open(fs.lookup(ROOT, b"d")[0], os.O_RDONLY)


# -- reading ----------------------------------------------------------------------------------
def _make_file(repo: FakeRepo, sizes: list[tuple[int, bool]]) -> tuple[Entry, bytes]:
    parts, expected = [], b""
    for i, (size, is_hole) in enumerate(sizes):
        if is_hole:
            parts.append(Part(None, size))
            expected += bytes(size)
        else:
            data = bytes((i * 7 + j) % 251 for j in range(size))
            parts.append(repo.chunk(data))
            expected += data
    return ent(b"f", FILE, size=len(expected), parts=tuple(parts)), expected


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(0, 300), st.booleans()), min_size=0, max_size=8),
       reads=st.lists(st.tuples(st.integers(0, 2500), st.integers(0, 1200)), max_size=6),
       cache_bytes=st.sampled_from([1, 200, 1 << 20]))
def test_reads_at_any_offset_match_the_file(sizes: list[tuple[int, bool]],
                                            reads: list[tuple[int, int]],
                                            cache_bytes: int) -> None:
    repo = FakeRepo()
    entry, expected = _make_file(repo, sizes)
    fs = SnapshotFS(repo, snapshot=repo.snapshot([entry]), cache_bytes=cache_bytes)
    fh = fs.open(fs.lookup(ROOT, b"f")[0], 0)
    for off, size in reads:
        assert bytes(fs.read(fh, off, size)) == expected[off : off + size]
    assert fs.cache.bytes <= max(cache_bytes, 0)
    fs.release(fh)


@given(sizes=st.lists(st.integers(1, 100), min_size=1, max_size=10), off=st.integers(0, 1000),
       size=st.integers(1, 1000))
def test_a_read_plans_exactly_the_parts_it_covers(sizes: list[int], off: int, size: int) -> None:
    repo = FakeRepo()
    entry, _ = _make_file(repo, [(n, False) for n in sizes])
    plan = OpenFile(entry, "f").plan(off, size)
    assert sum(p.end - p.start for p in plan.pieces) == max(0, min(off + size, entry.size) - off)
    ids = [p.chunk_id for p in entry.parts]
    assert all(0 <= p.start < p.end <= p.size for p in plan.pieces)
    got = [p.chunk_id for p in plan.pieces]
    assert got == ids[ids.index(got[0]) : ids.index(got[0]) + len(got)] if got else True


def test_sequential_reads_ask_for_the_next_chunks(repo: FakeRepo) -> None:
    entry, _ = _make_file(repo, [(100, False)] * 5)
    f = OpenFile(entry, "f")
    assert [c for c, _ in f.plan(0, 50).ahead] == [p.chunk_id for p in entry.parts[1:]]
    assert f.plan(50, 100).ahead  # continues where the last read ended
    assert not f.plan(400, 10).ahead  # a jump: no read-ahead


def _tree_repo(repo: FakeRepo) -> tuple[Snapshot, list[bytes]]:
    """a/{empty, f1, f2, sub/{g1, g2}}, b/{h1}, and its files in the order tar opens them."""
    sub = directory(repo, b"sub", [file(repo, b"g1", b"g one"), file(repo, b"g2", b"g two")])
    a = directory(repo, b"a", [file(repo, b"f1", b"f one"), sub, file(repo, b"f2", b"f two"),
                               file(repo, b"empty", b"")])
    b = directory(repo, b"b", [file(repo, b"h1", b"h one")])
    return repo.snapshot([a, b]), [b"a/empty", b"a/f1", b"a/f2", b"a/sub/g1", b"a/sub/g2", b"b/h1"]


def test_the_walk_ahead_meets_files_in_the_order_tar_opens_them(repo: FakeRepo) -> None:
    s, _ = _tree_repo(repo)
    fs = SnapshotFS(repo, snapshot=s)
    f1, _ = walk(fs, b"a", b"f1")
    after = [e.name for _, e in files_after(fs.load_tree, fs.place(f1))]
    assert after == [b"f2", b"g1", b"g2", b"h1"]  # depth first, in readdir (name) order
    g2, _ = walk(fs, b"a", b"sub", b"g2")
    assert [e.name for _, e in files_after(fs.load_tree, fs.place(g2))] == [b"h1"]


def _root(s: Snapshot) -> bytes:
    assert s.body is not None
    return s.body.tree


def _wait_for(cond: Callable[[], bool]) -> None:
    """Wait for the read-ahead threads (no timing is asserted: the limit only ends a hang)."""
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, "read-ahead did not happen"
        time.sleep(0.001)


def test_opening_a_file_fetches_the_files_a_walker_opens_next(repo: FakeRepo) -> None:
    s, _ = _tree_repo(repo)
    fs = SnapshotFS(repo, snapshot=s)
    try:
        f1, _ = walk(fs, b"a", b"f1")
        fs.release(fs.open(f1, 0))
        h1 = repo.trees[repo.trees[_root(s)][1].subtree or b""][0]  # b/h1
        cid = h1.parts[0].chunk_id
        assert cid is not None
        _wait_for(lambda: fs.cache.peek(cid) is not None)  # across directories, depth first
        g1, _ = walk(fs, b"a", b"sub", b"g1")
        fh = fs.open(g1, 0)
        assert bytes(fs.cached_content(fh) or b"") == b"g one"  # ready to hand over whole
        assert repo.blob_reads[cid] == 1  # the walk went on; nothing was fetched twice
    finally:
        fs.close()


def test_a_damaged_chunk_fetched_ahead_is_still_an_error_for_the_reader(repo: FakeRepo) -> None:
    s, _ = _tree_repo(repo)
    f2 = repo.trees[repo.trees[_root(s)][0].subtree or b""][2]
    bad = f2.parts[0].chunk_id
    assert bad is not None
    repo.broken.add(bad)
    fs = SnapshotFS(repo, snapshot=s)
    try:
        fs.release(fs.open(walk(fs, b"a", b"f1")[0], 0))
        _wait_for(lambda: repo.blob_reads[bad] >= 1)  # tried ahead, failed, not cached
        fh = fs.open(walk(fs, b"a", b"f2")[0], 0)
        assert fs.cached_content(fh) is None
        with pytest.raises(IntegrityError):
            fs.read(fh, 0, 100)
    finally:
        fs.close()


def test_a_walk_reaches_further_only_while_the_reader_follows_it(repo: FakeRepo) -> None:
    files = [file(repo, b"f%03d" % i, b"data %d" % i) for i in range(100)]
    fs = SnapshotFS(repo, snapshot=repo.snapshot(files))
    try:
        fs.release(fs.open(fs.lookup(ROOT, b"f050")[0], 0))  # one file, here and there
        walk_ = fs.ahead._walk
        assert walk_ is not None
        _wait_for(lambda: walk_.resting or walk_.done)
        assert len(repo.blob_reads) == FIRST_WALK_FILES  # not a burst of 1024 files
        for i in range(51, 60):  # the reader follows: the walk goes further each time
            nxt = files[i + 1].parts[0].chunk_id
            assert nxt is not None
            _wait_for(lambda c=nxt: c in repo.blob_reads)  # type: ignore[misc]  # (never overtake it)
            fs.release(fs.open(fs.lookup(ROOT, b"f%03d" % i)[0], 0))
        _wait_for(lambda: len(repo.blob_reads) == 49)  # to the end of the directory
    finally:
        fs.close()


def test_lookups_that_need_no_repository_read_answer_without_blocking(repo: FakeRepo) -> None:
    s, _ = _tree_repo(repo)
    fs = SnapshotFS(repo, snapshot=s)
    a, _ = fs.lookup(ROOT, b"a")
    with pytest.raises(WouldBlock):  # a's tree is not loaded yet
        fs.lookup(a, b"f1", block=False)
    with pytest.raises(WouldBlock):
        fs.opendir(a, block=False)
    loads = sum(repo.tree_loads.values())
    assert fs.lookup(a, b"f1") == fs.lookup(a, b"f1", block=False)  # the same answer
    fs.releasedir(fs.opendir(a, block=False))
    with pytest.raises(FileNotFoundError):
        fs.lookup(a, b"nope", block=False)
    assert sum(repo.tree_loads.values()) == loads + 1
    layout = SnapshotFS(repo)
    with pytest.raises(WouldBlock):  # the layout may list snapshots: never in the loop
        layout.lookup(ROOT, b"ids", block=False)


def test_a_sequential_reader_is_done_with_the_chunks_it_passed(repo: FakeRepo) -> None:
    entry, _ = _make_file(repo, [(100, False)] * 3)
    f = OpenFile(entry, "f")
    assert f.plan(0, 150).passed == [entry.parts[0].chunk_id]
    assert f.plan(150, 50).passed == [entry.parts[1].chunk_id]
    assert f.plan(0, 10).passed == []  # a jump back: not sequential
    cache = ChunkCache(lambda cid: cid * 10, max_bytes=30)
    for c in (b"a", b"b"):
        cache.get(c, 10)
    cache.demote([b"b"])
    cache.get(b"c", 10)
    cache.get(b"d", 10)  # over the limit: the demoted chunk goes first
    assert cache.peek(b"b") is None and cache.peek(b"a") is not None


def test_a_small_file_whose_chunks_are_cached_can_be_handed_over_whole(repo: FakeRepo) -> None:
    hole = Part(None, 100)
    data = repo.chunk(b"tail")
    entry = ent(b"f", FILE, size=104, parts=(hole, data))
    fs = SnapshotFS(repo, snapshot=repo.snapshot([entry, file(repo, b"empty", b"")]))
    fh = fs.open(fs.lookup(ROOT, b"f")[0], 0)
    assert fs.cached_content(fh) is None  # not fetched yet: never blocks to fetch it
    assert data.chunk_id is not None
    fs.cache.get(data.chunk_id, 4)
    assert bytes(fs.cached_content(fh) or b"") == bytes(100) + b"tail"
    assert fs.cached_content(fh, limit=50) is None
    assert fs.cached_content(fs.open(fs.lookup(ROOT, b"empty")[0], 0)) is None


def test_content_is_given_to_an_open_handler_only_while_no_other_handle_is_open(
        repo: FakeRepo) -> None:
    # the kernel makes a hand-over wait for reads of the same pages: with another handle
    # open one may be pending, which the handler's own thread would have to answer
    entry = file(repo, b"f", b"some content")
    fs = SnapshotFS(repo, snapshot=repo.snapshot([entry]))
    ino = fs.lookup(ROOT, b"f")[0]
    cid = entry.parts[0].chunk_id
    assert cid is not None
    fs.cache.get(cid, entry.size)
    first = fs.open(ino, 0)
    second = fs.open(ino, 0)
    assert fs.content_now(second) is None  # another handle was open
    assert bytes(fs.content_now(first) or b"") == b"some content"
    fs.release(first)
    fs.release(second)
    assert fs.content_now(third := fs.open(ino, 0)) is None  # handed over once already
    fs.release(third)
    other = file(repo, b"g", b"other")
    fs2 = SnapshotFS(repo, snapshot=repo.snapshot([other]))
    g = fs2.lookup(ROOT, b"g")[0]
    fs2.release(fs2.open(g, 0))
    fs2.release(fs2.open(g, 0))  # both closed: alone again
    gcid = other.parts[0].chunk_id
    assert gcid is not None
    fs2.cache.get(gcid, other.size)
    assert bytes(fs2.content_now(fs2.open(g, 0)) or b"") == b"other"


def test_damaged_chunk_is_an_error_never_zeros(repo: FakeRepo) -> None:
    good = file(repo, b"good", b"fine data")
    bad = file(repo, b"bad", b"will be damaged")
    bad_id = bad.parts[0].chunk_id
    assert bad_id is not None
    repo.broken.add(bad_id)
    fs = SnapshotFS(repo, snapshot=repo.snapshot([good, bad]))
    with pytest.raises(IntegrityError):
        read_all(fs, fs.lookup(ROOT, b"bad")[0], 15)
    assert read_all(fs, fs.lookup(ROOT, b"good")[0], 9) == b"fine data"
    repo.broken.clear()  # a failure is not cached: the next read tries again
    assert read_all(fs, fs.lookup(ROOT, b"bad")[0], 15) == b"will be damaged"


def test_chunk_of_the_wrong_size_is_an_error(repo: FakeRepo) -> None:
    part = repo.chunk(b"short")
    entry = ent(b"f", FILE, size=10, parts=(Part(part.chunk_id, 10),))
    fs = SnapshotFS(repo, snapshot=repo.snapshot([entry]))
    with pytest.raises(IntegrityError, match="size differs"):
        read_all(fs, fs.lookup(ROOT, b"f")[0], 10)


def test_chunk_cache_fetches_once_for_concurrent_readers() -> None:
    calls: Counter[bytes] = Counter()
    gate = threading.Event()

    def fetch(cid: bytes) -> bytes:
        calls[cid] += 1
        gate.wait(5)
        return cid * 10

    cache = ChunkCache(fetch, max_bytes=25)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(b"a", 10)))
               for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join()
    assert results == [b"a" * 10] * 8 and calls[b"a"] == 1
    cache.get(b"b", 10)
    cache.get(b"c", 10)  # 30 bytes > 25: the least recently used goes
    assert cache.peek(b"a") is None and cache.bytes == 20


# -- history ----------------------------------------------------------------------------------
def _history_repo(repo: FakeRepo) -> list[Snapshot]:
    contents = [
        {b"f": b"v1", b"g": b"same", b"h": b"A"},
        {b"f": b"v2", b"g": b"same", b"h": b"B"},
        {b"f": b"v3", b"g": b"same", b"h": b"A", b"new": b"n"},
    ]
    snaps = []
    for i, files in enumerate(contents):
        kids = [file(repo, n, d, mtime_ns=T0 + i) for n, d in files.items()]
        secret = directory(repo, b"secret", [file(repo, b"s%d" % i, b"x")],
                           mode=0o700 if i == 0 else 0o755, uid=0, gid=0)
        home = directory(repo, b"home", [*kids, secret])
        snaps.append(repo.snapshot([home], T0 + i * 86400 * 10**9))
    return snaps


def test_history_lists_each_distinct_version(repo: FakeRepo) -> None:
    snaps = _history_repo(repo)
    fs = SnapshotFS(repo)
    names = [local_time(s.head.time_ns).encode() for s in snaps]
    f_ino, f_attr = walk(fs, b"history", b"home", b"f")
    assert stat.S_ISDIR(f_attr.mode)
    versions = listing(fs, f_ino)
    assert sorted(versions) == names  # changed in every snapshot
    for name, data in zip(names, [b"v1", b"v2", b"v3"], strict=True):
        assert read_all(fs, versions[name][0], 2) == data
    assert sorted(listing(fs, walk(fs, b"history", b"home", b"g")[0])) == names[:1]
    assert sorted(listing(fs, walk(fs, b"history", b"home", b"h")[0])) == names[:2]  # A, B, A
    assert sorted(listing(fs, walk(fs, b"history", b"home", b"new")[0])) == names[2:]
    home = listing(fs, walk(fs, b"history", b"home")[0])
    assert sorted(home) == [b".versions", b"f", b"g", b"h", b"new", b"secret"]
    assert len(listing(fs, walk(fs, b"history", b"home", b".versions")[0])) == 3
    # a version is the stored entry: same inode as under snapshots/
    v_ino = walk(fs, b"history", b"home", b"f", names[1])[0]
    assert read_all(fs, v_ino, 2) == b"v2"


def test_history_directories_hide_what_any_snapshot_hid(repo: FakeRepo) -> None:
    _history_repo(repo)
    fs = SnapshotFS(repo)
    _, secret = walk(fs, b"history", b"home", b"secret")
    assert (secret.uid, secret.mode & 0o777) == (0, 0o700)  # 0700 once, 0755 later
    _, f = walk(fs, b"history", b"home", b"f")
    assert f.mode & 0o777 == 0o555 and f.uid == 1000  # readable files: listable versions


class ForkableRepo(FakeRepo):
    fork_safe = True


def test_decoding_processes_serve_the_walk_ahead_and_go_with_close() -> None:
    repo = ForkableRepo()
    files = [file(repo, b"f%02d" % i, b"content %d" % i) for i in range(40)]
    fs = SnapshotFS(repo, snapshot=repo.snapshot(files))
    pids = fs.start_decoders(2)
    try:
        assert len(pids) == 2 and all(os.path.exists(f"/proc/{p}") for p in pids)
        first = fs.lookup(ROOT, b"f00")[0]
        fs.release(fs.open(first, 0))  # a walk starts: the next files' chunks, decoded there
        nxt = files[FIRST_WALK_FILES - 1].parts[0].chunk_id  # within a new walk's reach
        assert nxt is not None
        _wait_for(lambda: fs.cache.peek(nxt) is not None)
        assert repo.blob_reads[nxt] == 0  # read by a child, with its copy of the repository
        for i, e in enumerate(files):
            fh = fs.open(fs.lookup(ROOT, e.name)[0], 0)
            assert bytes(fs.read(fh, 0, 100)) == b"content %d" % i
            fs.release(fh)
    finally:
        fs.close()
    for p in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(p, os.WNOHANG)


def test_no_decoding_processes_for_a_source_that_cannot_be_forked_or_when_fork_fails(
        repo: FakeRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = SnapshotFS(repo, snapshot=repo.snapshot([file(repo, b"f", b"x")]))
    assert fs.start_decoders(2) == []  # FakeRepo is not fork-safe (as an ssh repository)
    fs.close()

    def no_fork(*_a: object, **_k: object) -> None:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr("repofs.vfs.fs.Decoders", no_fork)
    forkable = ForkableRepo()
    fs = SnapshotFS(forkable, snapshot=forkable.snapshot([file(forkable, b"f", b"x")]))
    try:
        assert fs.start_decoders(2) == []
        fh = fs.open(fs.lookup(ROOT, b"f")[0], 0)
        assert bytes(fs.read(fh, 0, 10)) == b"x"  # decoded here instead
    finally:
        fs.close()
