"""Format constants and the one msgpack codec, as man/repofs-format.5 states them.

This module owns msgpack. Every record read from storage goes through ``unpack``,
which caps lengths before anything is allocated, and through the ``field_*``
checks, which turn a malformed record into an IntegrityError instead of a
TypeError deep inside the caller. Section names in comments refer to the man page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from repofs.errors import IntegrityError

# -- FORMAT VERSION ------------------------------------------------------------
FORMAT_VERSION = 1  # of objects and records (header byte 4, "v" fields): unchanged in format 2
REPO_VERSION = 2  # config "v" of a new repository: its packs have form 1 trailers
REPO_VERSIONS = (1, 2)  # config "v" this build reads and writes (a repository keeps its own)
MAGIC = b"RPFS"

# -- REPOSITORY LAYOUT ---------------------------------------------------------
CONFIG_NAME = "config"
NS_KEYS = "keys"
NS_DATA = "data"
NS_INDEX = "index"
NS_SNAPSHOTS = "snapshots"
NS_REMOVALS = "removals"  # admin-signed removal records (forget)
NS_CONDEMNED = "condemned"  # admin-signed condemn records (prune)
NAMESPACES = (NS_KEYS, NS_DATA, NS_INDEX, NS_SNAPSHOTS, NS_REMOVALS, NS_CONDEMNED)

# -- OBJECT KINDS (header byte 5) ------------------------------------------------
KIND_PACK = 1
KIND_INDEX = 2
KIND_SNAPSHOT = 3
KIND_NAMES = {KIND_PACK: "pack", KIND_INDEX: "index segment", KIND_SNAPSHOT: "snapshot"}

# -- SESSION MODES (header byte 6) -------------------------------------------------
MODE_SEALED = 1  # X25519: only holders of the repository's private key can read
MODE_SHARED = 2  # symmetric shared key: every key, write-only ones included, can read
# The mode each kind must have; a snapshot is a shared head around a sealed body.
KIND_MODES = {KIND_PACK: MODE_SEALED, KIND_INDEX: MODE_SHARED}

# -- BLOB TYPES ------------------------------------------------------------------
BLOB_DATA = 1
BLOB_TREE = 2
BLOB_NAMES = {BLOB_DATA: "chunk", BLOB_TREE: "tree"}

# -- CODECS ----------------------------------------------------------------------
CODEC_NONE = 0
CODEC_ZSTD = 1

# -- CHUNKER ---------------------------------------------------------------------
CHUNK_MIN = 256 * 1024
CHUNK_AVG = 1024 * 1024
CHUNK_MAX = 4 * 1024 * 1024

# -- PACKS -----------------------------------------------------------------------
PACK_TARGET = 16 * 1024 * 1024
PACK_MAX_BLOBS = 65536
TRAILER_NONCE = 0xFFFF_FFFF_FFFF_FFFF_FFFF_FFFF  # never used by a blob
# header byte 7 of a pack: how its trailer is sealed (repofs-format(5), PACKS, Trailer)
TRAILER_SEALED = 0  # under the pack's key (format 1): full keys only
TRAILER_SHARED = 1  # under a key derived from the shared key (format 2): every key
TRAILER_FORMS = (TRAILER_SEALED, TRAILER_SHARED)

# -- CAPS ON HOSTILE INPUT -----------------------------------------------------------
MAX_RECORD = 256 * 1024 * 1024  # largest msgpack record we decode
MAX_TREE_RAW = 128 * 1024 * 1024
MAX_BLOB_RAW = max(CHUNK_MAX, MAX_TREE_RAW)
MAX_OBJECT = 1024 * 1024 * 1024
MAX_ENTRIES = 8 * 1024 * 1024
MAX_TREE_DEPTH = 2048
MAX_NAME = 4096
MAX_XATTR_VALUE = 1024 * 1024

# -- KEY FILES ---------------------------------------------------------------------
KDF_MIN_T, KDF_MAX_T = 3, 64
KDF_MIN_M_KIB, KDF_MAX_M_KIB = 64 * 1024, 4 * 1024 * 1024
KDF_MIN_P, KDF_MAX_P = 1, 64
KDF_DEFAULT = {"t": 3, "m": 64 * 1024, "p": 4}


def pack(obj: Any) -> bytes:
    """Encode a record; bytes stay bytes, str stays str (use_bin_type)."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes | memoryview, kind: str, object_id: str) -> Any:
    """Decode one untrusted msgpack record with every length capped up front."""
    if len(data) > MAX_RECORD:
        raise IntegrityError(kind, object_id, "record too large")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            max_bin_len=MAX_RECORD,
            max_str_len=MAX_NAME * 16,
            max_array_len=MAX_ENTRIES,
            max_map_len=MAX_ENTRIES,
            max_ext_len=0,
            use_list=True,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, UnicodeDecodeError) as e:
        raise IntegrityError(kind, object_id, f"malformed record ({type(e).__name__})") from e


