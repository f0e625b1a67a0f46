"""Where a repository lives: a local path, ``ssh://`` through ``repofs serve``, or ``s3://``.

Why a module of its own: ``Repository`` should not care which storage it has,
only that it offers ``WriterStore``. This is the one place that reads a
location string and picks the backend, so a new one (S3, say) is added here
and nowhere else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from repofs import s3location
from repofs.errors import RepositoryNotFound
from repofs.remote import SshStore, parse_url
from repofs.store import LocalStore, WriterStore

RepoLocation = str | os.PathLike[str]
_SCHEME_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(location: RepoLocation) -> bool:
    return isinstance(location, str) and bool(_SCHEME_RE.match(location))


def is_s3(location: RepoLocation) -> bool:
    return isinstance(location, str) and s3location.is_s3(location)


def _remote(location: str) -> str:
    if not location.startswith("ssh://"):
        scheme = location.split("://", 1)[0]
        raise RepositoryNotFound(f"repository locations of type {scheme}:// are not supported "
                                 "(use a path, ssh://[user@]host[:port]/path or "
                                 "s3://host[:port]/bucket[/prefix])")
    return location


def open_store(location: RepoLocation, admin: bool = False) -> WriterStore:
    """The store of an existing repository at ``location``; ``admin``: an s3:// store
    opened with the admin profile (REPOFS_S3_ADMIN_PROFILE)."""
    if is_s3(location):
        from repofs import s3store  # boto3 costs 0.1 s to import: only when used
        return s3store.S3Store.open(s3location.parse_url(str(location)), admin=admin)
    if is_remote(location):
        return SshStore.open(parse_url(_remote(str(location))))
    # absolute: a mount daemon changes to / after it starts
    return LocalStore.open(Path(location).absolute())


def set_object_lock(location: RepoLocation, days: int, governance: bool = False) -> None:
    """Make every object written to an s3:// location from now on locked for ``days`` (the
    bucket's default Object Lock retention: set once, with the admin's credentials, from
    the profile REPOFS_S3_ADMIN_PROFILE names if it is set)."""
    if not is_s3(location):
        raise RepositoryNotFound("Object Lock needs an s3:// repository location")
    from repofs import s3store
    store = s3store.S3Store(s3location.parse_url(str(location)), admin=True)
    store.set_lock_rule("GOVERNANCE" if governance else "COMPLIANCE", days)


def create_store(location: RepoLocation, config: bytes) -> WriterStore:
    """A new repository at ``location`` (an empty or missing directory), holding ``config``."""
    if is_s3(location):
        from repofs import s3store
        return s3store.S3Store.create(s3location.parse_url(str(location)), config)
    if is_remote(location):
        return SshStore.create(parse_url(_remote(str(location))), config)
    return LocalStore.create(Path(location).absolute(), config)


__all__ = ["RepoLocation", "create_store", "is_remote", "is_s3", "open_store",
           "set_object_lock"]
