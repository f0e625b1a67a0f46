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
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from repofs.errors import IntegrityError, ObjectExists, RepositoryExists, RepositoryNotFound
from repofs.spec import CONFIG_NAME, MAX_OBJECT, NAMESPACES, NS_DATA

_NAME_RE = re.compile(r"\A[0-9a-f]{64}\Z")
FILE_MODE = 0o440
MAX_CONFIG = 64 * 1024  # a config is ~60 bytes; never read more than this
_TMP_DIR = "tmp"
_FD_CACHE = 64  # open object fds kept for range reads


class WriterStore(Protocol):
    """What a backup client may do with storage: add and read, nothing else."""

    def put(self, namespace: str, name: str, data: bytes | memoryview) -> bool: ...

    def get(self, namespace: str, name: str) -> bytes: ...

    def get_range(self, namespace: str, name: str, offset: int, length: int) -> bytes: ...

    def size(self, namespace: str, name: str) -> int: ...

    def list(self, namespace: str) -> Iterator[str]: ...

    def exists(self, namespace: str, name: str) -> bool: ...

    def read_config(self) -> bytes: ...


def valid_name(name: str) -> bool:
    """Is ``name`` an object name (64 lowercase hex digits): nothing else can be a path part."""
    return bool(_NAME_RE.match(name))


def _check_name(namespace: str, name: str) -> None:
    if namespace not in NAMESPACES:
        raise ValueError(f"unknown namespace {namespace!r}")
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid object name {name!r}")


class LocalStore:
    """A repository directory. Objects live at ``<ns>/<name>`` (packs: ``data/<xx>/<name>``)."""

    fork_safe = True  # a forked copy reads with its own fds (pread: no shared offsets)

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = os.fspath(root)
        self._fds: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()  # fd, users, evicted
        self._fd_lock = threading.Lock()

    # -- layout -------------------------------------------------------------------
    def _dir(self, namespace: str, name: str) -> Path:
        if namespace == NS_DATA:
            return self.root / NS_DATA / name[:2]
        return self.root / namespace

    def close(self) -> None:
        """Close the object fds kept for range reads (also done when the store is freed)."""
        with self._fd_lock:
            for slot in self._fds.values():
                slot[2] = True
                if slot[1] == 0:
                    os.close(slot[0])
            self._fds.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except (AttributeError, OSError):  # half-built, or at interpreter exit
            pass

    def path(self, namespace: str, name: str) -> Path:
        return Path(self._path(namespace, name))

    def _path(self, namespace: str, name: str) -> str:
        """The object's path as a string: pathlib costs more than the read on hot paths."""
        _check_name(namespace, name)
        if namespace == NS_DATA:
            return f"{self._root}/{NS_DATA}/{name[:2]}/{name}"
        return f"{self._root}/{namespace}/{name}"

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
        with self.new_object(namespace, name) as new:
            new.write(data)
            return new.commit()

    def new_object(self, namespace: str, name: str) -> NewObject:
        """An object to write piece by piece (``repofs serve`` receives it so, and hashes
        it while it is written): nothing has the name until ``commit``; leaving without
        it leaves nothing behind."""
        _check_name(namespace, name)
        return NewObject(self, namespace, name)

    def _open(self, namespace: str, name: str) -> int:
        """An object's fd: never through a symlink, never a FIFO or device planted in its place
        (O_NONBLOCK keeps a FIFO from hanging the open; the fstat refuses it)."""
        try:
            fd = os.open(self._path(namespace, name),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise IntegrityError(namespace, name, "is a symlink, not an object") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IntegrityError(namespace, name, "is not a regular file")
        return fd

    def get(self, namespace: str, name: str) -> bytes:
        fd = self._open(namespace, name)
        with open(fd, "rb", buffering=0) as f:
            size = os.fstat(fd).st_size
            if size > MAX_OBJECT:
                raise IntegrityError(namespace, name, "object larger than any repofs writes")
            return f.read()

    def get_range(self, namespace: str, name: str, offset: int, length: int) -> bytes:
        """Read part of an object. Objects never change, so their fds are kept open in a
        small cache: restore and mount read many blobs of one pack in a row."""
        key = (namespace, name)
        with self._fd_lock:
            slot = self._fds.get(key)
            if slot is None:
                slot = self._fds[key] = [self._open(namespace, name), 0, False]
                while len(self._fds) > _FD_CACHE:
                    old_key, old = next(iter(self._fds.items()))
                    del self._fds[old_key]
                    old[2] = True  # evicted: closed by its last user
                    if old[1] == 0:
                        os.close(old[0])
            else:
                self._fds.move_to_end(key)
            slot[1] += 1
        try:
            return os.pread(slot[0], length, offset)
        finally:
            with self._fd_lock:
                slot[1] -= 1
                if slot[2] and slot[1] == 0:
                    os.close(slot[0])

    def size(self, namespace: str, name: str) -> int:
        st = os.lstat(self.path(namespace, name))
        if stat.S_ISLNK(st.st_mode):
            raise IntegrityError(namespace, name, "is a symlink, not an object")
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(namespace, name, "is not a regular file")
        return st.st_size

    def exists(self, namespace: str, name: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self.path(namespace, name)).st_mode)
        except FileNotFoundError:
            return False

    def verify_layout(self) -> None:
        """Refuse a repository whose directories are symlinks (or not directories): a
        planted ``data/ab -> /etc`` would make link(2) and reads leave the repository."""
        dirs = [self.root, self.root / _TMP_DIR]
        dirs += [self.root / ns for ns in NAMESPACES]
        dirs += [self.root / NS_DATA / f"{i:02x}" for i in range(256)]
        for d in dirs:
            try:
                st = os.lstat(d)
            except FileNotFoundError:
                continue  # a namespace newer than the repository: nothing to follow there
            if not stat.S_ISDIR(st.st_mode):
                raise IntegrityError("repository", str(d.relative_to(self.root)) or ".",
                                     "is a symlink or not a directory")
        if not stat.S_ISREG(os.lstat(self.root / CONFIG_NAME).st_mode):
            raise IntegrityError("repository", CONFIG_NAME, "is a symlink or not a regular file")

    def list(self, namespace: str) -> Iterator[str]:
        if namespace not in NAMESPACES:
            raise ValueError(f"unknown namespace {namespace!r}")
        dirs = [self.root / namespace]
        if namespace == NS_DATA:
            with os.scandir(dirs[0]) as it:
                dirs = sorted(dirs[0] / e.name for e in it if e.is_dir(follow_symlinks=False))
        for d in dirs:
            with os.scandir(d) as it:
                for e in it:
                    if _NAME_RE.match(e.name) and e.is_file(follow_symlinks=False):
                        yield e.name

    def read_config(self) -> bytes:
        fd = os.open(self.root / CONFIG_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC)
        with open(fd, "rb", buffering=0) as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IntegrityError("config", CONFIG_NAME, "is not a regular file")
            return f.read(MAX_CONFIG)

    # -- the one way a file comes into being ---------------------------------------------
    def _write_once(self, directory: Path, name: str, data: bytes | memoryview) -> None:
        """Create ``directory/name`` with ``data``; FileExistsError if the name is taken."""
        with _Unnamed(self.root / _TMP_DIR, directory) as f:
            f.write(data)
            f.link(name)


