"""blobcache: the local cache of the blob table is hostile input that only saves time.

Each damaged cache is ignored with a warning and rebuilt, and every answer of the table
is the same as that of a repository opened with no cache at all.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from repofs import blobcache, crypto, keys, spec
from repofs.blobcache import BlobCache
from repofs.envelope import HEADER_LEN
from repofs.pack import BlobEntry
from repofs.repository import Repository
from repofs.store import LocalStore

PASS = b"cache test"
MIN_KDF = {"t": 3, "m": 64 * 1024, "p": 1}
SEGMENTS = 3
PER_SEGMENT = 40


def fill(repo: Repository, first: int, count: int) -> list[str]:
    """Index segments naming synthetic entries (only the index is looked at here), with
    a planted second place of each tenth blob and a tree sharing a chunk's id."""
    names = []
    for s in range(first, first + count):
        es = [BlobEntry(crypto.keyed_id(b"k" * 32, b"%d/%d" % (s, i)), spec.BLOB_DATA, i,
                        HEADER_LEN + 100 * i, 100, 90) for i in range(PER_SEGMENT)]
        es.append(BlobEntry(es[0].blob_id, spec.BLOB_TREE, 7, HEADER_LEN, 50, 40))
        planted = [BlobEntry(e.blob_id, e.blob_type, 1, HEADER_LEN, 17, 1) for e in es[::10]]
        names.append(repo.write_index_segment([(f"{s:064x}", es), (f"{s + 1000:064x}",
                                                                   planted)]))
    return names


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    r = Repository.init(tmp_path / "repo", PASS, MIN_KDF)
    fill(r, 0, SEGMENTS)
    return r


def reopen(repo: Repository, cache: bool = True,
           master: keys.MasterKeys | None = None) -> tuple[Repository, list[str]]:
    """The repository opened again; the index segments it decoded."""
    r = Repository(LocalStore.open(repo.store.root), master or repo.keys)
    if not cache:
        r.index_cache = None
    read: list[str] = []
    get = r.get_verified

    def counting(ns: str, name: str, kind: str) -> bytes:
        read.append(name)
        return get(ns, name, kind)

    r.get_verified = counting  # type: ignore[method-assign]
    r.load_index()
    return r, read


def answers(r: Repository) -> tuple[object, ...]:
    """Everything the table says: its size, packs, every entry, and each blob's places."""
    ents = sorted(r.index.entries(), key=repr)
    places = {(e.blob_id, e.blob_type): r.index.locations(e.blob_id, e.blob_type)
              for _, e in ents}
    return len(r.index), sorted(r.index.packs()), ents, places


def cache_file(repo: Repository) -> Path:
    assert repo.index_cache is not None
    return repo.index_cache.path


def test_warm_open_reads_no_segment_and_answers_the_same(repo: Repository) -> None:
    cold, read = reopen(repo)
    assert len(read) == SEGMENTS and cache_file(repo).is_file()
    warm, read = reopen(repo)
    assert read == []  # every segment came from the cache
    assert answers(warm) == answers(reopen(repo, cache=False)[0]) == answers(cold)
    assert len(warm.index) == SEGMENTS * (PER_SEGMENT + 1)


def test_a_write_only_key_uses_the_cache_too(repo: Repository) -> None:
    reopen(repo)
    wo, read = reopen(repo, master=keys.restrict(repo.keys, keys.CAP_WRITE_ONLY))
    assert read == [] and answers(wo) == answers(reopen(repo, cache=False)[0])


def test_new_segments_are_read_and_the_rest_come_from_the_cache(repo: Repository) -> None:
    reopen(repo)
    new = fill(repo, SEGMENTS, 2)
    r, read = reopen(repo)
    assert sorted(read) == sorted(new)
    assert answers(r) == answers(reopen(repo, cache=False)[0])


def test_a_pruned_segment_means_rebuild(repo: Repository) -> None:
    reopen(repo)
    gone = sorted(repo.store.list(spec.NS_INDEX))[0]
    repo.store.path(spec.NS_INDEX, gone).unlink()
    r, read = reopen(repo)
    assert len(read) == SEGMENTS - 1  # every segment read again: its rows are gone
    assert answers(r) == answers(reopen(repo, cache=False)[0])
    assert len(r.index) == (SEGMENTS - 1) * (PER_SEGMENT + 1)


