"""How a restore puts names into its target and takes them out: the temporary name
every entry is made under, its commit to the real name, the removal of temporary
names left by an interrupted restore and (``--delete``) of what the snapshot does
not hold.

Why a module of its own: removing is the one thing a restore does that can lose a
user's data, so it is kept small and strict. Everything is relative to a directory
descriptor below the target; nothing is followed (``O_NOFOLLOW``; a symbolic link is
removed as a link, never through it); a directory is emptied without recursion, with
two descriptors open at most, climbing back through ``..`` only to the very
directory it left (same device and inode); a directory on another file system (a
mount point below the target) is not entered and not removed.

A file being restored is written under a temporary name in its directory and renamed
into place when complete (``restorer``), so a killed restore leaves at most such a
name, never a truncated file under its real name. ``TEMP_RE`` is that name; the next
restore into the directory removes what matches it (and is not a directory, and is
not a name the snapshot itself holds).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat

from repofs.errors import UnsafePath
from repofs.restoredir import DIR_FLAGS

TEMP_PREFIX = b".repofs-restore."
TEMP_RE = re.compile(rb"\.repofs-restore\.[0-9a-f]{16}")


def temp_name() -> bytes:
    """A fresh temporary name (created with O_EXCL or an exclusive call by the caller)."""
    return TEMP_PREFIX + secrets.token_hex(8).encode()


def is_temp(name: bytes) -> bool:
    return TEMP_RE.fullmatch(name) is not None


def commit(dfd: int, tmp: bytes, name: bytes, replace: bool) -> None:
    """Give the complete entry ``tmp`` its real ``name``: over an existing one only if
    ``replace`` (an atomic rename), else by ``link``, which fails with
    ``FileExistsError`` if the name appeared meanwhile (a file system without hard
    links gets a rename after a last check). ``tmp`` is gone afterwards."""
    if replace:
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        return
    try:
        os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        try:
            os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            return
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST)) from None
    os.unlink(tmp, dir_fd=dfd)


def discard(dfd: int, tmp: bytes) -> None:
    """Remove a temporary name this run made (a failed or given-up entry)."""
    try:
        os.unlink(tmp, dir_fd=dfd)
    except FileNotFoundError:
        pass


def listing(dfd: int) -> list[bytes]:
    """The names in an open directory, as bytes (as tree entries name them)."""
    return [os.fsencode(n) for n in os.listdir(dfd)]


def clean_temps(dfd: int, names: list[bytes], keep: set[bytes]) -> int:
    """Remove leftover temporary files of an earlier, interrupted restore from ``names``
    (the listing of ``dfd``); names in ``keep`` (the snapshot's own) stay. The count."""
    removed = 0
    for name in names:
        if not is_temp(name) or name in keep:
            continue
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=dfd)
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def remove(dfd: int, name: bytes) -> int:
    """Remove ``name`` from the directory ``dfd``: a directory with all it holds. Returns
    the number of names removed. Raises ``UnsafePath`` for a directory on another file
    system or one replaced while being emptied, ``OSError`` for what the system refuses."""
    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return 1
    dev = os.fstat(dfd).st_dev
    if st.st_dev != dev:
        raise UnsafePath("is a mount point")
    return _remove_dir(dfd, name, dev)


def _remove_dir(top_fd: int, top: bytes, dev: int) -> int:
    removed = 0
    fd = os.open(top, DIR_FLAGS, dir_fd=top_fd)
    stack: list[tuple[bytes, tuple[int, int]]] = []  # (name, (dev, ino) of its parent)
    try:
        while True:
            descended = False
            for name in listing(fd):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=fd)
                    removed += 1
                    continue
                if st.st_dev != dev:
                    raise UnsafePath("holds a mount point")
                sub = os.open(name, DIR_FLAGS, dir_fd=fd)
                here = os.fstat(fd)
                stack.append((name, (here.st_dev, here.st_ino)))
                os.close(fd)
                fd = sub
                descended = True
                break
            if descended:
                continue
            if not stack:
                break
            name, ident = stack.pop()
            up = os.open(b"..", DIR_FLAGS, dir_fd=fd)
            st = os.fstat(up)
            os.close(fd)
            fd = up
            if (st.st_dev, st.st_ino) != ident:
                raise UnsafePath("was moved while being removed")
            os.rmdir(name, dir_fd=fd)
            removed += 1
    finally:
        os.close(fd)
    os.rmdir(top, dir_fd=top_fd)
    return removed + 1


__all__ = ["TEMP_PREFIX", "TEMP_RE", "clean_temps", "commit", "discard", "is_temp", "listing",
           "remove", "temp_name"]
