"""snapshots.SnapshotFilter: --host/--tag/--path as restic reads them, the one rule the
listing, ``latest`` and the check of an explicit reference share; a key that cannot read
the sealed bodies is refused, never answered as if unfiltered."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs import crypto, keys
from repofs.errors import NotPermitted, SnapshotNotFound
from repofs.model import Snapshot, SnapshotBody, SnapshotHead
from repofs.repository import Repository, _encode_config
from repofs.snapshots import EVERY, SnapshotFilter, latest, split_tags
from repofs.store import LocalStore


def snap(i: int, host: str = "h1", tags: tuple[str, ...] = (),
         paths: tuple[bytes, ...] = (b"/a",), sealed: bool = False) -> Snapshot:
    body = SnapshotBody(tree=b"\x01" * 32, paths=paths, host=host, user="u", tags=tags,
                        name=None, hardlinks={}, stats={})
    return Snapshot(f"{i:064x}", SnapshotHead(i, (), 1000 + i), None if sealed else body)


def test_split_tags_reads_commas_as_restic_does() -> None:
    assert split_tags(["a,b", "c", "", ",a,,d,"]) == ("a", "b", "c", "d")


def test_of_keeps_each_tag_option_as_one_set() -> None:
    f = SnapshotFilter.of(["h"], ["a,b", "c", "b,a", ","], [b"/x"])
    assert f.tags == (frozenset({"a", "b"}), frozenset({"c"}))
    assert f.hosts == frozenset({"h"}) and f.paths == frozenset({b"/x"})
    assert SnapshotFilter.of().empty and EVERY.empty and not f.empty
    assert str(f) == "--host h --tag a,b --tag c --path /x"


def test_each_kind_and_their_combination() -> None:
    s = snap(1, host="h1", tags=("daily", "db"), paths=(b"/srv", b"/etc"))
    yes = [SnapshotFilter.of(hosts=["h2", "h1"]), SnapshotFilter.of(tags=["daily"]),
           SnapshotFilter.of(tags=["db,daily"]), SnapshotFilter.of(tags=["weekly", "db"]),
           SnapshotFilter.of(paths=[b"/etc"]), SnapshotFilter.of(paths=[b"/x", b"/srv"]),
           SnapshotFilter.of(["h1"], ["daily"], [b"/srv"]), EVERY]
    no = [SnapshotFilter.of(hosts=["h2"]), SnapshotFilter.of(tags=["daily,weekly"]),
          SnapshotFilter.of(tags=["weekly"]), SnapshotFilter.of(paths=[b"/"]),
          SnapshotFilter.of(paths=[b"/srv/www"]),  # compared exactly, not as a prefix
          SnapshotFilter.of(["h1"], ["daily"], [b"/home"])]
    assert all(f.matches(s) for f in yes)
    assert not any(f.matches(s) for f in no)


def test_a_sealed_body_is_refused_by_a_filter_only() -> None:
    sealed = snap(1, sealed=True)
    assert EVERY.matches(sealed) and EVERY.select([sealed]) == [sealed]
    with pytest.raises(NotPermitted, match="write-only"):
        SnapshotFilter.of(hosts=["h1"]).matches(sealed)


def test_latest_is_the_newest_that_matches() -> None:
    snaps = [snap(1, "h1"), snap(2, "h2"), snap(3, "h1", tags=("x",)), snap(4, "h2")]
    assert latest(snaps) is snaps[3]
    assert latest(snaps, where=SnapshotFilter.of(hosts=["h1"])) is snaps[2]
    assert latest(snaps, where=SnapshotFilter.of(hosts=["h2"], tags=["x"])) is None


@given(st.lists(st.tuples(st.sampled_from(["h1", "h2"]),
                          st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)), max_size=8),
       st.lists(st.sampled_from(["h1", "h2", "h3"]), max_size=2),
       st.lists(st.sampled_from(["a", "b", "a,b", "b,c"]), max_size=2))
def test_select_is_matches_and_latest_is_max_of_select(rows, hosts, tags) -> None:
    snaps = [snap(i, h, tuple(dict.fromkeys(t))) for i, (h, t) in enumerate(rows)]
    f = SnapshotFilter.of(hosts, tags)
    chosen = f.select(snaps)
    assert chosen == [s for s in snaps if f.matches(s)]
    assert latest(snaps, where=f) is (chosen[-1] if chosen else None)


@pytest.fixture
def repos(shm_dir: Path) -> tuple[Repository, Repository, list[Snapshot]]:
    master = keys.generate(crypto.random_bytes(32))
    full = Repository(LocalStore.create(shm_dir / "repo", _encode_config(master.repo_id)),
                      master)
    made = [full.snapshots.commit(SnapshotBody(
        tree=b"\x01" * 32, paths=(p,), host=h, user="u", tags=t, name=None, hardlinks={},
        stats={}), 1000 + i) for i, (h, t, p) in enumerate(
            [("h1", ("daily",), b"/a"), ("h2", ("daily",), b"/b"), ("h2", (), b"/a")])]
    wo = Repository(full.store, dataclasses.replace(full.keys, reader=None,
                                                    capability=keys.CAP_WRITE_ONLY))
    return full, wo, made


def test_resolve_with_a_filter(repos) -> None:
    full, _, (s1, s2, s3) = repos
    log = full.snapshots
    assert log.resolve("latest").id == s3.id
    assert log.resolve("latest", where=SnapshotFilter.of(hosts=["h1"])).id == s1.id
    assert log.resolve("latest", where=SnapshotFilter.of(tags=["daily"])).id == s2.id
    assert log.resolve("latest", where=SnapshotFilter.of(paths=[b"/b"])).id == s2.id
    with pytest.raises(SnapshotNotFound, match="no snapshot matches --host h3"):
        log.resolve("latest", where=SnapshotFilter.of(hosts=["h3"]))
    # an explicit id is resolved among all snapshots, then refused if it does not match
    assert log.resolve(s2.short_id, where=SnapshotFilter.of(hosts=["h2"])).id == s2.id
    with pytest.raises(SnapshotNotFound, match=f"snapshot {s2.short_id} does not match"):
        log.resolve(s2.id, where=SnapshotFilter.of(hosts=["h1"]))
    assert [s.id for s in log.select(SnapshotFilter.of(paths=[b"/a"]))] == [s1.id, s3.id]


def test_a_write_only_key_cannot_filter(repos) -> None:
    _, wo, (_, _, s3) = repos
    assert wo.snapshots.resolve("latest").id == s3.id  # unfiltered: as before
    f = SnapshotFilter.of(hosts=["h1"])
    for call in (lambda: wo.snapshots.resolve("latest", where=f),
                 lambda: wo.snapshots.resolve(s3.id, where=f),
                 lambda: wo.snapshots.select(f)):
        with pytest.raises(NotPermitted, match="write-only"):
            call()
    assert len(wo.snapshots.select()) == 3
