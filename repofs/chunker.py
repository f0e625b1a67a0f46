"""Keyed content-defined chunking of byte streams (FastCDC 2020, from pyfastcdc).

FastCDC's gear table is public, so raw FastCDC boundaries would let anyone who
holds the storage fingerprint known files by their chunk sizes. repofs keys it
twice: the input is passed through a secret byte permutation (``bytes.translate``)
before boundaries are searched, which is the same as running FastCDC with the
gear table permuted by a secret, and the table is XORed with a secret 63-bit
seed (pyfastcdc's ``seed``). Chunks are cut from the original bytes at those
boundaries. repofs-format(5), CHUNKING, states the residual leak.

Why pyfastcdc: its cut loop runs without the GIL (and about 2x faster than the
fastcdc package's), so hashing, compressing and sealing in other threads go on
while a buffer is searched. That was the limit of ``create`` on two cores.

Streams are read in large buffers; the last chunk of a buffer is carried over
to the next read, because FastCDC restarts its state at every boundary, the
result is identical to chunking the whole stream at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pyfastcdc import FastCDC

from repofs import crypto
from repofs.spec import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN

READ_SIZE = 8 * 1024 * 1024


def permutation(chunker_key: bytes) -> bytes:
    """A secret permutation of the 256 byte values, from the chunker key (Fisher-Yates)."""
    stream = crypto.keyed_stream(chunker_key, b"repofs chunker permutation v1", 256 * 8)
    table = list(range(256))
    for i in range(255, 0, -1):
        r = int.from_bytes(stream[i * 8 : i * 8 + 8], "little")
        j = r % (i + 1)
        table[i], table[j] = table[j], table[i]
    return bytes(table)


def gear_seed(chunker_key: bytes) -> int:
    """The secret XORed into every gear value: 1 .. 2^63-1 (pyfastcdc shifts it left)."""
    stream = crypto.keyed_stream(chunker_key, b"repofs chunker seed v1", 8)
    return 1 + int.from_bytes(stream, "little") % (2**63 - 1)


class Chunker:
    """Cuts streams into chunks whose boundaries depend on content and the key."""

    def __init__(
        self,
        chunker_key: bytes,
        min_size: int = CHUNK_MIN,
        avg_size: int = CHUNK_AVG,
        max_size: int = CHUNK_MAX,
    ) -> None:
        self._table = permutation(chunker_key)
        self.min_size, self.avg_size, self.max_size = min_size, avg_size, max_size
        self._cdc = FastCDC(avg_size, min_size=min_size, max_size=max_size,
                            normalized_chunking=1, seed=gear_seed(chunker_key))

    def boundaries(self, buf: bytes | bytearray) -> list[int]:
        """Lengths of the chunks FastCDC finds in ``buf`` (the last may be cut by its end)."""
        return [c.length for c in self._cdc.cut_buf(buf.translate(self._table))]

    def chunks(self, readinto: Callable[[memoryview], int | None],
               size_hint: int | None = None) -> Iterator[memoryview]:
        """Yield the chunks of a stream, read with ``readinto(buffer)`` until it returns 0.

        Each fill reads into a fresh buffer (chunks handed out earlier may still be
        queued for compression in another thread), so only the carried tail is copied.
        ``size_hint`` (a file's size) keeps buffers of small files small; one byte
        more than the hint is asked for, so EOF is seen without another read.
        """
        carry = memoryview(b"")
        eof = False
        left = size_hint
        while not eof:
            # Past the hint (a file growing while read, a /proc file of st_size 0), read
            # whole buffers again: one byte per read would re-chunk the carry for every byte.
            # An empty file asks for 1 byte (a 16 MiB buffer per empty file was most of
            # the cost of trees of tiny files); only past the hint do whole buffers return.
            want = READ_SIZE if left is None or left < 0 else min(READ_SIZE, left + 1)
            buf = bytearray(len(carry) + want)
            buf[: len(carry)] = carry
            have, eof = _fill(readinto, buf, len(carry))
            if left is not None:
                left -= have - len(carry)
            if have == 0:
                return
            if have < len(buf):
                del buf[have:]
            view = memoryview(buf)
            if eof and have <= self.min_size:
                yield view  # no cut point can lie before min_size
                return
            lengths = self.boundaries(buf)
            if not eof:
                lengths.pop()  # possibly cut short by the buffer end: redo with more data
            pos = 0
            for n in lengths:
                yield view[pos : pos + n]
                pos += n
            carry = view[pos:]


def _fill(readinto: Callable[[memoryview], int | None], buf: bytearray,
          have: int) -> tuple[int, bool]:
    """Fill ``buf`` from ``have`` on; pipes return little at a time. Returns (bytes, eof)."""
    with memoryview(buf) as view:
        while have < len(buf):
            n = readinto(view[have:])
            if not n:
                return have, True
            have += n
    return have, False
