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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from repofs import crypto
from repofs.errors import IntegrityError
from repofs.spec import FORMAT_VERSION, KIND_MODES, KIND_NAMES, MAGIC, MODE_SEALED, MODE_SHARED

HEADER = struct.Struct(">4sBBBx32s")
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


def new_object(kind: int, mode: int, shared_key: bytes, repo_public: bytes) -> ObjectCipher:
    """Start a new object: fresh header material, fresh key."""
    if mode == MODE_SEALED:
        material, dh = crypto.ephemeral_agreement(repo_public)
        key = crypto.hkdf(dh, material + repo_public, _info(kind, mode))
    else:
        material = crypto.random_bytes(32)
        key = crypto.hkdf(shared_key, material, _info(kind, mode))
    header = HEADER.pack(MAGIC, FORMAT_VERSION, kind, mode, material)
    return ObjectCipher(header, key, KIND_NAMES[kind], "(new)")


def open_object(
    header: bytes,
    kind: int,
    object_id: str,
    shared_key: bytes,
    repo_public: bytes,
    reader: crypto.X25519Pair | None,
    mode: int | None = None,
) -> ObjectCipher:
    """Parse and check a header read from storage, asserting the kind (and the mode) we
    expect: a pack in shared mode would be readable by write-only keys."""
    name = KIND_NAMES[kind]
    if len(header) != HEADER_LEN:
        raise IntegrityError(name, object_id, "truncated header")
    magic, version, got_kind, got_mode, material = HEADER.unpack(header)
    if magic != MAGIC:
        raise IntegrityError(name, object_id, "not a repofs object")
    if version != FORMAT_VERSION:
        raise IntegrityError(name, object_id, f"unknown format version {version}")
    if got_kind != kind:
        raise IntegrityError(name, object_id, f"object is a {KIND_NAMES.get(got_kind, '?')}")
    expected = mode if mode is not None else KIND_MODES.get(kind)
    if expected is not None and got_mode != expected:
        raise IntegrityError(name, object_id, "object has the wrong encryption mode")
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
