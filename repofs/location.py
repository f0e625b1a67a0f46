"""Where a repository lives: a local path, or ``ssh://`` through ``repofs serve``.

Why a module of its own: ``Repository`` should not care which storage it has,
only that it offers ``WriterStore``. This is the one place that reads a
location string and picks the backend, so a new one (S3, say) is added here
and nowhere else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from repofs.errors import RepositoryNotFound
from repofs.remote import SshStore, parse_url
from repofs.store import LocalStore, WriterStore

RepoLocation = str | os.PathLike[str]
_SCHEME_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(location: RepoLocation) -> bool:
    return isinstance(location, str) and bool(_SCHEME_RE.match(location))


def _remote(location: str) -> str:
    if not location.startswith("ssh://"):
        scheme = location.split("://", 1)[0]
        raise RepositoryNotFound(f"repository locations of type {scheme}:// are not supported "
                                 "(use a path or ssh://[user@]host[:port]/path)")
    return location


def open_store(location: RepoLocation) -> WriterStore:
    """The store of an existing repository at ``location``."""
    if is_remote(location):
        return SshStore.open(parse_url(_remote(str(location))))
    # absolute: a mount daemon changes to / after it starts
    return LocalStore.open(Path(location).absolute())


def create_store(location: RepoLocation, config: bytes) -> WriterStore:
    """A new repository at ``location`` (an empty or missing directory), holding ``config``."""
    if is_remote(location):
        return SshStore.create(parse_url(_remote(str(location))), config)
    return LocalStore.create(Path(location).absolute(), config)


__all__ = ["RepoLocation", "create_store", "is_remote", "open_store"]
