"""File-system metadata: read it from the source, apply it on restore.

Shared by the archiver and the restorer (siblings that must not import each
other). Everything works on open file descriptors or ``dir_fd`` + name, never
following a symlink, so neither side can be redirected by a link planted
under it. xattrs carry POSIX ACLs (``system.posix_acl_*``) too.
"""

from __future__ import annotations

import errno
import getpass
import grp
import os
import pwd
import stat
from functools import lru_cache

from repofs.model import BLOCK, CHAR, DIR, FIFO, FILE, SYMLINK

SOCKET = "s"


def entry_type(st: os.stat_result) -> str:
    m = st.st_mode
    if stat.S_ISREG(m):
        return FILE
    if stat.S_ISDIR(m):
        return DIR
    if stat.S_ISLNK(m):
        return SYMLINK
    if stat.S_ISBLK(m):
        return BLOCK
    if stat.S_ISCHR(m):
        return CHAR
    if stat.S_ISFIFO(m):
        return FIFO
    return SOCKET


@lru_cache(maxsize=4096)
def current_user() -> str:
    """Who runs ``create``, as the snapshot records it: the login name, else the uid."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def gid_of(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _proc_path(dir_fd: int, name: bytes) -> bytes:
    """A path through an open directory fd: the last component is never followed."""
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def read_xattrs(dir_fd: int, name: bytes, fd: int | None) -> tuple[tuple[bytes, bytes], ...]:
    """All xattrs of an entry, by fd when we have one, else without following links."""
    target: int | bytes = fd if fd is not None else _proc_path(dir_fd, name)
    follow = fd is not None  # an fd is the file itself; a path is never followed
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
            return ()
        raise
    out = []
    for n in sorted(names):
        try:
            v = os.getxattr(target, n, follow_symlinks=follow)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP):
                continue
            raise
        out.append((os.fsencode(n), v))
    return tuple(out)


def apply_xattrs(dir_fd: int, name: bytes, fd: int | None,
                 xattrs: tuple[tuple[bytes, bytes], ...]) -> list[str]:
    """Set xattrs; returns one warning per xattr the target file system refused."""
    if not xattrs:
        return []
    target: int | bytes = fd if fd is not None else _proc_path(dir_fd, name)
    warnings = []
    for k, v in xattrs:
        try:
            os.setxattr(target, k, v, follow_symlinks=fd is not None)
        except OSError as e:
            warnings.append(f"xattr {k.decode(errors='replace')}: {e.strerror}")
    return warnings


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the data regions of a sparse file; holes are what lies between."""
    extents = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole remains
                break
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end > start:
            extents.append((start, end - start))
        pos = end
    os.lseek(fd, 0, os.SEEK_SET)
    return extents


def apply_owner(dir_fd: int, name: bytes, uid: int, gid: int) -> None:
    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)


def apply_mode(dir_fd: int, name: bytes, mode: int, fd: int | None) -> None:
    if fd is not None:
        os.fchmod(fd, mode)
    else:
        os.chmod(name, mode, dir_fd=dir_fd)  # never a symlink: the caller checks the type


def apply_times(dir_fd: int, name: bytes, mtime_ns: int) -> None:
    os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
