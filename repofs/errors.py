"""The exceptions repofs raises, drawn as one tree so callers can catch by kind.

::

    RepofsError                      anything repofs refuses or cannot do
    ├── RepositoryError              the repository as a whole
    │   ├── RepositoryNotFound       no repository at that location
    │   ├── RepositoryExists         init on a non-empty location
    │   └── UnsupportedVersion       a format version this build cannot read
    ├── KeyError_                    key files and passphrases
    │   ├── WrongPassphrase          no key file opens with this passphrase
    │   ├── BadKeyFile               absurd KDF parameters or a malformed key file
    │   └── NotPermitted             "this key cannot ...": the key's capability is too small
    ├── ObjectExists                 a write-once name is already taken
    ├── NameTaken                    a snapshot name is already used
    ├── SnapshotNotFound             no snapshot matches a reference
    ├── AmbiguousSnapshot            a prefix matches several snapshots
    ├── PathNotFound                 a path is not in a snapshot
    ├── UnsafePath                   a stored name or target that would escape
    ├── SourceFailed                 a backup source (stdin command) failed
    ├── MountFailed                  a mount could not be set up or taken down
    ├── RemoteError                  a repofs server refused a request, or the link failed
    ├── NeedsDirectAccess            prune and key remove run on the storage, never over ssh
    ├── PruneConflict                a prune condemned data this create reuses: not committed
    └── IntegrityError               "corrupt or tampered": every check that fails
        │                            on bytes read from storage
        ├── BadEntry                 one entry of a tree breaks a rule: left out alone
        ├── Rollback                 snapshots this client saw are gone from the history
        └── Unreadable               storage failed to return an object's bytes (EIO):
                                     left out like damage, but not called tampering

Exit codes are chosen by the CLI, not here: the library only says what went wrong.
"""

from __future__ import annotations


class RepofsError(Exception):
    """Base of every error repofs raises on purpose."""


class RepositoryError(RepofsError):
    """A problem with the repository as a whole."""


class RepositoryNotFound(RepositoryError):
    """There is no repofs repository at the given location."""


class RepositoryExists(RepositoryError):
    """init was asked to create a repository where something already exists."""


class UnsupportedVersion(RepositoryError):
    """The repository uses a format version this build does not know."""


class KeyError_(RepofsError):  # noqa: N801 - avoid shadowing the builtin KeyError
    """A problem with key files or passphrases."""


class WrongPassphrase(KeyError_):
    """No key file of the repository opens with the given passphrase."""


class BadKeyFile(KeyError_):
    """A key file is malformed or asks for KDF parameters outside sane bounds."""


class NotPermitted(KeyError_):
    """The key that opened lacks the capability: a write-only key asked to read, a full key
    asked to sign a removal. The message starts with "this key cannot"."""


class ObjectExists(RepofsError):
    """A write-once object name is already taken by different content."""


class NameTaken(RepofsError):
    """A snapshot with this name already exists."""


class SnapshotNotFound(RepofsError):
    """No snapshot matches the reference."""


class AmbiguousSnapshot(RepofsError):
    """A snapshot id prefix matches more than one snapshot."""


class PathNotFound(RepofsError):
    """The path does not exist in the snapshot."""


class UnsafePath(RepofsError):
    """A stored name would make restore leave its target or follow a link."""


class SourceFailed(RepofsError):
    """A backup source failed (e.g. the command behind --stdin-from-command)."""


class MountFailed(RepofsError):
    """``repofs mount`` could not mount, or ``repofs umount`` could not unmount."""


class RemoteError(RepofsError):
    """``repofs serve`` refused a request (the message says why), or the connection failed."""


class NeedsDirectAccess(RepofsError):
    """Deleting (prune, key remove) needs the repository's own file system: the writer
    interface, and so ``repofs serve``, has no delete at all."""


class PruneConflict(RepofsError):
    """Data this create reuses or wrote was condemned by a prune while it ran; the snapshot
    was not committed (it could lose that data). Running create again stores it anew."""


class IntegrityError(RepofsError):
    """Bytes read from storage failed a check: corrupt or tampered.

    ``kind`` and ``object_id`` name the object so the user can find it.
    """

    def __init__(self, kind: str, object_id: str, detail: str) -> None:
        self.kind = kind
        self.object_id = object_id
        self.detail = detail
        super().__init__(f"{kind} {object_id} is corrupt or tampered: {detail}")


class BadEntry(IntegrityError):
    """One entry of a tree breaks a per-entry rule (a size no OS can take, sizes that do
    not add up): readers leave that entry alone out and keep its directory's others.
    ``entry`` is its name, so a checker can say which path a restore would lose."""

    def __init__(self, kind: str, object_id: str, detail: str, entry: bytes) -> None:
        super().__init__(kind, object_id, detail)
        self.entry = entry


class Rollback(IntegrityError):
    """A snapshot this client saw as a head is missing: history was rolled back or deleted.

    A subclass of IntegrityError (it is tampering), caught on its own by whoever offers
    ``--accept-rollback``.
    """


class Unreadable(IntegrityError):
    """The storage could not return an object's bytes (an I/O error, not a failed check).

    A subclass of IntegrityError so that every reader leaves the object out exactly as it
    leaves out a damaged one (repofs-format(5), DAMAGE); its message does not call it
    tampered.
    """

    def __init__(self, kind: str, object_id: str, detail: str) -> None:
        super().__init__(kind, object_id, detail)
        self.args = (f"{kind} {object_id} could not be read: {detail}",)

    def __str__(self) -> str:
        return str(self.args[0])
