"""recovery: blob locations of packs no usable index segment lists, read from their trailers.

What must hold: a skipped or lost segment costs nothing while its packs are intact (the
locations recovered equal the ones it listed); a pack whose trailer does not verify is
named and skipped; a healthy repository never has a trailer read or data/ listed on open;
create reuses the blobs of packs an interrupted create left (never a condemned pack's);
repair lists them again, append-only, and then readers are quiet.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from repofs import keys, recovery, session, signed, spec
from repofs.adminstore import AdminStore
from repofs.compression import Codec
from repofs.damage import DamageLog
from repofs.envelope import HEADER_LEN, CannotRead
from repofs.errors import IntegrityError, NotPermitted
from repofs.pack import PackBuilder
from repofs.prune import prune
from repofs.repository import Repository
from repofs.session import WriteSession
from tests.unit.adminkit import backup, contents, make_repo

FILES = {"a": os.urandom(200_000), "b": b"small" * 100, "c": os.urandom(50_000)}


class CountingStore(AdminStore):
    """A real store that counts what is asked of it, per (call, namespace)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: Counter[tuple[str, str]] = Counter()

    def list(self, namespace: str) -> Iterator[str]:
        self.calls["list", namespace] += 1
        return super().list(namespace)

    def get_range(self, namespace: str, name: str, offset: int, length: int) -> bytes:
        self.calls["get_range", namespace] += 1
        return super().get_range(namespace, name, offset, length)

    def size(self, namespace: str, name: str) -> int:
        self.calls["size", namespace] += 1
        return super().size(namespace, name)


def fresh(repo: Repository, capability: str | None = None,
          store: AdminStore | None = None, cache: bool = False) -> Repository:
    """The repository opened anew; without the local index cache unless asked, so every
    segment is read (a warm cache holds what a segment said when it verified)."""
    k = repo.keys if capability is None else keys.restrict(repo.keys, capability)
    r = Repository(store or AdminStore(repo.store.root), k, DamageLog(), repo.version)
    if not cache:
        r.index_cache = None
    r.load_index()
    return r


def segments(repo: Repository) -> list[str]:
    return sorted(repo.store.list(spec.NS_INDEX))


def seg_path(repo: Repository, name: str) -> Path:
    p: Path = repo.store.path(spec.NS_INDEX, name)  # type: ignore[attr-defined]
    os.chmod(p, 0o600)
    return p


@pytest.fixture
def repo(shm_dir: Path) -> Repository:
    return make_repo(shm_dir / "repo")


@pytest.fixture
def repo_v1(shm_dir: Path) -> Repository:
    """A format 1 repository: its packs' trailers open with a full key only."""
    return make_repo(shm_dir / "repo1", version=1)


def test_a_damaged_segment_costs_nothing_its_locations_come_back(repo: Repository) -> None:
    snap = backup(repo, FILES)
    original = sorted(fresh(repo).index.entries(), key=repr)
    [seg] = segments(repo)
    p = seg_path(repo, seg)
    data = bytearray(p.read_bytes())
    data[HEADER_LEN + 3] ^= 0x10
    p.write_bytes(bytes(data))
    r = fresh(repo)
    assert sorted(r.index.entries(), key=repr) == original
    assert contents(r, snap) == FILES
    assert [(d.kind, d.object_id) for d in r.damage] == [("index segment", seg)]
    warm = fresh(repo, cache=True)  # rows cached while the segment verified: still right
    assert sorted(warm.index.entries(), key=repr) == original
    assert contents(warm, snap) == FILES


@pytest.mark.parametrize("how", ["truncate", "garbage", "other-key", "delete"])
def test_every_way_of_losing_a_segment_is_recovered(repo: Repository, shm_dir: Path,
                                                     how: str) -> None:
    snap = backup(repo, FILES)
    [seg] = segments(repo)
    p = seg_path(repo, seg)
    if how == "truncate":
        p.write_bytes(p.read_bytes()[:-7])
    elif how == "garbage":  # bytes that hash to their name: a writer's plant
        p.unlink()
        repo.put_object(spec.NS_INDEX, os.urandom(300))
    elif how == "other-key":  # a well-formed segment sealed under another repository's key
        other = make_repo(shm_dir / "other")
        backup(other, {"x": b"other"})
        [theirs] = segments(other)
        p.unlink()
        repo.put_object(spec.NS_INDEX, other.store.get(spec.NS_INDEX, theirs))
    else:
        p.unlink()
    r = fresh(repo)
    assert contents(r, snap) == FILES
    lines = [d.line() for d in r.damage]
    assert len(lines) == 1, lines
    if how == "delete":
        assert "listed by no index segment" in lines[0]
    else:
        assert "located from the packs themselves" in lines[0]


def test_a_healthy_repository_reads_no_trailer_and_lists_no_pack(repo: Repository) -> None:
    snap = backup(repo, FILES)
    store = CountingStore(repo.store.root)  # type: ignore[attr-defined]
    r = fresh(repo, store=store)
    assert contents(r, snap) == FILES
    assert store.calls["list", spec.NS_DATA] == 0
    # one size (the tail check) per pack read from, never a trailer scan
    assert store.calls["size", spec.NS_DATA] == len(set(r.index.packs()))
    assert not r.damage


