"""fsmeta: reading and applying file-system metadata without following symlinks."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from repofs import fsmeta
from repofs.model import BLOCK, CHAR, DIR, FIFO, FILE, SYMLINK


@pytest.fixture
def dfd(shm_dir: Path) -> Iterator[int]:
    fd = os.open(shm_dir, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def fake_stat(mode: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, 0, 0, 0, 0, 0, 0))


# -- types ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,expected", [
    (stat.S_IFREG | 0o644, FILE), (stat.S_IFDIR | 0o755, DIR), (stat.S_IFLNK | 0o777, SYMLINK),
    (stat.S_IFBLK | 0o600, BLOCK), (stat.S_IFCHR | 0o600, CHAR), (stat.S_IFIFO | 0o600, FIFO),
    (stat.S_IFSOCK | 0o600, fsmeta.SOCKET),
])
def test_entry_type_of_modes(mode: int, expected: str) -> None:
    assert fsmeta.entry_type(fake_stat(mode)) == expected


def test_entry_type_of_real_files(shm_dir: Path) -> None:
    (shm_dir / "f").write_bytes(b"x")
    (shm_dir / "d").mkdir()
    (shm_dir / "l").symlink_to("f")
    os.mkfifo(shm_dir / "p")
    os.mknod(shm_dir / "b", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mknod(shm_dir / "c", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(shm_dir / "s"))
        got = {n: fsmeta.entry_type(os.lstat(shm_dir / n)) for n in "fdlpbcs"}
    finally:
        s.close()
    assert got == {"f": FILE, "d": DIR, "l": SYMLINK, "p": FIFO, "b": BLOCK, "c": CHAR,
                   "s": fsmeta.SOCKET}


# -- names ----------------------------------------------------------------------------------------
def test_user_and_group_names() -> None:
    assert fsmeta.user_name(0) == "root" and fsmeta.group_name(0) == "root"
    assert fsmeta.uid_of("root") == 0 and fsmeta.gid_of("root") == 0
    assert fsmeta.user_name(2**31 - 7) is None and fsmeta.group_name(2**31 - 7) is None
    assert fsmeta.uid_of("no-such-user-repofs") is None
    assert fsmeta.gid_of("no-such-group-repofs") is None


# -- xattrs ---------------------------------------------------------------------------------------
XATTRS = ((b"trusted.bin", b"\x00\x01\xff"), (b"user.a", b"1"), (b"user.empty", b""),
          (b"user.\xff\xfe", b"not utf-8 name"))


def test_xattrs_round_trip_by_fd_and_by_name(shm_dir: Path, dfd: int) -> None:
    (shm_dir / "src").write_bytes(b"")
    (shm_dir / "dst").write_bytes(b"")
    assert fsmeta.apply_xattrs(dfd, b"src", None, XATTRS) == []
    assert fsmeta.read_xattrs(dfd, b"src", None) == tuple(sorted(XATTRS))
    fd = os.open(shm_dir / "src", os.O_RDONLY)
    try:
        assert fsmeta.read_xattrs(dfd, b"src", fd) == tuple(sorted(XATTRS))
    finally:
        os.close(fd)
    fd = os.open(shm_dir / "dst", os.O_RDONLY)
    try:
        assert fsmeta.apply_xattrs(dfd, b"dst", fd, XATTRS) == []
    finally:
        os.close(fd)
    assert fsmeta.read_xattrs(dfd, b"dst", None) == tuple(sorted(XATTRS))


def test_no_xattrs(shm_dir: Path, dfd: int) -> None:
    (shm_dir / "plain").write_bytes(b"")
    assert fsmeta.read_xattrs(dfd, b"plain", None) == ()


def test_symlinks_are_never_followed(shm_dir: Path, dfd: int) -> None:
    (shm_dir / "target").write_bytes(b"")
    os.setxattr(shm_dir / "target", b"user.secret", b"target's")
    (shm_dir / "link").symlink_to("target")
    assert fsmeta.read_xattrs(dfd, b"link", None) == ()
    os.setxattr(shm_dir / "link", b"trusted.own", b"link's", follow_symlinks=False)
    assert fsmeta.read_xattrs(dfd, b"link", None) == ((b"trusted.own", b"link's"),)
    fsmeta.apply_xattrs(dfd, b"link", None, ((b"trusted.new", b"x"),))
    assert b"trusted.new" not in [os.fsencode(n) for n in os.listxattr(shm_dir / "target")]


def test_symlinked_parent_through_dir_fd_is_the_real_directory(shm_dir: Path) -> None:
    (shm_dir / "real").mkdir()
    (shm_dir / "real" / "f").write_bytes(b"")
    os.setxattr(shm_dir / "real" / "f", b"user.k", b"v")
    fd = os.open(shm_dir / "real", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rename(shm_dir / "real", shm_dir / "moved")
        (shm_dir / "real").symlink_to("/etc")  # a link planted where the directory was
        assert fsmeta.read_xattrs(fd, b"f", None) == ((b"user.k", b"v"),)
    finally:
        os.close(fd)


def test_refused_xattrs_become_warnings(shm_dir: Path, dfd: int) -> None:
    (shm_dir / "f").write_bytes(b"")
    (shm_dir / "l").symlink_to("f")
    warnings = fsmeta.apply_xattrs(dfd, b"f", None, ((b"bogus.ns", b"x"), (b"user.ok", b"1")))
    assert len(warnings) == 1 and "bogus.ns" in warnings[0]
    assert fsmeta.read_xattrs(dfd, b"f", None) == ((b"user.ok", b"1"),)
    warnings = fsmeta.apply_xattrs(dfd, b"l", None, ((b"user.x", b"1"),))  # no user.* on links
    assert len(warnings) == 1 and "user.x" in warnings[0]


def test_posix_acls_travel_as_xattrs(shm_dir: Path, dfd: int) -> None:
    (shm_dir / "src").write_bytes(b"")
    (shm_dir / "dst").write_bytes(b"")
    subprocess.run(["setfacl", "-m", "u:1234:r,g:5678:rw", str(shm_dir / "src")], check=True)
    xattrs = fsmeta.read_xattrs(dfd, b"src", None)
    assert b"system.posix_acl_access" in dict(xattrs)
    assert fsmeta.apply_xattrs(dfd, b"dst", None, xattrs) == []

    def acl(name: str) -> str:
        out = subprocess.run(["getfacl", "--omit-header", "--numeric", str(shm_dir / name)],
                             check=True, capture_output=True, text=True).stdout
        return out

    assert acl("dst") == acl("src") and "user:1234:r--" in acl("dst")


# -- sparse files ---------------------------------------------------------------------------------
def test_data_extents_of_a_sparse_file(shm_dir: Path) -> None:
    path = shm_dir / "sparse"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, b"a" * 4096, 0)
        os.pwrite(fd, b"b" * 8192, 1 << 20)
        os.ftruncate(fd, 3 << 20)
        os.lseek(fd, 12345, os.SEEK_SET)
        assert fsmeta.data_extents(fd, 3 << 20) == [(0, 4096), (1 << 20, 8192)]
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        # a size smaller than the file cuts the last extent
        assert fsmeta.data_extents(fd, (1 << 20) + 100) == [(0, 4096), (1 << 20, 100)]
    finally:
        os.close(fd)


def test_data_extents_of_holes_only_and_of_dense_files(shm_dir: Path) -> None:
    fd = os.open(shm_dir / "hole", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, 1 << 20)
        assert fsmeta.data_extents(fd, 1 << 20) == []
    finally:
        os.close(fd)
    (shm_dir / "dense").write_bytes(b"x" * 10000)
    fd = os.open(shm_dir / "dense", os.O_RDONLY)
    try:
        assert fsmeta.data_extents(fd, 10000) == [(0, 10000)]
        assert fsmeta.data_extents(fd, 0) == []
    finally:
        os.close(fd)


# -- applying owner, mode and times -------------------------------------------------------------
def test_apply_owner_does_not_follow(shm_dir: Path, dfd: int) -> None:
    (shm_dir / "t").write_bytes(b"")
    (shm_dir / "l").symlink_to("t")
    fsmeta.apply_owner(dfd, b"l", 1234, 5678)
    assert (os.lstat(shm_dir / "l").st_uid, os.lstat(shm_dir / "l").st_gid) == (1234, 5678)
    assert (os.stat(shm_dir / "t").st_uid, os.stat(shm_dir / "t").st_gid) == (0, 0)
    fsmeta.apply_owner(dfd, b"t", 42, 43)
    assert (os.stat(shm_dir / "t").st_uid, os.stat(shm_dir / "t").st_gid) == (42, 43)


def test_apply_mode(shm_dir: Path, dfd: int) -> None:
    (shm_dir / "a").write_bytes(b"")
    (shm_dir / "b").write_bytes(b"")
    fsmeta.apply_mode(dfd, b"a", 0o4751, None)
    assert stat.S_IMODE(os.stat(shm_dir / "a").st_mode) == 0o4751
    fd = os.open(shm_dir / "b", os.O_RDONLY)
    try:
        fsmeta.apply_mode(dfd, b"b", 0o600, fd)
    finally:
        os.close(fd)
    assert stat.S_IMODE(os.stat(shm_dir / "b").st_mode) == 0o600


def test_apply_times_does_not_follow(shm_dir: Path, dfd: int) -> None:
    (shm_dir / "t").write_bytes(b"")
    (shm_dir / "l").symlink_to("t")
    before = os.stat(shm_dir / "t").st_mtime_ns
    fsmeta.apply_times(dfd, b"l", 1_000_000_123_456_789)
    assert os.lstat(shm_dir / "l").st_mtime_ns == 1_000_000_123_456_789
    assert os.stat(shm_dir / "t").st_mtime_ns == before
    fsmeta.apply_times(dfd, b"t", -5_000_000_001)  # before 1970, to the nanosecond
    assert os.stat(shm_dir / "t").st_mtime_ns == -5_000_000_001
