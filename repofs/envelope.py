"""The header every encrypted object starts with, and the key that header implies.

Each object (pack, index segment, snapshot) gets a key of its own, derived
from fresh randomness in its header, so AES-GCM nonces are plain counters
*within one object* and can never repeat across objects, writers or crashes
(repofs-format(5), ENCRYPTION). Two modes:

- sealed: the header holds an ephemeral X25519 public key; only the holder of
  the repository's private key can derive the object key. Chunks and trees.
- shared: the header holds a random salt; the key comes from the shared key
  every key file carries (write-only ones too). Index segments, snapshot heads.

The header is part of every message's AAD, so version, kind and mode are bound.

A pack's trailer (the list of its blobs) has a form of its own, named by header byte 7
(repofs-format(5), PACKS, Trailer): form 0 (format 1) seals it under the pack's key, so
only full keys open it; form 1 (format 2) seals it under a key every key holder derives
from the shared key and the pack's ephemeral public key, so a write-only key can recover
a lost index segment. That reveals nothing new: index segments, which every key reads,
list exactly the same rows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from repofs import crypto
from repofs.errors import IntegrityError
from repofs.spec import (
    FORMAT_VERSION,
    KIND_MODES,
    KIND_NAMES,
    KIND_PACK,
    MAGIC,
    MODE_SEALED,
    MODE_SHARED,
    TRAILER_FORMS,
    TRAILER_SHARED,
)

HEADER = struct.Struct(">4sBBBB32s")  # magic, version, kind, mode, byte 7, material
HEADER_LEN = HEADER.size  # 40


class CannotRead(Exception):
    """This key holds no private key: the object is sealed to the repository's public key."""


@dataclass(frozen=True)
class ObjectCipher:
    """The key of one object and its header; seals and opens that object's messages."""

    header: bytes
    key: bytes
    kind: str
    object_id: str

    def seal(self, counter: int, plaintext: bytes | memoryview, aad: bytes = b"") -> bytes:
        return crypto.seal(self.key, counter, plaintext, self.header + aad)

    def open(self, counter: int, ciphertext: bytes | memoryview, aad: bytes = b"") -> bytes:
        try:
            return crypto.open_sealed(self.key, counter, ciphertext, self.header + aad)
        except crypto.AuthenticationFailed:
            raise IntegrityError(self.kind, self.object_id, "authentication failed") from None


def _info(kind: int, mode: int) -> bytes:
    return b"repofs object key v%d kind %d mode %d" % (FORMAT_VERSION, kind, mode)


def new_object(kind: int, mode: int, shared_key: bytes, repo_public: bytes,
               form: int = 0) -> ObjectCipher:
    """Start a new object: fresh header material, fresh key. ``form`` is header byte 7:
    a pack's trailer form (``TRAILER_SHARED`` in a format 2 repository), else 0."""
    if mode == MODE_SEALED:
        material, dh = crypto.ephemeral_agreement(repo_public)
        key = crypto.hkdf(dh, material + repo_public, _info(kind, mode))
    else:
        material = crypto.random_bytes(32)
        key = crypto.hkdf(shared_key, material, _info(kind, mode))
    header = HEADER.pack(MAGIC, FORMAT_VERSION, kind, mode, form, material)
    return ObjectCipher(header, key, KIND_NAMES[kind], "(new)")


def _check_header(header: bytes, kind: int, object_id: str,
                  mode: int | None) -> tuple[int, int, bytes]:
    """The mode, byte 7 and key material of a header read from storage, after checking the
    magic, the version, the kind (and the mode) we expect: a pack in shared mode would be
    readable by write-only keys."""
    name = KIND_NAMES[kind]
    if len(header) != HEADER_LEN:
        raise IntegrityError(name, object_id, "truncated header")
    magic, version, got_kind, got_mode, form, material = HEADER.unpack(header)
    if magic != MAGIC:
        raise IntegrityError(name, object_id, "not a repofs object")
    if version != FORMAT_VERSION:
        raise IntegrityError(name, object_id, f"unknown format version {version}")
    if got_kind != kind:
        raise IntegrityError(name, object_id, f"object is a {KIND_NAMES.get(got_kind, '?')}")
    expected = mode if mode is not None else KIND_MODES.get(kind)
    if expected is not None and got_mode != expected:
        raise IntegrityError(name, object_id, "object has the wrong encryption mode")
    if kind == KIND_PACK and form not in TRAILER_FORMS:
        raise IntegrityError(name, object_id, f"unknown trailer form {form}")
    return got_mode, form, material


def open_object(
    header: bytes,
    kind: int,
    object_id: str,
    shared_key: bytes,
    repo_public: bytes,
    reader: crypto.X25519Pair | None,
    mode: int | None = None,
) -> ObjectCipher:
    """Parse and check a header read from storage (``_check_header``); the object's key."""
    name = KIND_NAMES[kind]
    got_mode, _, material = _check_header(header, kind, object_id, mode)
    if got_mode == MODE_SHARED:
        key = crypto.hkdf(shared_key, material, _info(kind, got_mode))
    elif got_mode == MODE_SEALED:
        if reader is None:
            raise CannotRead(f"this key cannot read {name} {object_id}")
        try:
            dh = reader.agree(material)
        except ValueError:
            raise IntegrityError(name, object_id, "invalid ephemeral key") from None
        key = crypto.hkdf(dh, material + repo_public, _info(kind, got_mode))
    else:
        raise IntegrityError(name, object_id, f"unknown mode {got_mode}")
    return ObjectCipher(bytes(header), key, name, object_id)


_TRAILER_INFO = b"repofs pack trailer key v2"


def trailer_cipher(pack: ObjectCipher, shared_key: bytes) -> ObjectCipher:
    """The cipher of the trailer of a pack whose cipher is ``pack`` (new or opened): the
    pack's own in form 0, a key derived from the shared key and the pack's ephemeral
    public key in form 1. That key is one per pack (the public key is fresh), and it
    seals one message, the trailer, with the trailer's counter."""
    if pack.header[7] != TRAILER_SHARED:
        return pack
    key = crypto.hkdf(shared_key, pack.header[8:HEADER_LEN], _TRAILER_INFO)
    return ObjectCipher(pack.header, key, pack.kind, pack.object_id)


def open_trailer_cipher(header: bytes, object_id: str, shared_key: bytes, repo_public: bytes,
                        reader: crypto.X25519Pair | None) -> ObjectCipher:
    """The trailer's cipher of the pack whose header (read from storage) is ``header``,
    without opening the pack itself when the trailer is in form 1: any key can. A form 0
    trailer needs the private key (CannotRead without it). The form byte is not trusted:
    it is part of the AAD, so a changed one makes the trailer fail to authenticate."""
    _, form, _ = _check_header(header, KIND_PACK, object_id, None)
    if form == TRAILER_SHARED:
        return trailer_cipher(ObjectCipher(bytes(header), b"", "pack", object_id), shared_key)
    return open_object(header, KIND_PACK, object_id, shared_key, repo_public, reader)
