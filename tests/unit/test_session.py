"""session: dedup, compression, packing, and the write order packs -> index -> snapshot."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repofs import crypto, keys, spec
from repofs.compression import Codec
from repofs.envelope import HEADER_LEN
from repofs.errors import IntegrityError
from repofs.index import decode_segment
from repofs.model import FILE, Entry, Part, SnapshotBody, encode_tree
from repofs.pack import read_trailer
from repofs.repository import Repository, _encode_config
from repofs.session import WriteSession
from repofs.store import LocalStore


def make_repo(root: Path) -> Repository:
    repo_id = crypto.random_bytes(32)
    return Repository(LocalStore.create(root, _encode_config(repo_id)), keys.generate(repo_id))


@pytest.fixture(scope="module")
def shared(shm_module_dir: Path) -> Repository:
    """One repository for the tests that only add distinct content."""
    return make_repo(shm_module_dir / "repo")


@pytest.fixture
def repo(shm_dir: Path) -> Repository:
    return make_repo(shm_dir / "repo")


def body(tree: bytes, name: str | None = None) -> SnapshotBody:
    return SnapshotBody(tree=tree, paths=(b"/x",), host="h", user="u", tags=(), name=name,
                        hardlinks={}, stats={})


def reopened(repo: Repository) -> Repository:
    fresh = Repository(LocalStore.open(repo.store.root), repo.keys)
    fresh.load_index()
    return fresh


# -- adding and dedup ---------------------------------------------------------------------------
@settings(max_examples=25)
@given(st.lists(st.binary(max_size=3000), max_size=12), st.sampled_from(["zstd", "none"]))
def test_added_blobs_read_back(shared: Repository, blobs: list[bytes], codec: str) -> None:
    salt = os.urandom(8)  # distinct content per example in the shared repository
    blobs = [salt + b for b in blobs]
    with WriteSession(shared, Codec(codec)) as s:
        ids = [s.add(spec.BLOB_DATA, b) for b in blobs]
        s.flush()
    assert ids == [shared.blob_id(b, spec.BLOB_DATA) for b in blobs]
    for blob_id, b in zip(ids, blobs, strict=True):
        assert shared.read_blob(blob_id, spec.BLOB_DATA) == b
    fresh = reopened(shared)
    for blob_id, b in zip(ids, blobs, strict=True):
        assert fresh.read_blob(blob_id, spec.BLOB_DATA) == b


def test_dedup_within_and_across_sessions(repo: Repository) -> None:
    with WriteSession(repo, Codec()) as s:
        a = s.add(spec.BLOB_DATA, b"same" * 100)
        assert s.add(spec.BLOB_DATA, memoryview(b"same" * 100)) == a
        assert s.known(a) and s.known(a, spec.BLOB_DATA) and not s.known(a, spec.BLOB_TREE)
        s.flush()
        assert (s.stats.blobs_new, s.stats.blobs_dedup, s.stats.bytes_new_raw) == (1, 1, 400)
    with WriteSession(reopened(repo), Codec()) as s2:
        assert s2.add(spec.BLOB_DATA, b"same" * 100) == a
        s2.flush()
        assert (s2.stats.blobs_new, s2.stats.blobs_dedup, s2.stats.packs) == (0, 1, 0)
    assert len(list(repo.store.list(spec.NS_DATA))) == 1
    assert len(list(repo.store.list(spec.NS_INDEX))) == 1  # nothing new: no empty segment


def test_compression_and_stats(repo: Repository) -> None:
    with WriteSession(repo, Codec("zstd", 3)) as s:
        s.add(spec.BLOB_DATA, b"z" * 1_000_000)
        s.add(spec.BLOB_DATA, os.urandom(100_000))
        s.flush()
        st_ = s.stats
    assert st_.blobs_new == 2 and st_.bytes_new_raw == 1_100_000 and st_.packs == 1
    on_disk = sum(repo.store.size(ns, n) for ns in (spec.NS_DATA, spec.NS_INDEX)
                  for n in repo.store.list(ns))
    assert st_.bytes_stored == on_disk
    assert 100_000 < on_disk < 120_000  # the zeros compressed, the random bytes padded


def test_a_chunk_with_a_trees_bytes_keeps_both_readable(repo: Repository) -> None:
    """A file may hold exactly the bytes of a tree blob: ids are keyed per type, so the
    chunk and the tree are two blobs and neither can stand in for the other."""
    leaf = Entry(name=b"f", type=FILE, mode=0o644, uid=0, gid=0, mtime_ns=1, ctime_ns=1)
    tree = encode_tree([leaf])
    for order in ((spec.BLOB_DATA, spec.BLOB_TREE), (spec.BLOB_TREE, spec.BLOB_DATA)):
        r = make_repo(repo.store.root.parent / f"r{order[0]}")
        with WriteSession(r, Codec()) as s:
            first = s.add(order[0], tree)
            s.flush()
        with WriteSession(reopened(r), Codec()) as s:
            second = s.add(order[1], tree)
            assert second != first and s.stats.blobs_new == 1
            tree_id = first if order[0] == spec.BLOB_TREE else second
            s.commit(body(tree_id), 1)
        fresh = reopened(r)
        chunk_id = second if tree_id == first else first
        assert fresh.read_blob(chunk_id, spec.BLOB_DATA) == tree
        assert fresh.load_tree(tree_id) == [leaf]
        with pytest.raises(IntegrityError):
            fresh.read_blob(chunk_id, spec.BLOB_TREE)


# -- packs ---------------------------------------------------------------------------------------
def test_data_and_trees_go_to_separate_packs(repo: Repository) -> None:
    with WriteSession(repo, Codec()) as s:
        d = s.add(spec.BLOB_DATA, b"data blob")
        t = s.add(spec.BLOB_TREE, encode_tree([]))
        s.flush()
    assert repo.index.lookup(d, spec.BLOB_DATA).pack != repo.index.lookup(t, spec.BLOB_TREE).pack
    for pack in repo.index.packs():
        data = repo.store.get(spec.NS_DATA, pack)
        cipher = repo.open_cipher(data[:HEADER_LEN], spec.KIND_PACK, pack)
        assert len({e.blob_type for e in read_trailer(repo.pack_trailer_cipher(cipher), data)}) == 1


def test_full_packs_are_split(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec, "PACK_TARGET", 20_000)
    blobs = [os.urandom(7000) for _ in range(30)]
    with WriteSession(repo, Codec()) as s:
        ids = [s.add(spec.BLOB_DATA, b) for b in blobs]
        s.flush()
        assert s.stats.packs == len(list(repo.store.list(spec.NS_DATA))) >= 9
    [seg] = list(repo.store.list(spec.NS_INDEX))  # one segment names every pack
    data = repo.store.get(spec.NS_INDEX, seg)
    listed = decode_segment(repo.open_cipher(data[:HEADER_LEN], spec.KIND_INDEX, seg), data)
    assert {p for p, _ in listed} == set(repo.store.list(spec.NS_DATA))
    fresh = reopened(repo)
    for blob_id, b in zip(ids, blobs, strict=True):
        assert fresh.read_blob(blob_id, spec.BLOB_DATA) == b


def test_pack_blob_count_limit(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec, "PACK_MAX_BLOBS", 5)
    with WriteSession(repo, Codec()) as s:
        for i in range(23):
            s.add(spec.BLOB_DATA, b"blob %d" % i)
        s.flush()
        assert s.stats.packs == 5


# -- write order -----------------------------------------------------------------------------------
def test_commit_writes_packs_then_index_then_snapshot(repo: Repository,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real_put = repo.store.put

    def spy(namespace: str, name: str, data: bytes | memoryview) -> bool:
        order.append(namespace)
        return real_put(namespace, name, data)

    monkeypatch.setattr(repo.store, "put", spy)
    with WriteSession(repo, Codec()) as s:
        s.add(spec.BLOB_DATA, b"one")
        tree = s.add(spec.BLOB_TREE, encode_tree([]))
        snap = s.commit(body(tree), 5)
    assert order == ["data", "data", "index", "snapshots"]
    assert [x.id for x in reopened(repo).snapshots.list()] == [snap.id]


def test_a_crash_before_commit_leaves_no_snapshot(repo: Repository) -> None:
    with WriteSession(repo, Codec()) as s:
        blob = s.add(spec.BLOB_DATA, b"written but never committed")
        s.flush()
    fresh = reopened(repo)
    assert fresh.snapshots.list() == []
    assert fresh.read_blob(blob, spec.BLOB_DATA) == b"written but never committed"


def test_a_failing_pack_write_fails_the_session(repo: Repository,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(namespace: str, name: str, data: bytes | memoryview) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(repo.store, "put", broken)
    with WriteSession(repo, Codec()) as s:
        tree = s.add(spec.BLOB_TREE, encode_tree([]))
        with pytest.raises(OSError, match="No space"):
            s.commit(body(tree), 1)
    monkeypatch.undo()
    assert list(repo.store.list(spec.NS_SNAPSHOTS)) == []
    assert list(repo.store.list(spec.NS_INDEX)) == []


def test_commit_refuses_a_taken_name_after_writing_data(repo: Repository) -> None:
    from repofs.errors import NameTaken

    with WriteSession(repo, Codec()) as s:
        tree = s.add(spec.BLOB_TREE, encode_tree([]))
        s.commit(body(tree, name="weekly"), 1)
    with WriteSession(repo, Codec()) as s, pytest.raises(NameTaken):
        s.commit(body(tree, name="weekly"), 2)
    assert len(list(repo.store.list(spec.NS_SNAPSHOTS))) == 1


def test_many_blobs_through_the_queues(repo: Repository) -> None:
    blobs = [b"%d" % i * 50 for i in range(500)]
    with WriteSession(repo, Codec()) as s:
        ids = [s.add(spec.BLOB_DATA, memoryview(b)) for b in blobs]
        s.flush()
        assert s.stats.blobs_new == 500
    fresh = reopened(repo)
    assert all(fresh.read_blob(i, spec.BLOB_DATA) == b for i, b in zip(ids, blobs, strict=True))


def test_close_stops_the_worker_threads(repo: Repository) -> None:
    before = {t.name for t in threading.enumerate()}
    s = WriteSession(repo, Codec())
    s.add(spec.BLOB_DATA, b"x" * 1000)
    s.close()
    after = {t.name for t in threading.enumerate() if t.name.startswith("repofs-")}
    assert after <= before


def test_parts_of_a_file_read_back_in_order(repo: Repository) -> None:
    data = os.urandom(600_000)
    with WriteSession(repo, Codec()) as s:
        parts = tuple(Part(s.add(spec.BLOB_DATA, data[i : i + 200_000]), 200_000)
                      for i in range(0, len(data), 200_000))
        entry = Entry(name=b"f", type=FILE, mode=0o600, uid=0, gid=0, mtime_ns=0, ctime_ns=0,
                      size=len(data), parts=parts)
        tree = s.add(spec.BLOB_TREE, encode_tree([entry]))
        snap = s.commit(body(tree), 1)
    fresh = reopened(repo)
    got = fresh.snapshots.read(snap.id)
    [e] = fresh.load_tree(got.body.tree)  # type: ignore[union-attr]
    assert b"".join(d for _, d, _ in fresh.iter_chunks(e) if d is not None) == data


def test_small_blobs_in_batches_and_large_ones_interleaved(repo: Repository) -> None:
    """Small blobs wait in batches while large ones go alone; all land, none twice."""
    from repofs import session as session_mod

    sizes = [10, session_mod._SMALL_BELOW - 1, session_mod._SMALL_BELOW, 200_000] * 150
    blobs = [os.urandom(n) for n in sizes]
    with WriteSession(repo, Codec()) as s:
        ids = [s.add(spec.BLOB_DATA, b) for b in blobs]
        ids += [s.add(spec.BLOB_DATA, b) for b in blobs[:50]]  # dedup within the session
        s.flush()
        assert s.stats.blobs_new == len(blobs)
        assert s.stats.blobs_dedup == 50
    fresh = reopened(repo)
    for blob_id, b in zip(ids, blobs, strict=False):
        assert fresh.read_blob(blob_id, spec.BLOB_DATA) == b


def test_add_stream_keeps_order_and_passes_errors_on(repo: Repository) -> None:
    blobs = [os.urandom(1000 + i) for i in range(20)] * 2  # the second half deduplicates
    with WriteSession(repo, Codec()) as s:
        got = list(s.add_stream(spec.BLOB_DATA, (memoryview(b) for b in blobs)))
        assert got == [(repo.blob_id(b, spec.BLOB_DATA), len(b)) for b in blobs]
        assert (s.stats.blobs_new, s.stats.blobs_dedup) == (20, 20)

        def failing() -> Iterator[memoryview]:
            yield memoryview(b"first")
            raise OSError(5, "read error")

        with pytest.raises(OSError, match="read error"):
            list(s.add_stream(spec.BLOB_DATA, failing()))
        s.flush()
    fresh = reopened(repo)
    for blob_id, _ in got:
        fresh.read_blob(blob_id, spec.BLOB_DATA)


def test_a_dry_session_counts_as_a_real_one_and_writes_nothing(repo: Repository) -> None:
    blobs = [os.urandom(n) for n in (10, 70_000, 300_000)] + [b"same", b"same"]
    with WriteSession(repo, Codec.parse("zstd,3")) as real:
        stored = real.add(spec.BLOB_DATA, b"already stored")
        real.commit(body(real.add(spec.BLOB_TREE, encode_tree([]))), 1)
    before = sorted(p.relative_to(repo.store.root) for p in repo.store.root.rglob("*"))
    with WriteSession(repo, Codec.parse("zstd,3"), dry_run=True) as dry:
        ids = [dry.add(spec.BLOB_DATA, b) for b in blobs]
        assert dry.add(spec.BLOB_DATA, b"already stored") == stored
        dry.flush()
        with pytest.raises(RuntimeError):
            dry.commit(body(ids[0]), 2)
    assert sorted(p.relative_to(repo.store.root) for p in repo.store.root.rglob("*")) == before
    assert ids == [repo.blob_id(b, spec.BLOB_DATA) for b in blobs]
    assert (dry.stats.blobs_new, dry.stats.blobs_dedup) == (4, 2)
    assert dry.stats.bytes_new_raw == sum(map(len, blobs[:4]))
    assert dry.stats.bytes_stored == 0 and dry.stats.packs == 0
