"""``check --read-data`` for one pack: which of the blobs indexed in it a reader gets back.

Why blob by blob: one flipped bit in a pack changes its hash, but costs only the
blob it sits in; a bad sector fails only the reads that cross it. Rejecting the
whole pack on a hash mismatch would report as lost every file that uses any blob
of it, while restore and dump still return those bytes exactly. So a pack is read
whole first (the cheap, common case: it matches its name, and its trailer is
checked against every index entry); if it does not match its name or cannot be
read whole, each indexed blob is read on its own exactly as restore reads it
(``Repository.read_located``: header, trailer, blob, keyed id), and the report
says exactly what a restore would lose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from repofs import crypto, spec
from repofs.blobtable import Location
from repofs.envelope import HEADER_LEN
from repofs.errors import IntegrityError, Unreadable
from repofs.pack import BlobEntry, open_blob, read_trailer
from repofs.repository import Repository

# blob id, blob type, offset in its pack, nonce, length, raw length: an index entry that
# differs from its pack's trailer in any of them is a lie, even at a real blob's offset
Place = tuple[bytes, int, int, int, int, int]


def place(e: BlobEntry) -> Place:
    return (e.blob_id, e.blob_type, e.offset, e.nonce, e.length, e.raw_len)


def _entry(p: Place) -> BlobEntry:
    return BlobEntry(p[0], p[1], p[3], p[2], p[4], p[5])


class PackVerdict:
    """What reading one pack found: the places its trailer lists (None if the pack was
    read blob by blob), the places that verified, and why it was not read whole."""

    def __init__(self, listed: set[Place] | None, held: set[Place],
                 degraded: str | None = None) -> None:
        self.listed, self.held, self.degraded = listed, held, degraded


def check_pack(repo: Repository, pack: str, indexed: Iterable[Place],
               report: Callable[[IntegrityError, Place | None], object]) -> PackVerdict:
    """Verify one pack; every blob that fails is handed to ``report``. Raises
    IntegrityError if the pack, read whole and matching its name, cannot be opened
    (then none of its blobs can be read), and envelope.CannotRead for a write-only key."""
    try:
        data = repo.store.get(spec.NS_DATA, pack)
    except FileNotFoundError:
        raise IntegrityError("pack", pack, "missing") from None
    except OSError as e:
        return _by_blob(repo, pack, indexed, report,
                        f"could not be read whole ({e.strerror or e})")
    if not crypto.same(crypto.object_name(data).encode(), pack.encode()):
        return _by_blob(repo, pack, indexed, report, "content does not match its name")
    cipher = repo.open_cipher(data[:HEADER_LEN], spec.KIND_PACK, pack)
    listed: set[Place] = set()
    held: set[Place] = set()
    for ent in read_trailer(repo.pack_trailer_cipher(cipher), data):
        listed.add(place(ent))
        try:
            plain = open_blob(cipher, ent, data[ent.offset:ent.offset + ent.length])
            if not crypto.same(repo.blob_id(plain, ent.blob_type), ent.blob_id):
                raise IntegrityError("pack", pack, "content does not match its id")
        except IntegrityError as err:
            report(_blob_error(err, pack, place(ent)), place(ent))
            continue
        held.add(place(ent))
    return PackVerdict(listed, held)


def _by_blob(repo: Repository, pack: str, indexed: Iterable[Place],
             report: Callable[[IntegrityError, Place | None], object], why: str) -> PackVerdict:
    """Each indexed blob read on its own, as restore reads it. Raises IntegrityError if
    the header or the trailer fails: then no blob of the pack can be read."""
    open_ends(repo, pack)
    held: set[Place] = set()
    for p in sorted(indexed, key=lambda p: p[2]):
        try:
            repo.read_located(p[0], Location(pack, _entry(p)))
        except IntegrityError as err:
            report(_blob_error(err, pack, p), p)
            continue
        except OSError as err:
            report(_blob_error(Unreadable("pack", pack, err.strerror or str(err)), pack, p), p)
            continue
        held.add(p)
    return PackVerdict(None, held, why)


def blob_failure(repo: Repository, err: IntegrityError | OSError, blob_id: bytes,
                 blob_type: int) -> IntegrityError:
    """What a failed read of one blob means: the damage of its pack as a whole if the
    pack's header or trailer fails (every blob in it is lost, one object to name), else
    the damage of that blob alone, named as that blob (a pack holds many)."""
    if isinstance(err, IntegrityError) and err.kind != "pack":
        return err  # already names the blob, or the index
    try:
        pack = repo.index.lookup(blob_id, blob_type).pack
    except IntegrityError as e:
        return e
    if isinstance(err, OSError):
        err = Unreadable("pack", pack, err.strerror or str(err))
    try:
        open_ends(repo, pack)
    except IntegrityError as e:
        return e
    return _blob_error(err, pack, (blob_id, blob_type, 0, 0, 0, 0))


def open_ends(repo: Repository, pack: str) -> None:
    """Open a pack's header and its sealed trailer by range reads, as every reader does
    before it reads a blob of the pack (``Repository.read_located``)."""
    try:
        header = repo.store.get_range(spec.NS_DATA, pack, 0, HEADER_LEN)
        repo.check_pack_tail(pack, repo.open_cipher(header, spec.KIND_PACK, pack))
    except FileNotFoundError:
        raise IntegrityError("pack", pack, "missing") from None
    except OSError as e:
        raise Unreadable("pack", pack, f"header or trailer: {e.strerror or e}") from None


def _blob_error(err: IntegrityError, pack: str, p: Place) -> IntegrityError:
    """The failure of one blob, named as that blob (a pack holds many)."""
    name = spec.BLOB_NAMES.get(p[1], "blob")
    if err.kind == name and err.object_id == p[0].hex():
        return err
    cls = Unreadable if isinstance(err, Unreadable) else IntegrityError
    return cls(name, p[0].hex(), f"{err.detail} (in pack {pack})")


__all__ = ["PackVerdict", "Place", "blob_failure", "check_pack", "open_ends", "place"]
