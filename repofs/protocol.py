"""The wire format between a repofs client and ``repofs serve`` (protocol version 1).

Why it is shaped like this: the server is the last line against a compromised
client, so everything it reads is hostile and everything it offers must be
harmless to offer. A frame is a big-endian u32 length and one msgpack map
(encoded with ``spec.pack``, decoded with ``spec.unpack``, which caps lengths);
the length is checked against ``MAX_FRAME`` before a byte of the body is read,
so no frame can make either side allocate more than that. Objects larger than
``DATA_PART`` travel as a ``put`` followed by ``data`` frames, and are read back
with ``get`` ranges, so no message is ever larger than a pack part.

Requests (client -> server) and what the server answers::

    hello  v                      -> v, ops, repository (bool); always first
    init   config                 -> ok; only where no repository exists yet
    config                        -> data
    put    ns name size data      -> ok (more: send data frames), then ok created
    data   data                   (continuation of a put; no answer until the last)
    get    ns name offset length  -> data size
    stat   ns name                -> size
    list   ns                     -> names more, repeated while more is true

Every refusal is ``{"ok": false, "error": CODE, "message": TEXT}``; the codes are
below. There is no delete, rename, overwrite, chmod or lock: the server simply
has no such operation, and answers ``unknown-op``.
"""

from __future__ import annotations

import struct
from typing import IO, Any

from repofs import spec
from repofs.errors import IntegrityError

VERSION = 1
DATA_PART = 8 * 1024 * 1024  # the largest payload of one frame
MAX_FRAME = DATA_PART + 64 * 1024  # a part plus its envelope
LIST_BATCH = 8192  # names per list frame (~0.5 MiB)
MAX_CONFIG = 64 * 1024
OPS = ("hello", "init", "config", "put", "data", "get", "stat", "list")

# -- error codes ---------------------------------------------------------------------
E_PROTOCOL = "protocol"  # malformed frame or request, or a request out of order
E_VERSION = "version"  # no protocol version in common
E_TOO_LARGE = "too-large"  # a frame, object or range over the limits
E_UNKNOWN_OP = "unknown-op"  # delete, rename, ... : not offered, by design
E_BAD_NAMESPACE = "bad-namespace"
E_BAD_NAME = "bad-name"  # not 64 lowercase hex digits
E_NAME_MISMATCH = "name-mismatch"  # the bytes do not hash to the name
E_EXISTS = "exists"  # the name holds other bytes (write-once)
E_NOT_FOUND = "not-found"
E_NO_REPOSITORY = "no-repository"
E_REPOSITORY_EXISTS = "repository-exists"
E_DAMAGED = "damaged"  # the server found something wrong in its storage (a symlink, ...)
E_IO = "io"  # the server's file system failed (ENOSPC, EIO, ...)

_LEN = struct.Struct(">I")


class ProtocolError(Exception):
    """A frame or message that breaks the protocol; ``code`` is one of the E_* codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def write_frame(out: IO[bytes], msg: dict[str, Any]) -> None:
    body = spec.pack(msg)
    if len(body) > MAX_FRAME:
        raise ProtocolError(E_TOO_LARGE, f"frame of {len(body)} bytes is over the limit")
    out.write(_LEN.pack(len(body)) + body)
    out.flush()


def _read_exactly(inp: IO[bytes], n: int) -> bytes:
    parts: list[bytes] = []
    left = n
    while left:
        chunk = inp.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_frame(inp: IO[bytes]) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream (between frames)."""
    head = _read_exactly(inp, _LEN.size)
    if not head:
        return None
    if len(head) != _LEN.size:
        raise ProtocolError(E_PROTOCOL, "stream ended inside a frame header")
    (length,) = _LEN.unpack(head)
    if length > MAX_FRAME:
        raise ProtocolError(E_TOO_LARGE, f"frame of {length} bytes is over the limit of "
                                         f"{MAX_FRAME}")
    body = _read_exactly(inp, length)
    if len(body) != length:
        raise ProtocolError(E_PROTOCOL, "stream ended inside a frame")
    try:
        msg = spec.unpack(body, "frame", "-")
    except IntegrityError:
        raise ProtocolError(E_PROTOCOL, "frame is not a msgpack record") from None
    if not isinstance(msg, dict) or not all(isinstance(k, str) for k in msg):
        raise ProtocolError(E_PROTOCOL, "frame is not a map with text keys")
    return msg


# -- typed access to a decoded message -------------------------------------------------
def text(msg: dict[str, Any], key: str, max_len: int = 256) -> str:
    v = msg.get(key)
    if not isinstance(v, str) or len(v) > max_len:
        raise ProtocolError(E_PROTOCOL, f"field {key!r} must be text of at most {max_len}")
    return v


def integer(msg: dict[str, Any], key: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    v = msg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ProtocolError(E_PROTOCOL, f"field {key!r} must be an integer in [{lo}, {hi}]")
    return v


def blob(msg: dict[str, Any], key: str, max_len: int = DATA_PART) -> bytes:
    v = msg.get(key)
    if not isinstance(v, bytes):
        raise ProtocolError(E_PROTOCOL, f"field {key!r} must be bytes")
    if len(v) > max_len:
        raise ProtocolError(E_TOO_LARGE, f"field {key!r} is over {max_len} bytes")
    return v


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def refusal(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": code, "message": message[:1000]}


__all__ = [
    "DATA_PART", "LIST_BATCH", "MAX_CONFIG", "MAX_FRAME", "OPS", "VERSION", "ProtocolError",
    "blob", "integer", "ok", "read_frame", "refusal", "text", "write_frame",
]