def test_a_lost_segment_is_looked_for_once_per_command(repo: Repository) -> None:
    snap = backup(repo, FILES)
    [seg] = segments(repo)
    seg_path(repo, seg).unlink()
    store = CountingStore(repo.store.root)  # type: ignore[attr-defined]
    r = fresh(repo, store=store)
    assert not r.damage and store.calls["list", spec.NS_DATA] == 0  # nothing seen yet
    assert contents(r, snap) == FILES
    missing = os.urandom(32)
    for _ in range(3):
        with pytest.raises(IntegrityError, match="not in any index segment"):
            r.read_blob(missing, spec.BLOB_DATA)
    assert store.calls["list", spec.NS_DATA] == 1
    assert len(r.damage) == 1


def test_a_pack_whose_trailer_does_not_verify_is_named_and_skipped(repo: Repository) -> None:
    snap = backup(repo, FILES)
    planted = repo.put_object(spec.NS_DATA, repo.new_cipher(spec.KIND_PACK, spec.MODE_SEALED)
                              .header + os.urandom(100) + (50).to_bytes(4, "big"))
    for name in segments(repo):
        seg_path(repo, name).unlink()
    r = fresh(repo)
    assert contents(r, snap) == FILES
    bad = [d for d in r.damage if d.kind == "pack"]
    assert [d.object_id for d in bad] == [planted]
    assert recovery.UNLOCATABLE in bad[0].line()
    assert planted not in set(r.index.packs())


def test_a_planted_trailer_cannot_make_a_read_return_wrong_bytes(repo: Repository) -> None:
    """A writer seals a pack whose trailer claims a blob id it does not hold: the keyed id
    check refuses it, as it refuses a lying index entry."""
    snap = backup(repo, FILES)
    victim = repo.blob_id(FILES["a"], spec.BLOB_DATA)
    b = PackBuilder()
    b.add(victim, spec.BLOB_DATA, spec.CODEC_NONE, b"not the user's bytes", 20)
    data, _ = b.seal(repo.new_cipher(spec.KIND_PACK, spec.MODE_SEALED))
    lying = repo.put_object(spec.NS_DATA, data)
    for name in segments(repo):
        seg_path(repo, name).unlink()
    r = fresh(repo)
    assert contents(r, snap) == FILES  # the true copy still wins
    with pytest.raises(IntegrityError, match="content does not match its id"):
        r.read_located(victim, next(loc for loc in r.index.locations(victim, spec.BLOB_DATA)
                                    if loc.pack == lying))


def interrupted_create(repo: Repository, files: dict[str, bytes]) -> list[str]:
    """Packs written, then the process died before its index segment: what is left."""
    before = set(repo.store.list(spec.NS_DATA))
    s = WriteSession(repo, Codec())
    for data in files.values():
        s.add(spec.BLOB_DATA, data)
    s._submit_batch()
    while s._queue:
        s._drain_one()
    for t in s._builders:
        s._flush(t)
    while s._writes:
        s._writes.popleft().result()
    s.close()
    return sorted(set(repo.store.list(spec.NS_DATA)) - before)


def test_create_reuses_the_packs_an_interrupted_create_left(repo: Repository) -> None:
    backup(repo, {"old": b"x" * 1000})
    left = interrupted_create(repo, FILES)
    assert left
    r = fresh(repo)
    assert not r.damage  # leftovers of a create are no damage
    with WriteSession(r, Codec()) as s:
        for data in FILES.values():
            s.add(spec.BLOB_DATA, data)
        s.flush()
        assert s.stats.blobs_new == 0 and s.stats.packs == 0
        assert s.stats.blobs_dedup == len(FILES) and s.stats.packs_adopted == len(left)
    again = fresh(repo)
    assert set(left) <= set(again.index.packs())  # listed by the new segment
    assert not again.damage


def test_create_never_reuses_a_condemned_pack(repo: Repository) -> None:
    left = interrupted_create(repo, FILES)
    assert repo.keys.admin is not None
    record = signed.sign_condemn(repo.keys.admin, repo.keys.repo_id, set(left), set(), 1)
    repo.put_object(spec.NS_CONDEMNED, record)
    r = fresh(repo)
    with WriteSession(r, Codec()) as s:
        for data in FILES.values():
            s.add(spec.BLOB_DATA, data)
        s.flush()
        assert s.stats.blobs_new == len(FILES) and s.stats.packs_adopted == 0
    assert not set(left) & set(fresh(repo).index.packs())


def test_repair_lists_them_again_and_readers_are_quiet_after(repo: Repository) -> None:
    snap = backup(repo, FILES)
    [seg] = segments(repo)
    p = seg_path(repo, seg)
    p.write_bytes(p.read_bytes()[:-1])
    dry = recovery.repair(fresh(repo), dry_run=True)
    assert dry.segments_written == [] and segments(repo) == [seg]
    assert set(dry.damaged_segments) == {seg} and dry.recovered
    report = recovery.repair(fresh(repo))
    assert len(report.segments_written) == 1
    assert set(segments(repo)) == {seg, *report.segments_written}  # nothing deleted
    after = fresh(repo)
    assert not after.damage and list(after.damaged_segments) == [seg]
    assert contents(after, snap) == FILES
    assert recovery.repair(fresh(repo)).segments_written == []  # nothing left to do


