"""The key files of a repository: list, add, change a passphrase, remove (``repofs key``).

Why it is shaped like this: key files are write-once like every object, so a
passphrase is never changed in place. ``add`` (and ``passwd``, which is ``add``
with the capability of the key in use) writes a new key file wrapping the same
master keys, and nothing is re-encrypted. Taking a passphrase away means
deleting its key file, which only an admin can do, with direct access to the
storage (``AdminStore``): a compromised backup host can neither delete key
files nor swap them.

A key can only hand out what it holds: a write-only key adds write-only keys,
a full key full or write-only ones, and only an admin key makes admin keys.
A new passphrase must not open any existing key file, so every passphrase
opens exactly one key file and the capability it unlocks is never ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

from repofs import crypto, keys, spec
from repofs.adminstore import DeletingStore
from repofs.errors import BadKeyFile, IntegrityError, KeyError_, NotPermitted
from repofs.repository import Repository


@dataclass(frozen=True)
class KeyEntry:
    """One file in keys/: what its outer record says, or why it cannot be used."""

    name: str
    info: keys.KeyFileInfo | None
    problem: str | None
    current: bool  # the key file this repository was opened with


def list_keys(repo: Repository) -> list[KeyEntry]:
    """Every key file, described from its outer record (no passphrase needed for that)."""
    out = []
    for name in sorted(repo.store.list(spec.NS_KEYS)):
        info, problem = None, None
        try:
            data = repo.get_verified(spec.NS_KEYS, name, "key file")
            info = keys.describe(data, name)
        except (BadKeyFile, IntegrityError) as e:
            problem = str(e)
        out.append(KeyEntry(name, info, problem, name == repo.keys.key_name))
    return out


def _rank(capability: str) -> int:
    return keys.CAPABILITIES.index(capability)


def _opened_by(repo: Repository, passphrase: bytes) -> str | None:
    """The key file ``passphrase`` opens, if any (one KDF run per key file)."""
    for name in sorted(repo.store.list(spec.NS_KEYS)):
        try:
            data = repo.get_verified(spec.NS_KEYS, name, "key file")
            if keys.unwrap(data, name, passphrase, repo.keys.repo_id) is not None:
                return name
        except (BadKeyFile, IntegrityError):
            continue
    return None


def add(repo: Repository, passphrase: bytes, capability: str,
        kdf: dict[str, int] | None = None) -> str:
    """Write a key file of ``capability`` under ``passphrase``; its name, once it opens."""
    have = repo.keys.capability
    if capability not in keys.CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")
    if _rank(capability) > _rank(have) or (capability == keys.CAP_ADMIN
                                           and repo.keys.admin is None):
        raise NotPermitted(f"this key cannot make a {capability} key: it is a {have} key "
                           "(a key hands out at most its own capability)")
    taken = _opened_by(repo, passphrase)
    if taken is not None:
        raise KeyError_(f"this passphrase already opens key file {taken[:8]}: choose "
                        "another (each passphrase opens exactly one key file)")
    data = keys.wrap(keys.restrict(repo.keys, capability), passphrase, kdf)
    name = repo.put_object(spec.NS_KEYS, data)
    # Only a key file that opens again from storage counts as added: a passphrase change
    # must never leave a user with a file their new passphrase does not open.
    stored = repo.get_verified(spec.NS_KEYS, name, "key file")
    again = keys.unwrap(stored, name, passphrase, repo.keys.repo_id)
    if again is None or again.capability != capability or not crypto.same(
            again.shared_key, repo.keys.shared_key):
        raise IntegrityError("key file", name, "does not open after it was written")
    return name


def passwd(repo: Repository, passphrase: bytes, kdf: dict[str, int] | None = None) -> str:
    """A new key file like the one in use, under a new passphrase. The old file stays and
    keeps opening with the old passphrase until an admin removes it."""
    return add(repo, passphrase, repo.keys.capability, kdf)


def remove(repo: Repository, store: DeletingStore, name: str) -> None:
    """Delete a key file: admin key and direct storage access only."""
    if repo.keys.capability != keys.CAP_ADMIN:
        raise NotPermitted(f"this key cannot remove key files: it is a {repo.keys.capability} "
                           "key, and only an admin key may")
    if name == repo.keys.key_name:
        raise KeyError_("refusing to remove the key file this command was opened with: open "
                        "with another admin passphrase to remove it")
    if not store.exists(spec.NS_KEYS, name):
        raise KeyError_(f"no key file {name}")
    store.delete(spec.NS_KEYS, name)


def resolve_name(repo: Repository, ref: str) -> str:
    """A key file by full name or unique prefix (at least 4 hex digits)."""
    ref = ref.lower()
    names = sorted(repo.store.list(spec.NS_KEYS))
    hits = [n for n in names if n == ref] or (
        [n for n in names if n.startswith(ref)] if len(ref) >= 4 else [])
    if len(hits) != 1:
        raise KeyError_(f"no key file {ref!r}" if not hits else
                        f"{ref!r} matches {len(hits)} key files; give more digits")
    return hits[0]


__all__ = ["KeyEntry", "add", "list_keys", "passwd", "remove", "resolve_name"]
