"""filescache: unchanged files skip reading; a damaged cache costs time, never correctness."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs import filescache, spec
from repofs.filescache import FilesCache, cache_dir
from repofs.model import Part

KEY = b"\x42" * 32
ID = b"\x01" * 32


def fake_stat(ino: int = 1, size: int = 10, mtime: int = 100, ctime: int = 200):
    return os.stat_result((0o100644, ino, 1, 1, 0, 0, size, 0, 0, 0, 0.0, 0.0, 0.0, 0, mtime,
                           ctime, 4096, 0, 0))


def test_stat_result_helper() -> None:
    st_ = fake_stat(5, 6, 7, 8)
    assert (st_.st_ino, st_.st_size, st_.st_mtime_ns, st_.st_ctime_ns) == (5, 6, 7, 8)


PARTS = (Part(ID, 6), Part(None, 4))


def saved(path: Path, entries: dict[bytes, tuple]) -> FilesCache:
    c = FilesCache(path, KEY)
    for p, (st_, parts) in entries.items():
        c.remember(p, st_, parts)
    c.save()
    return FilesCache(path, KEY)


def test_round_trip(shm_dir: Path) -> None:
    c = saved(shm_dir / "files", {b"/a": (fake_stat(), PARTS)})
    assert c.lookup(b"/a", fake_stat()) == PARTS
    assert c.lookup(b"/b", fake_stat()) is None


@pytest.mark.parametrize("changed", [{"ino": 2}, {"size": 11}, {"mtime": 101},
                                     {"ctime": 201}])
def test_any_stat_change_misses(shm_dir: Path, changed: dict) -> None:
    c = saved(shm_dir / "files", {b"/a": (fake_stat(), PARTS)})
    assert c.lookup(b"/a", fake_stat(**changed)) is None


def test_entries_are_from_earlier_runs_only(shm_dir: Path) -> None:
    c = FilesCache(shm_dir / "files", KEY)
    c.remember(b"/a", fake_stat(), PARTS)
    assert c.lookup(b"/a", fake_stat()) is None  # this run's entries are not consulted


def test_paths_are_keyed_hashes(shm_dir: Path) -> None:
    saved(shm_dir / "files", {b"/home/alice/secret-plans.txt": (fake_stat(), PARTS)})
    data = (shm_dir / "files").read_bytes()
    assert b"secret-plans" not in data and b"alice" not in data
    other = FilesCache(shm_dir / "files", b"\x43" * 32)
    assert other.lookup(b"/home/alice/secret-plans.txt", fake_stat()) is None


def test_entries_age_out(shm_dir: Path) -> None:
    path = shm_dir / "files"
    saved(path, {b"/old": (fake_stat(), PARTS)})
    for run in range(1, filescache.MAX_AGE + 3):
        c = FilesCache(path, KEY)
        present = c.lookup(b"/old", fake_stat()) is not None
        assert present == (run <= filescache.MAX_AGE), run
        c.remember(b"/new", fake_stat(ino=9), PARTS)
        c.save()
    assert FilesCache(path, KEY).lookup(b"/new", fake_stat(ino=9)) == PARTS


def test_seen_entries_are_refreshed(shm_dir: Path) -> None:
    path = shm_dir / "files"
    saved(path, {b"/a": (fake_stat(), PARTS)})
    for _ in range(filescache.MAX_AGE + 3):
        c = FilesCache(path, KEY)
        parts = c.lookup(b"/a", fake_stat())
        assert parts == PARTS
        c.remember(b"/a", fake_stat(), parts)
        c.save()


def test_save_is_atomic_and_private(shm_dir: Path) -> None:
    path = shm_dir / "deep" / "cache" / "files"
    saved(path, {b"/a": (fake_stat(), PARTS)})
    assert sorted(p.name for p in path.parent.iterdir()) == ["files"]
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, shm_dir: Path) -> None:
    tmp_path = shm_dir
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("abc") == tmp_path / "repofs" / "abc"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("abc") == tmp_path / "home" / ".cache" / "repofs" / "abc"


# -- damage ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"\xc1", b"garbage", spec.pack([1, 2]), spec.pack(None),
                                     spec.pack({"k": "v"}), b"\x81" * 5000])
def test_unreadable_cache_is_empty(shm_dir: Path, content: bytes) -> None:
    path = shm_dir / "files"
    path.write_bytes(content)
    c = FilesCache(path, KEY)
    assert c.lookup(b"/a", fake_stat()) is None
    c.remember(b"/a", fake_stat(), PARTS)
    c.save()
    assert FilesCache(path, KEY).lookup(b"/a", fake_stat()) == PARTS


def test_missing_or_unreadable_file(shm_dir: Path) -> None:
    assert FilesCache(shm_dir / "none", KEY).lookup(b"/a", fake_stat()) is None
    (shm_dir / "dir").mkdir()
    assert FilesCache(shm_dir / "dir", KEY).lookup(b"/a", fake_stat()) is None


def _with_row(path: Path, row: object) -> FilesCache:
    c = FilesCache(path, KEY)
    path.write_bytes(spec.pack({c._k(b"/a"): row}))
    return FilesCache(path, KEY)


STAT_KEY = [1, 10, 100, 200]
BAD_ROWS = [
    None, 5, "row", b"row", [], [0], [0, STAT_KEY], {"x": 1}, {1: STAT_KEY, 2: []},
    [0, STAT_KEY, None], [0, STAT_KEY, "parts"], [0, STAT_KEY, b"ab"], [0, STAT_KEY, [5]],
    [0, STAT_KEY, [{0: ID, 1: 10}]], [0, STAT_KEY, [[ID]]], [0, STAT_KEY, [[[1], 10]]],
    [0, STAT_KEY, [[{"a": 1}, 10]]], [0, STAT_KEY, [[97, 10]]], [0, STAT_KEY, [[ID[:5], 10]]],
    [0, STAT_KEY, [[ID, "10"]]], [0, STAT_KEY, [[ID, -6], [None, 16]]],
    [0, STAT_KEY, [[ID, 6]]],  # sizes that do not add up to the file's
    [0, STAT_KEY, [[ID, 6], [None, 5]]], [0, STAT_KEY, [[ID, True], [None, 9]]],
    [0, STAT_KEY, [[ID, 10.0]]], [0, STAT_KEY, [[None, None]]],
]


@pytest.mark.parametrize("row", BAD_ROWS)
def test_damaged_rows_are_misses(shm_dir: Path, row: object) -> None:
    """Whatever a damaged cache holds: a miss (the file is read again), never a crash or a
    content list that does not describe the file."""
    c = _with_row(shm_dir / "files", row)
    assert c.lookup(b"/a", fake_stat()) is None
    c.save()


leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40)
        | st.just(ID) | st.text(max_size=3) | st.sampled_from([1, 10, 100, 200]))
values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.integers(0, 3), inner, max_size=3), max_leaves=15)


@given(values)
def test_any_row_gives_a_valid_answer(shm_factory, row: object) -> None:
    path = shm_factory() / "files"
    c = _with_row(path, row)
    got = c.lookup(b"/a", fake_stat())
    if got is not None:
        assert sum(p.size for p in got) == 10
        for p in got:
            assert p.chunk_id is None or (isinstance(p.chunk_id, bytes) and len(p.chunk_id) == 32)
            assert isinstance(p.size, int) and not isinstance(p.size, bool) and p.size >= 0
    c.save()