def test_a_write_only_key_cannot_repair_format_1_packs(repo_v1: Repository) -> None:
    repo = repo_v1
    snap = backup(repo, FILES)
    root: Path = repo.store.root  # type: ignore[attr-defined]
    forms = {p.read_bytes()[7] for p in (root / spec.NS_DATA).rglob("*") if p.is_file()}
    assert forms == {spec.TRAILER_SEALED}
    assert recovery.repair(fresh(repo, keys.CAP_WRITE_ONLY)).unlisted == []  # nothing to do
    for name in segments(repo):
        seg_path(repo, name).unlink()
    wo = fresh(repo, keys.CAP_WRITE_ONLY)
    with pytest.raises(NotPermitted, match="this key cannot open format 1 packs"):
        recovery.repair(wo)
    assert segments(repo) == []
    assert recovery.repair(fresh(repo)).segments_written  # a full key can
    assert contents(fresh(repo), snap) == FILES


def test_a_write_only_key_recovers_and_repairs_format_2_packs(repo: Repository) -> None:
    snap = backup(repo, FILES)
    for name in segments(repo):
        seg_path(repo, name).unlink()
    wo = fresh(repo, keys.CAP_WRITE_ONLY)
    found = wo.recover_locations()
    assert found.packs and not found.sealed and not found.bad
    assert set(found.packs) == set(found.unlisted)
    report = recovery.repair(wo)
    assert len(report.segments_written) == 1 and not report.sealed
    after = fresh(repo)
    assert not after.damage and not after.recover_locations().unlisted
    assert contents(after, snap) == FILES
    with pytest.raises(CannotRead):  # the trailer opened, the blobs still do not
        wo.read_blob(repo.blob_id(FILES["a"], spec.BLOB_DATA), spec.BLOB_DATA)


def test_prune_keeps_the_live_packs_of_a_lost_segment(repo: Repository) -> None:
    """An unlisted pack looks like a crashed create's leftovers; prune must see through the
    trailers that snapshots still use it, or it would delete live data."""
    snap = backup(repo, FILES)
    for name in segments(repo):
        seg_path(repo, name).unlink()
    prune(fresh(repo), grace_ns=0)
    prune(fresh(repo), grace_ns=0)
    assert contents(fresh(repo), snap) == FILES


def test_a_write_only_create_does_not_look_for_packs_it_cannot_open(
        repo_v1: Repository) -> None:
    repo = repo_v1
    backup(repo, FILES)
    store = CountingStore(repo.store.root)  # type: ignore[attr-defined]
    wo = fresh(repo, keys.CAP_WRITE_ONLY, store=store)
    with WriteSession(wo, Codec()) as s:
        s.add(spec.BLOB_DATA, FILES["a"])
        assert s.stats.blobs_dedup == 1 and s.stats.packs_adopted == 0
    assert store.calls["list", spec.NS_DATA] == 0


def test_a_write_only_create_adopts_an_interrupted_creates_packs(repo: Repository) -> None:
    """Format 2: a write-only create opens the trailers of the packs a killed create left
    (no segment lists them) and reuses their blobs, as a full key does."""
    backup(repo, {"old": b"x" * 1000})
    left = interrupted_create(fresh(repo, keys.CAP_WRITE_ONLY), FILES)
    assert left
    wo = fresh(repo, keys.CAP_WRITE_ONLY)
    assert not wo.damage
    with WriteSession(wo, Codec()) as s:
        for data in FILES.values():
            s.add(spec.BLOB_DATA, data)
        s.flush()
        assert s.stats.blobs_new == 0 and s.stats.packs == 0
        assert s.stats.blobs_dedup == len(FILES) and s.stats.packs_adopted == len(left)
    assert set(left) <= set(fresh(repo, keys.CAP_WRITE_ONLY).index.packs())


def test_a_killed_create_left_its_packs_listed_but_the_last(repo: Repository,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Checkpoint segments: a write-only create, which cannot open trailers, still reuses
    what a killed write-only create stored (all but its packs since the last segment)."""
    monkeypatch.setattr(spec, "PACK_TARGET", 1)  # one blob a pack
    monkeypatch.setattr(session, "CHECKPOINT_PACKS", 2)
    blobs = {str(i): os.urandom(70_000) for i in range(6)}
    left = interrupted_create(fresh(repo, keys.CAP_WRITE_ONLY), blobs)
    assert len(left) == 6
    again = fresh(repo, keys.CAP_WRITE_ONLY)
    assert len(set(left) & set(again.index.packs())) >= 4
    with WriteSession(again, Codec()) as s:
        for data in blobs.values():
            s.add(spec.BLOB_DATA, data)
        assert s.stats.blobs_dedup >= 4
