"""``repofs serve`` receives an object straight to an unnamed file and hashes it as it
comes: one client cannot make the server hold an object (up to 1 GiB) in memory, and
bytes that do not hash to their name leave nothing behind."""

from __future__ import annotations

import os
from collections.abc import Iterator

from repofs import crypto, protocol, spec

from .victim import Victim
from .wire import Wire, refused

BLOCK = os.urandom(1 << 20)
SIZE = 200 << 20
PEAK_MIB = 120  # the interpreter and repofs take ~40 MiB; a frame is 8 MiB


def pieces(size: int, salt: bytes) -> Iterator[bytes]:
    """``size`` bytes in protocol-sized parts, made on the fly (never all in memory)."""
    sent = 0
    while sent < size:
        n = min(protocol.DATA_PART, size - sent)
        part = (salt + BLOCK * 9)[:n]
        sent += n
        yield part


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def stream_put(w: Wire, name: str, size: int, salt: bytes) -> dict:
    parts = pieces(size, salt)
    first = next(parts)
    answer = w.ask({"op": "put", "ns": spec.NS_DATA, "name": name, "size": size,
                    "data": first})
    assert answer == {"ok": True, "more": True}, answer
    for part in parts:
        w.send({"op": "data", "data": part})
    got = w.recv()
    assert got is not None
    return got


def test_a_large_put_goes_to_disk_not_to_memory(victim: Victim) -> None:
    name = crypto.object_name_of(pieces(SIZE, b"a"))
    w = Wire(victim.restrict)
    w.hello()
    assert stream_put(w, name, SIZE, b"a") == {"ok": True, "created": True}
    peak = peak_rss_mib(w.p.pid)
    assert w.finish()[0] == 0
    stored = victim.restrict / spec.NS_DATA / name[:2] / name
    assert stored.stat().st_size == SIZE
    assert crypto.object_name_of(iter(lambda f=stored.open("rb"): f.read(1 << 20), b"")) \
        == name
    assert peak < PEAK_MIB, f"serve peaked at {peak:.0f} MiB receiving {SIZE >> 20} MiB"
    stored.unlink()


def test_bytes_under_a_wrong_name_leave_nothing(victim: Victim) -> None:
    size = 3 * protocol.DATA_PART + 5
    name = crypto.object_name_of(pieces(size, b"b"))
    w = Wire(victim.restrict)
    w.hello()
    refused(stream_put(w, name, size, b"c"), protocol.E_NAME_MISMATCH, "do not hash")
    assert w.ask({"op": "stat", "ns": spec.NS_DATA, "name": name})["ok"] is False
    assert w.finish()[0] == 0
    assert not (victim.restrict / spec.NS_DATA / name[:2] / name).exists()
    assert os.listdir(victim.restrict / "tmp") == []
    victim.unchanged()