def damage_truncated(data: bytes) -> bytes:
    return data[:len(data) // 2]


def damage_flip_column(data: bytes) -> bytes:
    return data[:-200] + bytes([data[-200] ^ 1]) + data[-199:]


def damage_flip_header(data: bytes) -> bytes:
    return data[:60] + bytes([data[60] ^ 0x80]) + data[61:]


def damage_flip_mac(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def damage_empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize("damage", [damage_truncated, damage_flip_column, damage_flip_header,
                                    damage_flip_mac, damage_empty])
def test_a_damaged_cache_is_ignored_with_a_warning_and_rebuilt(
        repo: Repository, damage, caplog: pytest.LogCaptureFixture) -> None:
    reopen(repo)
    path = cache_file(repo)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="repofs.blobcache"):
        r, read = reopen(repo)
    assert len(read) == SEGMENTS
    assert "index cache" in caplog.text and "ignored" in caplog.text
    assert answers(r) == answers(reopen(repo, cache=False)[0])
    caplog.clear()
    again, read = reopen(repo)  # rebuilt: good again
    assert read == [] and not caplog.text


def test_a_cache_of_another_repository_is_ignored(repo: Repository, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    other = Repository.init(tmp_path / "other", PASS, MIN_KDF)
    fill(other, 50, 1)
    reopen(other)
    reopen(repo)
    shutil.copyfile(cache_file(other), cache_file(repo))
    with caplog.at_level(logging.WARNING, logger="repofs.blobcache"):
        r, read = reopen(repo)
    assert "another repository" in caplog.text and len(read) == SEGMENTS
    assert answers(r) == answers(reopen(repo, cache=False)[0])


def test_a_cache_under_another_key_does_not_verify(repo: Repository,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Same repository id, forged by someone without the shared key: the MAC fails."""
    reopen(repo)
    path = cache_file(repo)
    forged = BlobCache(path, repo.keys.repo_id, b"x" * 32)
    forged.save(reopen(repo)[0].index, sorted(repo.store.list(spec.NS_INDEX)))
    with caplog.at_level(logging.WARNING, logger="repofs.blobcache"):
        _, read = reopen(repo)
    assert "does not verify" in caplog.text and len(read) == SEGMENTS


def test_an_unwritable_cache_costs_only_time(repo: Repository, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_bytes(b"")  # a file where the cache directory would be
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    r, read = reopen(repo)
    assert len(read) == SEGMENTS
    assert answers(r) == answers(reopen(repo, cache=False)[0])


def test_a_session_flush_is_not_cached_until_its_segment_is_read(
        repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows a process added itself (not read from a named segment) never enter the cache:
    the cache holds exactly the segments it names."""
    monkeypatch.setattr(blobcache, "MIN_GROWTH", 1)  # any new segment is worth a save
    r, _ = reopen(repo)
    r.index.add_pack("f" * 64, [BlobEntry(b"z" * 32, spec.BLOB_DATA, 0, HEADER_LEN, 20, 1)])
    fill(r, 90, 1)
    r.load_index()  # reads the new segment, but the table holds an unnamed row too
    warm, read = reopen(repo)
    assert b"z" * 32 not in warm.index and len(read) == 1
    fill(repo, 91, 1)
    _, read = reopen(repo)
    assert len(read) == 1  # the segment read by the warm open went into the cache


def test_the_cache_is_rewritten_only_when_it_grew_enough(repo: Repository) -> None:
    reopen(repo)
    before = cache_file(repo).stat().st_mtime_ns
    fill(repo, SEGMENTS, 1)
    _, read = reopen(repo)
    _, again = reopen(repo)
    assert len(read) == len(again) == 1  # a small new segment: decoded at each open
    assert cache_file(repo).stat().st_mtime_ns == before


def test_a_planted_segment_is_read_at_every_open(repo: Repository) -> None:
    """A segment that does not decode is skipped at every open (the cache does not name
    it, so it cannot make later opens forget it), and it does not switch the cache off:
    the other segments still come from the cache. Every pack is listed by a usable
    segment, so it cost nothing and readers stay quiet (check names it; DAMAGE)."""
    planted = repo.put_object(spec.NS_INDEX, b"not a segment" * 8)
    reopen(repo)
    for _ in range(2):
        r, read = reopen(repo)
        assert planted in r.damaged_segments and read == [planted]
        assert not list(r.damage)


def test_the_table_is_a_shared_mapping_of_the_cache_file(repo: Repository) -> None:
    """Cold (just written) and warm, the table's columns are the cache file mapped shared,
    read only: forked mount decoders use the same pages, copying nothing."""
    for _ in range(2):
        r, _ = reopen(repo)
        col = r.index._s.cols["key"]
        assert not col.flags.owndata and not col.flags.writeable
        maps = Path("/proc/self/maps").read_text()
        assert any(line.split()[1].startswith("r--s") and line.endswith(str(cache_file(repo)))
                   for line in maps.splitlines())
