"""archiver: the one-read path for small files agrees with the general path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from repofs import crypto, keys, spec
from repofs.archiver import Archiver, CreateOptions
from repofs.compression import Codec
from repofs.repository import Repository, _encode_config
from repofs.session import WriteSession
from repofs.store import LocalStore


@pytest.fixture
def archiver(shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archiver]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(shm_dir / "cache"))
    repo_id = crypto.random_bytes(32)
    repo = Repository(LocalStore.create(shm_dir / "repo", _encode_config(repo_id)),
                      keys.generate(repo_id))
    with WriteSession(repo, Codec()) as session:
        yield Archiver(session, CreateOptions(use_files_cache=False))


def content(a: Archiver, parts: tuple[object, ...]) -> bytes:
    a.session.flush()
    out = b""
    for p in parts:
        assert p.chunk_id is not None  # type: ignore[attr-defined]
        out += a.session.repo.read_blob(p.chunk_id, spec.BLOB_DATA)  # type: ignore[attr-defined]
    return out


def read(a: Archiver, path: Path, size: int | None = None) -> tuple[object, ...]:
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        return a.content.read_file(fd, st.st_size if size is None else size, st.st_blocks)
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [0, 1, 100, spec.CHUNK_MIN - 1, spec.CHUNK_MIN,
                                  spec.CHUNK_MIN + 1, 3 * spec.CHUNK_MIN])
def test_small_and_large_files_read_back(archiver: Archiver, shm_dir: Path, size: int) -> None:
    path = shm_dir / f"f{size}"
    data = os.urandom(size)
    path.write_bytes(data)
    parts = read(archiver, path)
    assert content(archiver, parts) == data
    if 0 < size <= spec.CHUNK_MIN:
        assert len(parts) == 1


def test_a_file_that_grew_is_read_to_its_end(archiver: Archiver, shm_dir: Path) -> None:
    """The size from fstat is stale (the file grew): the one read sees more than size
    and the general path reads everything from the start."""
    path = shm_dir / "grown"
    data = os.urandom(5000)
    path.write_bytes(data)
    parts = read(archiver, path, size=10)
    assert content(archiver, parts) == data


def test_a_short_read_falls_back(archiver: Archiver, shm_dir: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system may return less than asked before EOF: never store a truncated file."""
    path = shm_dir / "short"
    data = os.urandom(3000)
    path.write_bytes(data)
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, min(n, 700)))
    parts = read(archiver, path)
    monkeypatch.undo()
    assert content(archiver, parts) == data


@pytest.mark.parametrize(("old_size", "new_size"), [(100, 100), (100, 5000), (100, 0),
                                                    (3 * spec.CHUNK_MIN, 3 * spec.CHUNK_MIN)])
def test_a_file_swapped_after_lstat_is_skipped(archiver: Archiver, shm_dir: Path,
                                               old_size: int, new_size: int) -> None:
    """Whether checked before reading (large files) or after the one small read, a file
    swapped in between lstat and open is never stored under the old file's metadata."""
    d = shm_dir / "d"
    d.mkdir()
    (d / "f").write_bytes(os.urandom(old_size))
    st = os.lstat(d / "f")
    (d / "other").write_bytes(os.urandom(new_size))
    os.rename(d / "other", d / "f")  # a new inode under the same name
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entry = archiver._archive_file(dfd, b"f", os.fsencode(d / "f"), st)
    finally:
        os.close(dfd)
    assert entry is None
    assert archiver.stats.warnings == [f"{d}/f: replaced while being read, skipped"]


def test_a_small_file_changed_after_lstat_is_reported(archiver: Archiver,
                                                      shm_dir: Path) -> None:
    path = shm_dir / "f"
    path.write_bytes(b"before")
    st = os.lstat(path)
    with open(path, "ab") as f:  # same inode, new size and times
        f.write(b" and after")
    dfd = os.open(shm_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entry = archiver._archive_file(dfd, b"f", os.fsencode(path), st)
    finally:
        os.close(dfd)
    assert entry is not None
    assert archiver.stats.warnings == [f"{path}: changed while being read"]
    assert content(archiver, entry.parts) == b"before and after"
