"""zstd compression of blobs; this module owns ``zstandard``.

Decompression is always bounded by the size the (authenticated) index or tree
promises, so a hostile blob cannot make a reader allocate more than that.
"""

from __future__ import annotations

import re
import threading

import zstandard

from repofs.spec import CODEC_NONE, CODEC_ZSTD

DEFAULT_LEVEL = 3
_SPEC = re.compile(r"zstd(?:,(?P<level>[0-9]{1,2}))?|none", re.ASCII)
_local = threading.local()


class Codec:
    """A compression choice: ``zstd`` at a level, or ``none``."""

    def __init__(self, name: str = "zstd", level: int = DEFAULT_LEVEL) -> None:
        if name not in ("zstd", "none"):
            raise ValueError(f"unknown compression {name!r}")
        if name == "zstd" and not 1 <= level <= 22:
            raise ValueError("zstd level must be 1..22")
        self.name = name
        self.level = level

    @classmethod
    def parse(cls, spec: str) -> Codec:
        """Parse ``zstd``, ``zstd,LEVEL`` (LEVEL: ASCII digits, 1 to 22) or ``none``;
        nothing else: not ``zstd,`` nor ``none,3`` (a level that would be ignored), nor
        spaces, signs or other digits that int() would take."""
        m = _SPEC.fullmatch(spec)
        if m is None:
            raise ValueError(f"bad --compression {spec!r}: give zstd, zstd,LEVEL (1..22) "
                             "or none")
        try:
            return cls(spec.partition(",")[0],
                       int(m["level"]) if m["level"] else DEFAULT_LEVEL)
        except ValueError as e:
            raise ValueError(f"bad --compression {spec!r}: {e}") from None

    def compress(self, data: bytes | memoryview) -> tuple[int, bytes | memoryview]:
        """Return (codec id, payload); incompressible data is stored as is."""
        if self.name == "none":
            return CODEC_NONE, data
        comp = _compressor(self.level)
        out = comp.compress(data)
        if len(out) >= len(data):
            return CODEC_NONE, data
        return CODEC_ZSTD, out


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "c", None)
    if cache is None:
        cache = _local.c = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return cache[level]


def decompress(codec: int, payload: bytes | memoryview, raw_len: int) -> bytes:
    """Undo ``compress``; raises ValueError on anything but exactly raw_len bytes."""
    if codec == CODEC_NONE:
        out = bytes(payload)
    elif codec == CODEC_ZSTD:
        d = getattr(_local, "d", None)
        if d is None:
            d = _local.d = zstandard.ZstdDecompressor()
        try:
            # A frame header may promise any size; refuse before anything is allocated.
            if zstandard.frame_content_size(payload) > raw_len:
                raise ValueError("zstd frame larger than the recorded size")
            out = d.decompress(payload, max_output_size=raw_len)
        except zstandard.ZstdError as e:
            raise ValueError(f"zstd: {e}") from None
    else:
        raise ValueError(f"unknown codec {codec}")
    if len(out) != raw_len:
        raise ValueError("decompressed size differs from the recorded size")
    return out
