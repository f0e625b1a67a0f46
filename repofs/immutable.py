"""The file system immutable flag (``chattr +i``), the second layer under write-once objects.

Why: write-once is a property of what ``repofs serve`` offers; an object with
FS_IMMUTABLE_FL cannot be written, truncated, renamed, linked over or deleted by
anyone without CAP_LINUX_IMMUTABLE, not even by the repository's owner. So an
intruder who gets a shell as the server's repository user (not only its
protocol) still cannot destroy what is stored. Only root (or a holder of the
capability) can clear the flag: that is the line the deployment draws.

The flag is set with the FS_IOC_SETFLAGS ioctl, as chattr(1) does. Not every
file system supports it (tmpfs does not); ``probe`` finds out before a server
accepts its first object, so ``repofs serve --immutable`` fails at start, not
halfway through a backup.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import struct
from pathlib import Path

# <linux/fs.h>: _IOR('f', 1, long) and _IOW('f', 2, long) on 64-bit; the kernel
# reads and writes an int through the pointer.
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010


class ImmutableUnavailable(Exception):
    """The flag cannot be set here: no CAP_LINUX_IMMUTABLE, or no file system support."""


def _get(fd: int) -> int:
    buf = bytearray(8)
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    flags: int = struct.unpack_from("=i", buf)[0]
    return flags


def read_flags(fd: int) -> int:
    """The inode flags of ``fd``, as lsattr(1) reads them (``create --exclude-nodump``).
    Raises OSError where the file system keeps none (ENOTTY, EOPNOTSUPP, ...)."""
    return _get(fd)


def _set(fd: int, flags: int) -> None:
    buf = bytearray(8)
    struct.pack_into("=i", buf, 0, flags)
    fcntl.ioctl(fd, FS_IOC_SETFLAGS, buf, True)


def is_immutable(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return bool(_get(fd) & FS_IMMUTABLE_FL)
    finally:
        os.close(fd)


def make_immutable(path: Path) -> None:
    """Set FS_IMMUTABLE_FL on a complete object (never through a symlink)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        flags = _get(fd)
        if not flags & FS_IMMUTABLE_FL:
            _set(fd, flags | FS_IMMUTABLE_FL)
    finally:
        os.close(fd)


def _explain(e: OSError, directory: Path) -> str:
    if e.errno == errno.EPERM:
        return ("the immutable flag needs CAP_LINUX_IMMUTABLE (run the server as root, or "
                "grant it, e.g. AmbientCapabilities=CAP_LINUX_IMMUTABLE in a systemd unit)")
    if e.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
        return f"the file system of {directory} does not support the immutable flag"
    return f"cannot set the immutable flag in {directory}: {e.strerror}"


def probe(directory: Path) -> None:
    """Set and clear the flag on a scratch file in ``directory``; raise if that fails."""
    probe_path = directory / f".immutable-probe-{secrets.token_hex(8)}"
    fd = os.open(probe_path, os.O_CREAT | os.O_EXCL | os.O_RDONLY | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o400)
    try:
        try:
            flags = _get(fd)
            _set(fd, flags | FS_IMMUTABLE_FL)
        except OSError as e:
            raise ImmutableUnavailable(_explain(e, directory)) from None
        _set(fd, flags & ~FS_IMMUTABLE_FL)
    finally:
        os.close(fd)
        probe_path.unlink()


__all__ = ["FS_IMMUTABLE_FL", "ImmutableUnavailable", "is_immutable", "make_immutable", "probe"]