class Fields:
    """Typed access to a decoded map; any mismatch is an IntegrityError naming the object."""

    def __init__(self, obj: Any, kind: str, object_id: str) -> None:
        if not isinstance(obj, Mapping):
            raise IntegrityError(kind, object_id, "record is not a map")
        self._m = obj
        self.kind = kind
        self.object_id = object_id

    def raw(self, key: str) -> Any:
        """The untyped value, or None; for fields whose type the caller checks itself."""
        return self._m.get(key)

    def fail(self, detail: str) -> IntegrityError:
        return IntegrityError(self.kind, self.object_id, detail)

    def _get(self, key: str, types: type | tuple[type, ...], optional: bool) -> Any:
        if key not in self._m:
            if optional:
                return None
            raise self.fail(f"field {key!r} missing")
        v = self._m[key]
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.fail(f"field {key!r} has the wrong type")
        if not isinstance(v, types):
            raise self.fail(f"field {key!r} has the wrong type")
        return v

    def integer(self, key: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
        v: int = self._get(key, int, False)
        if not lo <= v <= hi:
            raise self.fail(f"field {key!r} out of range")
        return v

    def opt_integer(self, key: str, lo: int = 0, hi: int = 2**64 - 1) -> int | None:
        if key not in self._m:
            return None
        return self.integer(key, lo, hi)

    def blob(self, key: str, size: int | None = None, max_len: int = MAX_RECORD) -> bytes:
        v: bytes = self._get(key, bytes, False)
        if size is not None and len(v) != size:
            raise self.fail(f"field {key!r} has the wrong length")
        if len(v) > max_len:
            raise self.fail(f"field {key!r} too long")
        return v

    def opt_blob(self, key: str, max_len: int = MAX_RECORD) -> bytes | None:
        if key not in self._m:
            return None
        return self.blob(key, max_len=max_len)

    def text(self, key: str, max_len: int = MAX_NAME) -> str:
        v: str = self._get(key, str, False)
        if len(v) > max_len:
            raise self.fail(f"field {key!r} too long")
        return v

    def opt_text(self, key: str, max_len: int = MAX_NAME) -> str | None:
        if key not in self._m:
            return None
        return self.text(key, max_len)

    def items(self, key: str, max_len: int = MAX_ENTRIES) -> list[Any]:
        v: list[Any] = self._get(key, list, False)
        if len(v) > max_len:
            raise self.fail(f"field {key!r} has too many items")
        return v

    def mapping(self, key: str) -> dict[Any, Any]:
        v: dict[Any, Any] = self._get(key, dict, False)
        return v

    def sub(self, key: str) -> Fields:
        return Fields(self.mapping(key), self.kind, self.object_id)

    def text_list(self, key: str, max_len: int = 4096) -> list[str]:
        items = self.items(key, max_len)
        if not all(isinstance(i, str) and len(i) <= MAX_NAME for i in items):
            raise self.fail(f"field {key!r} must be a list of strings")
        return items

    def id_list(self, key: str, size: int, max_len: int = MAX_ENTRIES) -> list[bytes]:
        items = self.items(key, max_len)
        if not all(isinstance(i, bytes) and len(i) == size for i in items):
            raise self.fail(f"field {key!r} must be a list of {size}-byte ids")
        return items
