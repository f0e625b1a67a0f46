"""Packs: many encrypted blobs in one write-once file (repofs-format(5), PACKS).

Layout::

    header (40 bytes, see envelope) | blob 0 | blob 1 | ... | trailer | u32 trailer length

Blobs are shuffled before they are written (their order says nothing of the
files they came from) and each is padded to its PADME size before
encryption, so stored sizes leak at most O(log log n) bits of a chunk's size.
Blob i is sealed with nonce i; its AAD binds the pack header, its type and
its id, so a blob cannot be moved, relabelled or swapped undetected. The
sealed trailer lists the blobs so an index can be rebuilt from packs alone; its cipher
(``envelope.trailer_cipher``) is the pack's in format 1, one every key derives in format 2.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from repofs import spec
from repofs.compression import decompress
from repofs.envelope import HEADER_LEN, ObjectCipher
from repofs.errors import IntegrityError

_BLOB_HEAD = struct.Struct(">BI")  # codec, payload length
_TRAILER_LEN = struct.Struct(">I")


def padme(length: int) -> int:
    """PADME (Nikitin et al., 2019): round up so that at most O(log log n) bits leak."""
    if length < 2:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


def blob_aad(blob_type: int, blob_id: bytes) -> bytes:
    return b"blob" + bytes([blob_type]) + blob_id


@dataclass(frozen=True, slots=True)
class BlobEntry:
    """Where a blob is inside its pack, as the trailer and the index record it."""

    blob_id: bytes
    blob_type: int
    nonce: int
    offset: int
    length: int
    raw_len: int

    def to_list(self) -> list[object]:
        return [self.blob_id, self.blob_type, self.nonce, self.offset, self.length, self.raw_len]


@dataclass(frozen=True)
class _Pending:
    blob_id: bytes
    blob_type: int
    codec: int
    payload: bytes | memoryview
    raw_len: int


class PackBuilder:
    """Collects compressed blobs until the pack is full, then seals them in random order."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._ids: set[bytes] = set()
        self.size = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self._ids

    def add(self, blob_id: bytes, blob_type: int, codec: int,
            payload: bytes | memoryview, raw_len: int) -> None:
        self._pending.append(_Pending(blob_id, blob_type, codec, payload, raw_len))
        self._ids.add(blob_id)
        self.size += len(payload)

    def full(self) -> bool:
        return self.size >= spec.PACK_TARGET or len(self._pending) >= spec.PACK_MAX_BLOBS

    def seal(self, cipher: ObjectCipher,
             trailer: ObjectCipher | None = None) -> tuple[bytes, list[BlobEntry]]:
        """The pack's bytes and the entries of its blobs; the trailer is sealed with
        ``trailer`` (``envelope.trailer_cipher`` of ``cipher``), by default ``cipher``."""
        order: list[_Pending | None] = list(_shuffled(self._pending))
        self._pending = []  # each payload is freed once sealed: a pack is not held twice
        parts: list[bytes | memoryview] = [cipher.header]
        entries: list[BlobEntry] = []
        offset = HEADER_LEN
        for nonce in range(len(order)):
            b = order[nonce]
            order[nonce] = None
            assert b is not None
            plain_len = _BLOB_HEAD.size + len(b.payload)
            padding = padme(plain_len) - plain_len
            plain = b"".join((_BLOB_HEAD.pack(b.codec, len(b.payload)), b.payload,
                              bytes(padding)))
            ct = cipher.seal(nonce, plain, blob_aad(b.blob_type, b.blob_id))
            parts.append(ct)
            entries.append(BlobEntry(b.blob_id, b.blob_type, nonce, offset, len(ct), b.raw_len))
            offset += len(ct)
        sealed = (trailer or cipher).seal(spec.TRAILER_NONCE,
                                          spec.pack([e.to_list() for e in entries]), b"trailer")
        parts += [sealed, _TRAILER_LEN.pack(len(sealed))]
        return b"".join(parts), entries


def _shuffled(items: list[_Pending]) -> list[_Pending]:
    """A uniformly random order from one draw of the OS CSPRNG: sorted by random 128-bit
    ranks (``SystemRandom().shuffle`` asked the kernel once per blob)."""
    ranks = memoryview(secrets.token_bytes(16 * len(items))).cast("Q")
    keys = [(ranks[2 * i] << 64) | ranks[2 * i + 1] for i in range(len(items))]
    return [items[i] for i in sorted(range(len(items)), key=keys.__getitem__)]