class _Unnamed:
    """A file with no name yet: an O_TMPFILE in its final directory (or, where the file
    system lacks it, a random name under tmp/, removed on close). ``link`` fsyncs it and
    gives it its name with link(2), which fails with EEXIST if the name exists: the atomic
    create-new that makes objects write-once. Closing without a link leaves nothing."""

    def __init__(self, tmp_dir: Path, directory: Path) -> None:
        self.tmp: Path | None = None
        self.dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.fd = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, FILE_MODE,
                              dir_fd=self.dfd)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                os.close(self.dfd)
                raise
            self.tmp = tmp_dir / f".{secrets.token_hex(16)}"
            try:
                self.fd = os.open(self.tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, FILE_MODE)
            except OSError:
                os.close(self.dfd)
                raise
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        _write_all(self.fd, data)
        self.size += len(data)

    def link(self, name: str) -> None:
        os.fsync(self.fd)
        if self.tmp is None:  # linkat(AT_SYMLINK_FOLLOW) names the anonymous file
            os.link(f"/proc/self/fd/{self.fd}", name, dst_dir_fd=self.dfd, follow_symlinks=True)
        else:
            os.link(self.tmp, name, dst_dir_fd=self.dfd)
        os.fsync(self.dfd)

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.dfd)
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)  # our own temp name, never an object

    def __enter__(self) -> _Unnamed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NewObject:
    """An object of a LocalStore being written (``LocalStore.new_object``)."""

    def __init__(self, store: LocalStore, namespace: str, name: str) -> None:
        self.store, self.namespace, self.name = store, namespace, name
        self._file = _Unnamed(store.root / _TMP_DIR, store._dir(namespace, name))

    @property
    def size(self) -> int:
        return self._file.size

    def write(self, data: bytes | memoryview) -> None:
        if self._file.size + len(data) > MAX_OBJECT:
            raise ValueError("object larger than any repofs writes")
        self._file.write(data)

    def commit(self) -> bool:
        """Give the object its name: True if created, False if the same bytes were there.
        Other bytes under the name raise ObjectExists."""
        try:
            self._file.link(self.name)
            return True
        except FileExistsError:
            if self._same_as_existing():
                return False
            raise ObjectExists(f"{self.namespace}/{self.name} already exists with other "
                               "content") from None

    def _same_as_existing(self) -> bool:
        """Compared piece by piece: an object may be 1 GiB (never through a symlink)."""
        fd = self.store._open(self.namespace, self.name)
        try:
            if os.fstat(fd).st_size != self._file.size:
                return False
            for offset in range(0, self._file.size, _COMPARE_BLOCK):
                if os.pread(fd, _COMPARE_BLOCK, offset) != os.pread(
                        self._file.fd, _COMPARE_BLOCK, offset):
                    return False
            return True
        finally:
            os.close(fd)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> NewObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_COMPARE_BLOCK = 1 << 20


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


__all__ = ["FILE_MODE", "LocalStore", "NewObject", "ObjectExists", "WriterStore", "valid_name"]
