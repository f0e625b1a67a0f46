"""prune and gc: two phases, grace, repacking, reprieves, and creates running meanwhile."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from repofs import forget, gc, keys, retention, signed, spec
from repofs.checker import Checker
from repofs.compression import Codec
from repofs.errors import NeedsDirectAccess, NotPermitted, PruneConflict
from repofs.model import SnapshotBody
from repofs.pack import BlobEntry, PackBuilder
from repofs.prune import prune
from repofs.repository import Repository
from repofs.session import WriteSession
from repofs.store import LocalStore
from tests.unit.adminkit import (
    as_capability,
    assert_restores,
    backup,
    contents,
    make_repo,
    reopen,
    tree_of,
)

HOUR = 3600 * 10**9


@pytest.fixture
def repo(shm_dir: Path) -> Repository:
    return make_repo(shm_dir / "repo")


def forget_ids(repo: Repository, *ids: str) -> None:
    forget.commit(repo, forget.plan_ids(repo, list(ids)))


def data_bytes(repo: Repository) -> int:
    return sum(repo.store.size(spec.NS_DATA, p) for p in repo.store.list(spec.NS_DATA))


def intact(repo: Repository) -> None:
    fresh = reopen(repo)
    report = Checker(fresh, read_data=True).run()
    assert report.intact, [p.line() for p in report.problems]


def test_forget_then_prune_frees_the_space_and_keeps_the_rest(repo: Repository) -> None:
    a = {"x": os.urandom(300_000), "y": b"shared" * 1000}
    b = {"x": os.urandom(300_000), "y": b"shared" * 1000}
    s1, s2 = backup(repo, a), backup(repo, b)
    before = data_bytes(repo)
    forget_ids(repo, s1.id)
    assert [s.id for s in reopen(repo).snapshots.list()] == [s2.id]
    report = prune(repo, grace_ns=0)
    assert report.deleted_snapshots == [s1.id]
    assert not repo.store.exists(spec.NS_SNAPSHOTS, s1.id)
    assert data_bytes(repo) < before - 250_000
    assert_restores(repo, {s2.id: b})
    intact(repo)
    # a new backup on top of the pruned history lists and chains across the gap
    s3 = backup(repo, a)
    assert_restores(repo, {s2.id: b, s3.id: a})
    intact(repo)


def test_nothing_is_deleted_before_the_grace_period(repo: Repository) -> None:
    s1 = backup(repo, {"x": os.urandom(200_000)})
    s2 = backup(repo, {"x": os.urandom(200_000)})
    forget_ids(repo, s1.id)
    now = time.time_ns() + 25 * HOUR  # packs younger than the grace period are left alone
    assert not prune(reopen(repo), grace_ns=24 * HOUR).condemned_packs
    first = prune(repo, grace_ns=24 * HOUR, now_ns=now)
    assert first.condemned_packs and not first.deleted_packs and first.condemn_record
    packs = set(repo.store.list(spec.NS_DATA))
    assert set(first.condemned_packs) <= packs
    early = prune(reopen(repo), grace_ns=24 * HOUR, now_ns=now + 23 * HOUR)
    assert not early.deleted_packs
    late = prune(reopen(repo), grace_ns=24 * HOUR, now_ns=now + 25 * HOUR)
    assert set(late.deleted_packs) == set(first.condemned_packs)
    assert_restores(repo, {s2.id: contents(repo, s2)})
    intact(repo)


def test_a_mostly_empty_pack_is_repacked(repo: Repository) -> None:
    small, big = os.urandom(20_000), os.urandom(2_000_000)
    s1 = backup(repo, {"small": small, "big": big})
    s2 = backup(repo, {"small": small})
    forget_ids(repo, s1.id)
    report = prune(repo, grace_ns=0)
    assert report.repacked
    assert data_bytes(repo) < 1_000_000
    assert_restores(repo, {s2.id: {"small": small}})
    intact(repo)
    again = prune(reopen(repo), grace_ns=0)  # stable: nothing left to do
    assert not (again.repacked or again.condemned_packs or again.deleted_packs)


def test_a_create_running_across_a_prune_does_not_commit_condemned_data(
        repo: Repository) -> None:
    gone = os.urandom(100_000)
    s1 = backup(repo, {"gone": gone})
    s2 = backup(repo, {"other": b"o" * 100})
    forget_ids(repo, s1.id)
    writer = as_capability(repo, keys.CAP_WRITE_ONLY, LocalStore(repo.store.root))
    with WriteSession(writer, Codec()) as session:
        tree = tree_of(session, {"gone": gone})  # dedups against the pack prune condemns
        prune(repo, grace_ns=24 * HOUR, now_ns=time.time_ns() + 25 * HOUR)  # while it runs
        body = SnapshotBody(tree=tree, paths=(b"/src",), host="h", user="u", tags=(),
                            name=None, hardlinks={}, stats={})
        with pytest.raises(PruneConflict):
            session.commit(body, time.time_ns())
    # a new create stores the data again instead of reusing the condemned copy
    s3 = backup(as_capability(repo, keys.CAP_WRITE_ONLY, LocalStore(repo.store.root)),
                {"gone": gone})
    later = prune(reopen(repo), grace_ns=24 * HOUR, now_ns=time.time_ns() + 50 * HOUR)
    assert later.deleted_packs
    assert_restores(repo, {s2.id: {"other": b"o" * 100}, s3.id: {"gone": gone}})
    intact(repo)


def test_a_pack_a_new_snapshot_needs_is_reprieved_and_repacked(repo: Repository) -> None:
    gone = os.urandom(100_000)
    s1 = backup(repo, {"gone": gone})
    forget_ids(repo, s1.id)
    now = time.time_ns() + 2 * HOUR
    prune(repo, grace_ns=HOUR, now_ns=now)
    # an old client that never read the condemn record commits a snapshot reusing the data
    old = reopen(repo)
    with WriteSession(old, Codec()) as session:
        session._condemned = frozenset()
        tree = tree_of(session, {"gone": gone})
        session.flush()
        body = SnapshotBody(tree=tree, paths=(b"/src",), host="h", user="u", tags=(),
                            name=None, hardlinks={}, stats={})
        s2 = old.snapshots.commit(body, time.time_ns())
    report = prune(reopen(repo), grace_ns=HOUR, now_ns=now + 2 * HOUR)
    assert report.reprieved and not report.deleted_packs
    assert report.repacked == report.reprieved
    assert_restores(repo, {s2.id: {"gone": gone}})
    final = prune(reopen(repo), grace_ns=HOUR, now_ns=now + 4 * HOUR)
    assert set(final.deleted_packs) == set(report.reprieved)
    assert_restores(repo, {s2.id: {"gone": gone}})
    intact(repo)


def test_a_lying_index_entry_never_costs_the_true_copy(repo: Repository) -> None:
    keep = os.urandom(50_000)
    s1 = backup(repo, {"keep": keep})
    s2 = backup(repo, {"junk": os.urandom(400_000)})
    junk_pack = next(iter(reopen(repo).index.locations(
        contents_ids(repo, s2)[0], spec.BLOB_DATA))).pack
    forget_ids(repo, s2.id)
    # a writer plants a segment saying the junk pack also holds the live chunk
    live_id = contents_ids(repo, s1)[0]
    repo.write_index_segment([(junk_pack, [BlobEntry(live_id, spec.BLOB_DATA, 7, 40, 50_016,
                                                     50_000)])])
    now = time.time_ns()
    for i in range(4):
        prune(reopen(repo), grace_ns=0, now_ns=now + i)
        assert_restores(repo, {s1.id: {"keep": keep}})


def contents_ids(repo: Repository, snap: object) -> list[bytes]:
    fresh = reopen(repo)
    s = next(x for x in fresh.snapshots.list() if x.id == snap.id)  # type: ignore[attr-defined]
    assert s.body is not None
    return [p.chunk_id for e in fresh.load_tree(s.body.tree) for p in e.parts
            if p.chunk_id is not None]


def test_packs_of_a_running_create_are_left_alone(repo: Repository) -> None:
    backup(repo, {"a": b"a" * 1000})
    builder, data = PackBuilder(), os.urandom(10_000)  # a pack whose segment is not written yet
    builder.add(repo.blob_id(data, spec.BLOB_DATA), spec.BLOB_DATA, spec.CODEC_NONE, data,
                len(data))
    sealed, _ = builder.seal(repo.new_cipher(spec.KIND_PACK, spec.MODE_SEALED))
    pack = repo.put_object(spec.NS_DATA, sealed)
    report = prune(reopen(repo), grace_ns=HOUR)
    assert pack not in report.condemned_packs  # young and unindexed: a create is writing
    later = prune(reopen(repo), grace_ns=HOUR, now_ns=time.time_ns() + 2 * HOUR)
    assert pack in later.condemned_packs  # still unindexed an hour on: a crashed create


def test_prune_needs_the_admin_key_and_direct_access(repo: Repository) -> None:
    backup(repo, {"a": b"a"})
    with pytest.raises(NotPermitted, match="this key cannot prune"):
        prune(as_capability(repo, keys.CAP_FULL))
    plain = Repository(LocalStore(repo.store.root), repo.keys)
    with pytest.raises(NeedsDirectAccess):
        prune(plain)


def test_prune_deletes_no_data_while_a_snapshot_is_unreadable(repo: Repository) -> None:
    """A damaged snapshot names no data: prune goes on (a warning) but condemns and deletes
    nothing until an admin forgets the object by name; then it collects it."""
    s1 = backup(repo, {"a": os.urandom(50_000)})
    s2 = backup(repo, {"b": b"b"})
    path = repo.store.path(spec.NS_SNAPSHOTS, s1.id)
    path.chmod(0o640)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    packs = sorted(repo.store.list(spec.NS_DATA))
    opened = reopen(repo)
    report = prune(opened, grace_ns=0)
    assert len(report.notes) == 1 and s1.id in report.notes[0]
    assert not report.condemned_packs and sorted(repo.store.list(spec.NS_DATA)) == packs
    assert [d.object_id for d in opened.damage] == [s1.id]
    forget.commit(opened, forget.plan_ids(opened, [s1.id[:12]]))
    report = prune(reopen(repo), grace_ns=0)
    assert report.deleted_snapshots == [s1.id] and report.deleted_packs and not report.notes
    assert [s.id for s in reopen(repo).snapshots.list()] == [s2.id]


def test_prune_goes_past_objects_planted_in_snapshots(repo: Repository) -> None:
    """Bytes stored under their own name that do not decode were planted (a writer may add
    objects): they name no data, so prune works as without them, naming them once."""
    s1 = backup(repo, {"x": os.urandom(100_000)})
    backup(repo, {"y": b"y"})
    forget_ids(repo, s1.id)
    junk = repo.put_object(spec.NS_SNAPSHOTS, b"fifteen bytes!!")
    opened = reopen(repo)
    report = prune(opened, grace_ns=0)
    assert report.deleted_snapshots == [s1.id] and report.deleted_packs and not report.notes
    assert [d.object_id for d in opened.damage] == [junk]
    assert repo.store.exists(spec.NS_SNAPSHOTS, junk)  # only forget decides it goes


def test_dry_run_changes_nothing(repo: Repository) -> None:
    s1 = backup(repo, {"x": os.urandom(100_000)})
    backup(repo, {"y": b"y"})
    forget_ids(repo, s1.id)
    listing = {ns: sorted(repo.store.list(ns)) for ns in spec.NAMESPACES}
    report = prune(repo, grace_ns=0, dry_run=True)
    assert report.deleted_snapshots == [s1.id] and report.condemned_packs
    assert {ns: sorted(repo.store.list(ns)) for ns in spec.NAMESPACES} == listing


def test_assign_prefers_packs_no_prune_condemned() -> None:
    b = (spec.BLOB_DATA, b"\x01" * 32)
    e = BlobEntry(b[1], spec.BLOB_DATA, 0, 40, 100, 80)
    view = gc.IndexView(entries={"old": {b: e}, "new": {b: e}})
    assert gc.assign({b}, view, {"old", "new"}, {"new"})["old"] == {b}
    assert gc.assign({b}, view, {"old", "new"}, set())["new"] == {b}  # ties: by name


def test_condemn_records_are_verified_like_removals(repo: Repository) -> None:
    backup(repo, {"a": b"a" * 10})
    other = make_repo(repo.store.root.parent / "other")
    forged = signed.sign_condemn(other.keys.admin, repo.keys.repo_id, ["ab" * 32], [], 1)
    repo.put_object(spec.NS_CONDEMNED, forged)
    records = signed.read_condemnations(repo.store, repo.keys)
    assert not records.records and len(records.bad) == 1
    assert retention.Policy(last=1)  # the module imports cleanly alongside
