"""restorenames and restorecompare: the temporary names a restore makes and removes, the
commit to a real name, --delete's removal that never follows a link, and the quick and
content checks a resumed or verifying restore relies on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repofs import restorecompare, restorenames, spec
from repofs.compression import Codec
from repofs.errors import UnsafePath
from repofs.model import FIFO, FILE, SYMLINK, Entry, Part
from repofs.repository import Repository
from repofs.session import WriteSession

MIN_KDF = {"t": 3, "m": 64 * 1024, "p": 1}


def dfd(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def test_temp_names_are_fresh_and_recognised() -> None:
    names = {restorenames.temp_name() for _ in range(100)}
    assert len(names) == 100
    assert all(restorenames.is_temp(n) for n in names)
    for other in (b".repofs-restore.", b".repofs-restore.0123456789ABCDEF",
                  b".repofs-restore.0123456789abcdef0", b"x.repofs-restore.0123456789abcdef"):
        assert not restorenames.is_temp(other)


def test_clean_temps_removes_only_leftover_files(tmp_path: Path) -> None:
    leftover, kept, a_dir = (b".repofs-restore.%016x" % i for i in range(3))
    for n in (leftover, kept):
        (tmp_path / os.fsdecode(n)).write_bytes(b"x")
    (tmp_path / os.fsdecode(a_dir)).mkdir()
    (tmp_path / "other").write_bytes(b"y")
    fd = dfd(tmp_path)
    try:
        assert restorenames.clean_temps(fd, restorenames.listing(fd), {kept}) == 1
    finally:
        os.close(fd)
    assert sorted(os.listdir(tmp_path)) == sorted([os.fsdecode(kept), os.fsdecode(a_dir),
                                                   "other"])


def test_commit_never_replaces_unless_asked(tmp_path: Path) -> None:
    (tmp_path / "name").write_text("old")
    (tmp_path / "t1").write_text("new")
    fd = dfd(tmp_path)
    try:
        with pytest.raises(FileExistsError):
            restorenames.commit(fd, b"t1", b"name", replace=False)
        assert (tmp_path / "name").read_text() == "old"
        restorenames.commit(fd, b"t1", b"name", replace=True)
        assert (tmp_path / "name").read_text() == "new" and not (tmp_path / "t1").exists()
        (tmp_path / "t2").write_text("fresh")
        restorenames.commit(fd, b"t2", b"other", replace=False)
        assert (tmp_path / "other").read_text() == "fresh" and not (tmp_path / "t2").exists()
    finally:
        os.close(fd)


def test_remove_empties_deep_trees_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    target = tmp_path / "target"
    deep = target / "junk"
    for i in range(300):  # deeper than any recursion would like, two descriptors at most
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "f").write_text("f")
    os.symlink(outside, deep / "out")
    os.symlink(outside, target / "link")
    fd = dfd(target)
    try:
        assert restorenames.remove(fd, b"link") == 1
        assert restorenames.remove(fd, b"junk") == 300 + 1 + 2
    finally:
        os.close(fd)
    assert os.listdir(target) == []
    assert (outside / "keep").read_text() == "keep"


def test_remove_does_not_enter_a_mount_point(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    if os.system(f"mount -t tmpfs none {tmp_path / 'm'}") != 0:  # noqa: S605
        pytest.skip("cannot mount here")
    try:
        (tmp_path / "m" / "data").write_text("data")
        fd = dfd(tmp_path)
        try:
            with pytest.raises(UnsafePath):
                restorenames.remove(fd, b"m")
        finally:
            os.close(fd)
        assert (tmp_path / "m" / "data").read_text() == "data"
    finally:
        os.system(f"umount {tmp_path / 'm'}")  # noqa: S605


def file_entry(parts: tuple[Part, ...], size: int, mode: int = 0o640) -> Entry:
    return Entry(name=b"f", type=FILE, mode=mode, uid=0, gid=0, mtime_ns=1_000_000_123,
                 ctime_ns=0, size=size, parts=parts)


def test_quick_check_is_size_time_and_mode(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    f.chmod(0o640)
    os.utime(f, ns=(0, 1_000_000_123))
    e = file_entry((), 3)
    assert restorecompare.same_quick(f.stat(), e, 0o640)
    assert not restorecompare.same_quick(f.stat(), e, 0o644)
    assert not restorecompare.same_quick(f.stat(), file_entry((), 4), 0o640)
    os.utime(f, ns=(0, 1_000_000_124))
    assert not restorecompare.same_quick(f.stat(), e, 0o640)
    link = Entry(name=b"l", type=SYMLINK, mode=0o777, uid=0, gid=0, mtime_ns=0,
                 ctime_ns=0, target=b"f")
    os.symlink("f", tmp_path / "l")
    st = os.lstat(tmp_path / "l")
    assert restorecompare.same_entry(st, link, 0o777, b"f")
    assert not restorecompare.same_entry(st, link, 0o777, b"g")
    fifo = Entry(name=b"p", type=FIFO, mode=0o600, uid=0, gid=0, mtime_ns=0, ctime_ns=0)
    assert not restorecompare.same_entry(st, fifo, 0o600, None)


def test_content_check_by_chunk_ids_and_holes(shm_dir: Path) -> None:
    repo = Repository.init(shm_dir / "repo", b"unit test passphrase", MIN_KDF)
    a, b = os.urandom(5000), os.urandom(7000)
    with WriteSession(repo, Codec()) as s:
        parts = (Part(s.add(spec.BLOB_DATA, a), len(a)), Part(None, 1 << 20),
                 Part(s.add(spec.BLOB_DATA, b), len(b)))
    e = file_entry(parts, len(a) + (1 << 20) + len(b))
    f = shm_dir / "f"
    with open(f, "wb") as out:
        out.write(a)
        out.seek(1 << 20, os.SEEK_CUR)
        out.write(b)

    def check() -> str | None:
        fd = os.open(f, os.O_RDONLY)
        try:
            return restorecompare.content_mismatch(repo, fd, e)
        finally:
            os.close(fd)

    assert check() is None
    with open(f, "r+b") as out:
        out.seek(len(a) + (1 << 20) + 10)
        out.write(bytes([b[10] ^ 1]))
    assert check() == f"content differs in bytes {len(a) + (1 << 20)}+{len(b)}"
    with open(f, "r+b") as out:
        out.seek(len(a) + (1 << 20) + 10)
        out.write(b[10:11])
        out.seek(len(a) + 77)
        out.write(b"\1")
    assert check() is not None and "a hole in the snapshot" in check()  # type: ignore[operator]
    os.truncate(f, 10)
    assert check() == f"size 10, stored {e.size}"
