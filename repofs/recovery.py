"""Blob locations recovered from the packs themselves, for packs no usable index segment lists.

Why: an index segment is one object among thousands, and bit rot, a truncation, a
planted object under its name or a deletion can cost it. The locations it carried are
not lost with it: every pack ends in a sealed trailer listing its blobs
(repofs-format(5), PACKS), which every key opens in a format 2 repository (a write-only key too:
index segments show it the same rows) and only a full key in format 1. So the packs no
usable segment lists are exactly the ones whose trailers must be read, and only those (a
healthy repository has none, or only the packs of a create still running, or left by one
that was interrupted). Readers do it when a segment was skipped, or the first time a
blob is in no segment; ``create`` does it to reuse the blobs of an interrupted create;
``repair`` writes the result into new index segments, so it is done once for good
(repofs-repair(1)).

Nothing recovered is trusted more than an index entry: every blob read through a
recovered location is verified against its keyed id, as every read is. A trailer that
does not verify names its pack, which is skipped. Packs a prune condemned are never
recovered: their blobs must count as absent, as ``session`` counts them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from repofs import spec
from repofs.damage import DamageLog
from repofs.envelope import HEADER_LEN, CannotRead, ObjectCipher
from repofs.errors import IntegrityError, NotPermitted, Unreadable
from repofs.pack import BlobEntry, open_trailer, trailer_start
from repofs.store import WriterStore

SEGMENT_PACKS = 1024  # packs listed by one segment repair writes (as prune's relisting)
UNLOCATABLE = ("skipped: no index segment lists this pack and its trailer does not verify, "
               "so its blobs cannot be located")


class _Source(Protocol):
    """What reading trailers needs of a repository."""

    store: WriterStore

    def open_trailer_cipher(self, header: bytes, name: str) -> ObjectCipher: ...


class Unlisted(IntegrityError):
    """Packs in ``data/`` that no index segment lists, found when a blob was in none: an
    index segment is gone (deleted or lost), with no trace but these packs."""

    def __init__(self, packs: list[str]) -> None:
        more = f" and {len(packs) - 1} more packs" if len(packs) > 1 else ""
        super().__init__("index", "segment", f"pack {packs[0]}{more} listed by no segment")
        self.args = (f"pack {packs[0]}{more} are listed by no index segment "
                     "(one was lost or deleted)",)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Recovery:
    """What one pass over the unlisted packs found."""

    unlisted: list[str] = field(default_factory=list)  # packs no usable segment lists
    packs: dict[str, list[BlobEntry]] = field(default_factory=dict)  # trailers that verified
    bad: dict[str, IntegrityError] = field(default_factory=dict)  # trailers that did not
    sealed: list[str] = field(default_factory=list)  # format 1 trailers this key cannot open

    @property
    def cannot_read(self) -> bool:
        """Some packs could not be opened: format 1 trailers and a write-only key."""
        return bool(self.sealed)


def unlisted(store: WriterStore, listed: Iterable[str], condemned: Iterable[str]) -> list[str]:
    """The packs in storage that no usable segment lists and no prune condemned: one
    listing of ``data/``, no pack read."""
    return sorted(set(store.list(spec.NS_DATA)) - set(listed) - set(condemned))


def locate(source: _Source, pack: str) -> list[BlobEntry]:
    """The entries of one pack's trailer, reading its header and its tail only.

    Raises IntegrityError if the trailer does not verify, CannotRead for a format 1 trailer
    and a write-only key, FileNotFoundError if the pack went (a prune deleted it meanwhile).
    """
    store = source.store
    try:
        size = store.size(spec.NS_DATA, pack)
        header = store.get_range(spec.NS_DATA, pack, 0, HEADER_LEN)
        cipher = source.open_trailer_cipher(header, pack)
        tail = store.get_range(spec.NS_DATA, pack, max(size - 4, 0), 4)
        if len(tail) != 4:
            raise IntegrityError("pack", pack, "truncated")
        start = trailer_start(pack, size, int.from_bytes(tail, "big"))
        sealed = store.get_range(spec.NS_DATA, pack, start, size - 4 - start)
    except FileNotFoundError:
        raise
    except OSError as e:  # EIO from a failing disk
        raise Unreadable("pack", pack, e.strerror or str(e)) from None
    return open_trailer(cipher, sealed, start)


def recover(source: _Source, packs: list[str]) -> Recovery:
    """Read the trailers of ``packs``; each that verifies gives its blobs' locations. With a
    write-only key, format 1 packs are ``sealed``: each costs a read of its header."""
    found = Recovery(unlisted=list(packs))
    for pack in packs:
        try:
            found.packs[pack] = locate(source, pack)
        except CannotRead:
            found.sealed.append(pack)
        except FileNotFoundError:
            continue  # deleted by a prune since the listing: nothing to locate
        except IntegrityError as e:
            found.bad[pack] = e
    return found


class _Repairable(Protocol):
    """What ``repair`` needs of an open repository (``repository.Repository``)."""

    damage: DamageLog
    damaged_segments: dict[str, IntegrityError]

    def recover_locations(self, again: bool = False) -> Recovery: ...

    def write_index_segment(self, packs: list[tuple[str, list[BlobEntry]]]) -> str: ...


@dataclass
class RepairReport:
    """What ``repair`` found and did (repofs-repair(1))."""

    dry_run: bool
    damaged_segments: dict[str, str] = field(default_factory=dict)  # name -> what is wrong
    unlisted: list[str] = field(default_factory=list)
    recovered: dict[str, int] = field(default_factory=dict)  # pack -> blobs it holds
    bad_packs: dict[str, str] = field(default_factory=dict)  # pack -> what is wrong
    segments_written: list[str] = field(default_factory=list)
    sealed: list[str] = field(default_factory=list)  # format 1 packs left for a full key


def repair(repo: _Repairable, dry_run: bool = False) -> RepairReport:
    """List again, in new index segments, the packs no usable segment lists.

    Append-only: nothing is deleted or rewritten; a damaged segment stays where it is
    (repofs check names it; a prune may remove it once nothing depends on it). Any key
    lists format 2 packs (their trailers open with the shared key); format 1 packs need a
    full or admin key: with a write-only key they are left, in ``sealed``, and when
    nothing else could be listed that is refused (NotPermitted).
    """
    found = repo.recover_locations()
    report = RepairReport(dry_run, {n: e.detail for n, e in repo.damaged_segments.items()},
                          list(found.unlisted),
                          {p: len(e) for p, e in found.packs.items()},
                          {p: e.detail for p, e in found.bad.items()},
                          sealed=list(found.sealed))
    if found.sealed and not found.packs:
        raise NotPermitted(f"this key cannot open format 1 packs: {len(found.sealed)} packs no "
                           "index segment lists need a full or admin key to be listed again "
                           "(their trailers are sealed to the repository's public key)")
    batch = sorted(found.packs.items())
    for i in range(0, len(batch), SEGMENT_PACKS):
        if not dry_run:
            report.segments_written.append(repo.write_index_segment(batch[i:i + SEGMENT_PACKS]))
    return report


__all__ = ["SEGMENT_PACKS", "UNLOCATABLE", "RepairReport", "Recovery", "Unlisted", "locate",
           "recover", "repair", "unlisted"]
