"""Every cryptographic primitive repofs uses, behind names that say their purpose.

This module owns ``cryptography`` and ``blake3``; nothing else imports them.
Choices (see repofs-format(5), ENCRYPTION): AES-256-GCM for every sealed
message, HKDF-SHA256 for per-object keys, X25519 for objects only the
repository's private key may open, keyed BLAKE3 for chunk ids, unkeyed BLAKE3
for object names, Argon2id for passphrases, Ed25519 for the records only an
admin key may write (removals and condemnations: repofs-format(5), SIGNED RECORDS).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

import blake3
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
ID_LEN = 32


class AuthenticationFailed(Exception):
    """An AEAD tag did not verify: the message was altered or the key is wrong."""


def random_bytes(n: int) -> bytes:
    return secrets.token_bytes(n)


def object_name(data: bytes | memoryview) -> str:
    """Unkeyed BLAKE3 of an object's stored bytes, hex: its name in storage."""
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()


def object_name_of(chunks: Iterable[bytes]) -> str:
    """``object_name`` of bytes read piece by piece (``check --storage-only`` on big packs)."""
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def keyed_id(key: bytes, data: bytes | memoryview) -> bytes:
    """Keyed BLAKE3 of plaintext: a chunk or tree id that reveals nothing without the key."""
    return blake3.blake3(data, key=key).digest()


class KeyedDigest:
    """Keyed BLAKE3 of bytes fed piece by piece: the MAC of a local cache file
    (``blobcache``), hashed as it is read or written, never held whole."""

    def __init__(self, key: bytes) -> None:
        self._h = blake3.blake3(key=key, max_threads=blake3.blake3.AUTO)

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()


def keyed_stream(key: bytes, context: bytes, length: int) -> bytes:
    """A keyed pseudo-random byte stream (BLAKE3 XOF), e.g. to shuffle the chunker table."""
    return blake3.blake3(context, key=key).digest(length=length)


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = KEY_LEN) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def same(a: bytes, b: bytes) -> bool:
    """Constant-time equality for ids and tags."""
    return hmac.compare_digest(a, b)


def nonce(counter: int) -> bytes:
    return counter.to_bytes(NONCE_LEN, "big")


def seal(key: bytes, counter: int, plaintext: bytes | memoryview, aad: bytes) -> bytes:
    return AESGCM(key).encrypt(nonce(counter), plaintext, aad)


def open_sealed(key: bytes, counter: int, ciphertext: bytes | memoryview, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce(counter), ciphertext, aad)
    except InvalidTag as e:
        raise AuthenticationFailed from e


def argon2id(passphrase: bytes, salt: bytes, t: int, m_kib: int, p: int) -> bytes:
    return Argon2id(salt=salt, length=KEY_LEN, iterations=t, lanes=p, memory_cost=m_kib).derive(
        passphrase
    )


class X25519Pair:
    """The repository's X25519 key pair; the private half is what 'can read' means."""

    def __init__(self, private: bytes) -> None:
        self._private = X25519PrivateKey.from_private_bytes(private)
        self.public = self._private.public_key().public_bytes_raw()

    @staticmethod
    def generate_private() -> bytes:
        return X25519PrivateKey.generate().private_bytes_raw()

    def private_bytes(self) -> bytes:
        return self._private.private_bytes_raw()

    def agree(self, peer_public: bytes) -> bytes:
        return self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))


def ephemeral_agreement(recipient_public: bytes) -> tuple[bytes, bytes]:
    """Fresh ephemeral key pair against a recipient: (ephemeral public, shared secret)."""
    eph = X25519PrivateKey.generate()
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    return eph.public_key().public_bytes_raw(), shared


class Ed25519Signer:
    """The admin key: signs removal and condemn records, which every key holder verifies
    with the public half (a writer holds that half only, so it cannot forge a removal)."""

    def __init__(self, private: bytes) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(private)
        self.public = self._private.public_key().public_bytes_raw()

    @staticmethod
    def generate_private() -> bytes:
        return Ed25519PrivateKey.generate().private_bytes_raw()

    def private_bytes(self) -> bytes:
        return self._private.private_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """True only if ``signature`` is the Ed25519 signature of ``message`` under ``public``;
    malformed keys or signatures are False, never an exception (they come from storage)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def content_md5(body: bytes) -> str:
    """Content-MD5 (base64): a transfer checksum S3 requires on lock buckets, not a
    security hash (names, BLAKE3, are what readers verify)."""
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