def open_blob(cipher: ObjectCipher, entry: BlobEntry, ciphertext: bytes) -> bytes:
    """Decrypt, unpad and decompress one blob; the caller re-checks its id."""
    name = spec.BLOB_NAMES.get(entry.blob_type, "blob")
    if len(ciphertext) != entry.length:
        raise IntegrityError("pack", cipher.object_id, f"{name} {entry.blob_id.hex()} truncated")
    plain = cipher.open(entry.nonce, ciphertext, blob_aad(entry.blob_type, entry.blob_id))
    if len(plain) < _BLOB_HEAD.size:
        raise IntegrityError("pack", cipher.object_id, f"{name} {entry.blob_id.hex()} too short")
    codec, plen = _BLOB_HEAD.unpack_from(plain)
    if plen > len(plain) - _BLOB_HEAD.size:
        raise IntegrityError("pack", cipher.object_id, f"{name} {entry.blob_id.hex()} bad length")
    payload = memoryview(plain)[_BLOB_HEAD.size : _BLOB_HEAD.size + plen]
    try:
        return decompress(codec, payload, entry.raw_len)
    except ValueError as e:
        raise IntegrityError("pack", cipher.object_id,
                             f"{name} {entry.blob_id.hex()}: {e}") from None


def read_trailer(cipher: ObjectCipher, data: bytes) -> list[BlobEntry]:
    """Parse a whole pack's trailer (used by check); ``cipher`` is the trailer's."""
    if len(data) < HEADER_LEN + _TRAILER_LEN.size:
        raise IntegrityError("pack", cipher.object_id, "truncated")
    (tlen,) = _TRAILER_LEN.unpack_from(data, len(data) - _TRAILER_LEN.size)
    start = trailer_start(cipher.object_id, len(data), tlen)
    return open_trailer(cipher, data[start : len(data) - _TRAILER_LEN.size], start)


def trailer_start(pack: str, size: int, tlen: int) -> int:
    """Where the trailer of a pack of ``size`` bytes whose last 4 bytes say ``tlen`` starts;
    checked before anything that long is read (a planted pack may claim any length)."""
    start = size - _TRAILER_LEN.size - tlen
    if size < HEADER_LEN + _TRAILER_LEN.size or start < HEADER_LEN or tlen > spec.MAX_RECORD:
        raise IntegrityError("pack", pack, "bad trailer length")
    return start


def open_trailer(cipher: ObjectCipher, sealed: bytes | memoryview,
                 start: int) -> list[BlobEntry]:
    """The entries of a sealed trailer that starts at ``start`` in its pack, opened with the
    trailer's cipher (``envelope.trailer_cipher``): decrypted,
    each row checked, and the blobs tiling the pack from the header to the trailer. Enough
    to locate every blob without reading the blobs (recovery of lost index segments)."""
    plain = cipher.open(spec.TRAILER_NONCE, sealed, b"trailer")
    rows = spec.unpack(plain, "pack", cipher.object_id)
    entries = [entry_from_list(r, "pack", cipher.object_id, start) for r in _as_list(rows, cipher)]
    # The blobs tile the pack from the header to the trailer: no gap, overlap or extra bytes.
    pos = HEADER_LEN
    for e in sorted(entries, key=lambda e: e.offset):
        if e.offset != pos:
            raise IntegrityError("pack", cipher.object_id, "blobs do not fill the pack")
        pos += e.length
    if pos != start:
        raise IntegrityError("pack", cipher.object_id, "blobs do not fill the pack")
    return entries


def _as_list(rows: object, cipher: ObjectCipher) -> list[object]:
    if not isinstance(rows, list):
        raise IntegrityError("pack", cipher.object_id, "trailer is not a list")
    return rows


def entry_from_list(row: object, kind: str, object_id: str, limit: int) -> BlobEntry:
    """Validate one [id, type, nonce, offset, length, raw_len] row from storage."""
    ok = (
        isinstance(row, list)
        and len(row) == 6
        and isinstance(row[0], bytes)
        and len(row[0]) == 32
        and all(isinstance(x, int) and not isinstance(x, bool) for x in row[1:])
    )
    if not ok:
        raise IntegrityError(kind, object_id, "malformed blob entry")
    assert isinstance(row, list)
    blob_id: bytes = row[0]
    blob_type: int = row[1]
    nonce: int = row[2]
    offset: int = row[3]
    length: int = row[4]
    raw_len: int = row[5]
    if (
        blob_type not in spec.BLOB_NAMES
        or not 0 <= nonce < spec.PACK_MAX_BLOBS
        or not offset >= HEADER_LEN
        or not 16 < length <= limit
        or offset + length > limit
        or not 0 <= raw_len <= spec.MAX_BLOB_RAW
    ):
        raise IntegrityError(kind, object_id, "blob entry out of range")
    return BlobEntry(blob_id, blob_type, nonce, offset, length, raw_len)
