"""Chunks read and decoded in child processes, for the mount's read-ahead.

A tree walker (tar, cp -a, rsync) through the mount reads thousands of small
files, one after the other. Decoding each one's chunk (read, decrypt,
decompress, verify) is cheap in bytes but costs tens of microseconds of
Python, and in the daemon that time holds the GIL the FUSE event loop needs
for every request: measured on the benchmark corpus, the decoding slowed tar
by a fifth although it ran in other threads. So the chunks fetched ahead of
readers are decoded by forked copies of the daemon, which hand back only the
plaintexts, a batch per message (``multiprocessing`` connections).

A child is forked before the daemon starts any thread or mounts anything, so
it holds no FUSE descriptor and no lock another thread held. It reads the
repository through its copy of the parent's (a local store: no connection is
shared); blobs of snapshots added after the fork are found by reading the
index segments that are new to it. What it cannot fetch or verify it leaves
out of its answer without saying why: read-ahead never reports errors, the
reader that needs the chunk fetches it in the daemon and gets the error that
names the object. A child that dies is not replaced; when none is left, the
read-ahead fetches in the daemon's threads again.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import struct
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

PROCESSES = 2  # one per core of the benchmark machine: more only wait for the daemon
ID_SIZE = 32  # chunk ids are 32-byte keyed BLAKE3 hashes
_REFRESH_SECONDS = 2.0  # how often a child may re-read the index after a miss
_COUNT = struct.Struct("<I")
_SIZE = struct.Struct("<q")  # -1: not fetched


def _serve(conn: Connection, parent_ends: list[Connection], fetch: Callable[[bytes], bytes],
           refresh: Callable[[], None]) -> None:
    """A child's loop: a message of chunk ids in, one of their plaintexts out, until EOF
    (the parent's end closed: it closed the decoders, or exited)."""
    for end in parent_ends:  # held here, they would keep this child and the others waiting
        end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a foreground mount's ^C is the parent's
    refreshed = 0.0
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        ids = [request[i:i + ID_SIZE] for i in range(0, len(request), ID_SIZE)]
        datas: list[bytes] = []
        sizes = []
        for cid in ids:
            try:
                data = fetch(cid)
            except Exception:
                data = None
                if time.monotonic() - refreshed > _REFRESH_SECONDS:
                    refreshed = time.monotonic()  # a snapshot added since the fork?
                    try:
                        refresh()
                        data = fetch(cid)
                    except Exception:
                        data = None
            sizes.append(-1 if data is None else len(data))
            if data is not None:
                datas.append(data)
        head = _COUNT.pack(len(ids)) + b"".join(_SIZE.pack(n) for n in sizes)
        try:
            conn.send_bytes(head + b"".join(datas))
        except OSError:
            return


def _parse(message: bytes, count: int) -> list[memoryview | None]:
    """The plaintexts of an answer, as views of it (no copies), None where not fetched."""
    view = memoryview(message)
    if len(view) < _COUNT.size or _COUNT.unpack_from(view)[0] != count:
        raise ValueError("a decoder answered a different request")
    pos = _COUNT.size + count * _SIZE.size
    out: list[memoryview | None] = []
    for i in range(count):
        n = _SIZE.unpack_from(view, _COUNT.size + i * _SIZE.size)[0]
        if n < 0:
            out.append(None)
            continue
        if pos + n > len(view):
            raise ValueError("a decoder's answer is cut short")
        out.append(view[pos:pos + n])
        pos += n
    return out


class Decoders:
    """Child processes that fetch chunks; ``decode`` may be called from several threads."""

    def __init__(self, fetch: Callable[[bytes], bytes], refresh: Callable[[], None],
                 processes: int = PROCESSES) -> None:
        ctx = multiprocessing.get_context("fork")
        self._cond = threading.Condition()
        self._free: list[Connection] = []
        self._alive = 0
        self._closed = False
        self._procs: list[multiprocessing.process.BaseProcess] = []
        try:
            for _ in range(processes):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=_serve,
                                args=(theirs, [*self._free, mine], fetch, refresh),
                                name="repofs-decoder", daemon=True)
                try:
                    p.start()
                finally:
                    theirs.close()
                self._free.append(mine)
                self._procs.append(p)
                self._alive += 1
        except BaseException:  # a fork failed: the children started go again
            self.close()
            raise

    @property
    def alive(self) -> bool:
        return self._alive > 0

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def decode(self, ids: Sequence[bytes]) -> list[memoryview | None] | None:
        """The plaintexts of these chunks (None for each not fetched), or None when no
        child is left to ask."""
        with self._cond:
            while not self._free and self._alive:
                self._cond.wait()
            if not self._alive:
                return None
            conn = self._free.pop()
        try:
            conn.send_bytes(b"".join(ids))
            out = _parse(conn.recv_bytes(), len(ids))
        except (EOFError, OSError, ValueError) as e:
            conn.close()
            with self._cond:
                self._alive -= 1
                self._cond.notify_all()
            log.warning("a chunk decoder process is gone (%s); %d left", e or "EOF",
                        self._alive)
            return [None] * len(ids)
        with self._cond:
            if self._closed:
                conn.close()
            else:
                self._free.append(conn)
                self._cond.notify()
        return out

    def close(self) -> None:
        """Let the children go (they exit at EOF) and wait for them briefly."""
        with self._cond:
            conns, self._free = self._free, []
            self._alive = 0
            self._closed = True
            self._cond.notify_all()
        for conn in conns:
            conn.close()
        for p in self._procs:
            p.join(1.0)
            if p.is_alive():
                p.terminate()
                p.join(1.0)


__all__ = ["PROCESSES", "Decoders"]
