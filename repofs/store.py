"""Write-once storage on a local (or locally mounted) file system.

The writer interface is ``put``/``get``/``list``/``exists``: there is no delete,
no rename and no overwrite, so a compromised client holding it can only add.
``put`` never checks-then-renames: the object is written to an anonymous
O_TMPFILE (or a random temp name where the file system lacks it), fsynced,
and linked to its final name with link(2), which fails atomically if the
name exists; then the directory is fsynced. Files are mode 0440.

Every name handed to this module is validated so no argument can leave the
repository directory, whatever a caller (or a future ``serve``) passes in.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from repofs.errors import IntegrityError, ObjectExists, RepositoryExists, RepositoryNotFound
from repofs.spec import CONFIG_NAME, MAX_OBJECT, NAMESPACES, NS_DATA

_NAME_RE = re.compile(r"\A[0-9a-f]{64}\Z")
FILE_MODE = 0o440
_TMP_DIR = "tmp"


class WriterStore(Protocol):
    """What a backup client may do with storage: add and read, nothing else."""

    def put(self, namespace: str, name: str, data: bytes | memoryview) -> bool: ...

    def get(self, namespace: str, name: str) -> bytes: ...

    def get_range(self, namespace: str, name: str, offset: int, length: int) -> bytes: ...

    def list(self, namespace: str) -> Iterator[str]: ...

    def exists(self, namespace: str, name: str) -> bool: ...

    def read_config(self) -> bytes: ...


def _check_name(namespace: str, name: str) -> None:
    if namespace not in NAMESPACES:
        raise ValueError(f"unknown namespace {namespace!r}")
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid object name {name!r}")


class LocalStore:
    """A repository directory. Objects live at ``<ns>/<name>`` (packs: ``data/<xx>/<name>``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- layout -------------------------------------------------------------------
    def _dir(self, namespace: str, name: str) -> Path:
        if namespace == NS_DATA:
            return self.root / NS_DATA / name[:2]
        return self.root / namespace

    def path(self, namespace: str, name: str) -> Path:
        _check_name(namespace, name)
        return self._dir(namespace, name) / name

    @classmethod
    def create(cls, root: Path, config: bytes) -> LocalStore:
        """Make the directory tree and write the config; refuse anything non-empty."""
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise RepositoryExists(f"{root} exists and is not an empty directory")
        root.mkdir(parents=True, exist_ok=True)
        for ns in NAMESPACES:
            (root / ns).mkdir(mode=0o750, exist_ok=True)
        for i in range(256):
            (root / NS_DATA / f"{i:02x}").mkdir(mode=0o750, exist_ok=True)
        (root / _TMP_DIR).mkdir(mode=0o750, exist_ok=True)
        store = cls(root)
        store._write_once(root, CONFIG_NAME, config)
        _fsync_dir(root.parent)
        return store

    @classmethod
    def open(cls, root: Path) -> LocalStore:
        if not (root / CONFIG_NAME).is_file():
            raise RepositoryNotFound(f"no repofs repository at {root}")
        return cls(root)

    # -- writer interface -------------------------------------------------------------
    def put(self, namespace: str, name: str, data: bytes | memoryview) -> bool:
        """Create an object. Returns False if identical bytes were already there.

        A different object under the same name raises ObjectExists: content-addressed
        names are checked by the caller, so an occupied name with other bytes is a plant.
        """
        _check_name(namespace, name)
        directory = self._dir(namespace, name)
        try:
            self._write_once(directory, name, data)
            return True
        except FileExistsError:
            existing = (directory / name).read_bytes()
            if existing == bytes(data):
                return False
            raise ObjectExists(f"{namespace}/{name} already exists with other content") from None

    def get(self, namespace: str, name: str) -> bytes:
        with open(self.path(namespace, name), "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_OBJECT:
                raise IntegrityError(namespace, name, "object larger than any repofs writes")
            return f.read()

    def get_range(self, namespace: str, name: str, offset: int, length: int) -> bytes:
        with open(self.path(namespace, name), "rb", buffering=0) as f:
            return os.pread(f.fileno(), length, offset)

    def size(self, namespace: str, name: str) -> int:
        return self.path(namespace, name).stat().st_size

    def exists(self, namespace: str, name: str) -> bool:
        return self.path(namespace, name).is_file()

    def list(self, namespace: str) -> Iterator[str]:
        if namespace not in NAMESPACES:
            raise ValueError(f"unknown namespace {namespace!r}")
        dirs = [self.root / namespace]
        if namespace == NS_DATA:
            dirs = sorted(p for p in dirs[0].iterdir() if p.is_dir())
        for d in dirs:
            with os.scandir(d) as it:
                for e in it:
                    if _NAME_RE.match(e.name) and e.is_file(follow_symlinks=False):
                        yield e.name

    def read_config(self) -> bytes:
        return (self.root / CONFIG_NAME).read_bytes()

    # -- the one way a file comes into being ---------------------------------------------
    def _write_once(self, directory: Path, name: str, data: bytes | memoryview) -> None:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE,
                             dir_fd=dfd)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                self._write_once_named_tmp(directory, name, data)
                return
            try:
                _write_all(fd, data)
                os.fsync(fd)
                # linkat(AT_SYMLINK_FOLLOW) gives the anonymous file its name, or fails
                # with EEXIST: the atomic create-new that makes objects write-once.
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dfd, follow_symlinks=True)
            finally:
                os.close(fd)
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _write_once_named_tmp(self, directory: Path, name: str, data: bytes | memoryview) -> None:
        tmp = self.root / _TMP_DIR / f".{secrets.token_hex(16)}"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, FILE_MODE)
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(tmp, directory / name)
        finally:
            tmp.unlink()  # our own temp name, never an object; also after a failed write
        _fsync_dir(directory)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["FILE_MODE", "LocalStore", "ObjectExists", "WriterStore"]
