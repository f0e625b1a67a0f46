"""The one storage interface that deletes: for prune and ``key remove``, never for writers.

Why a class of its own: the writer interface (``store.WriterStore``, and so
``repofs serve``) has no delete, and that absence is what makes a repository
append-only against a compromised client. Deleting needs this class, and this
class needs the repository's own file system: it refuses ssh:// locations, so
an admin runs prune on the storage host, where a backup client's credentials do
not reach. An s3:// repository is deleted from with the admin's own S3
credentials (REPOFS_S3_ADMIN_PROFILE, ``s3store.AdminS3Store``), which a bucket
policy lets delete and the writers' do not (``repofs s3-policy``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Protocol

from repofs import spec
from repofs.errors import NeedsDirectAccess
from repofs.location import RepoLocation, is_remote, is_s3
from repofs.store import LocalStore, WriterStore


class DeletingStore(WriterStore, Protocol):
    """The writer interface plus delete: what prune and ``key remove`` work on."""

    def delete(self, namespace: str, name: str) -> bool: ...

    def mtime_ns(self, namespace: str, name: str) -> int: ...


class AdminStore(LocalStore):
    """A repository directory with ``delete`` added to the writer interface."""

    def delete(self, namespace: str, name: str) -> bool:
        """Remove one object; False if it was not there. The directory is fsynced, so a
        deletion reported done survives a crash (prune relies on the order of its deletes).
        """
        path = self.path(namespace, name)  # validates namespace and name
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except PermissionError as e:
            if e.errno == errno.EPERM:
                raise PermissionError(e.errno, "the object is immutable (chattr +i, set by "
                                      "repofs serve --immutable): clear the flag first "
                                      "(chattr -i) to prune", str(path)) from None
            raise
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return True


    def mtime_ns(self, namespace: str, name: str) -> int:
        """When an object was written (prune leaves packs of a create still running alone)."""
        return os.lstat(self.path(namespace, name)).st_mtime_ns


def renew_locks(store: object, skip: Collection[str] = (),
                progress: Callable[[str], None] | None = None) -> int:
    """s3:// with Object Lock: renew the lock of every object but those named in ``skip``
    (what is going: condemned packs, removed snapshots), so no kept snapshot can be deleted
    by anyone until the bucket's retention days after this run. The one place forget and
    prune (with the admin's credentials) do it; a store without Object Lock (``extend_lock``
    absent, or no retention rule on the bucket) costs nothing. The number renewed."""
    extend: Callable[[str, str], bool] | None = getattr(store, "extend_lock", None)
    lister = getattr(store, "list", None)
    if extend is None or lister is None or getattr(store, "lock_rule", lambda: None)() is None:
        return 0
    count = int(bool(extend(spec.CONFIG_NAME, "")))
    for ns in spec.NAMESPACES:
        for name in sorted(set(lister(ns)) - set(skip)):
            if progress is not None:
                progress(f"renewing Object Lock: {count}")
            count += bool(extend(ns, name))
    return count


def open_admin_store(location: RepoLocation, what: str) -> DeletingStore:
    """The deleting store of a local or s3:// repository; ``what`` names the command for
    the error."""
    if is_s3(location):
        from repofs import s3store
        return s3store.AdminS3Store.open(s3store.parse_url(str(location)), admin=True)
    if is_remote(location):
        raise NeedsDirectAccess(f"{what} needs direct access to the repository's files: run "
                                "it on the storage host with the repository's path (repofs "
                                "serve has no delete, by design)")
    LocalStore.open(Path(location))  # refuses a directory without a repository
    store = AdminStore(Path(location))
    store.verify_layout()
    return store


__all__ = ["AdminStore", "DeletingStore", "open_admin_store", "renew_locks"]
