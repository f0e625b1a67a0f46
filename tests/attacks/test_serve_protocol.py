"""A compromised client speaking to ``repofs serve`` directly: nothing it sends changes or
removes an existing object, every request outside the protocol is refused with a precise
error, and the earlier snapshots still restore byte for byte afterwards."""

from __future__ import annotations

import os
import struct

import pytest

from repofs import crypto, protocol, spec

from .victim import Victim
from .wire import Wire, refused

KINDS = {"pack": spec.NS_DATA, "index segment": spec.NS_INDEX, "snapshot": spec.NS_SNAPSHOTS,
         "key file": spec.NS_KEYS}
OBJECTS = tuple(KINDS.values())  # namespaces the pristine repository has objects in


def existing(victim: Victim, ns: str) -> tuple[str, bytes]:
    base = victim.restrict / ns
    path = next(p for p in sorted(base.rglob("*")) if p.is_file())
    return path.name, path.read_bytes()


def put(w: Wire, ns: str, name: str, data: bytes, size: int | None = None) -> dict:
    return w.ask({"op": "put", "ns": ns, "name": name,
                  "size": len(data) if size is None else size, "data": data})


VERBS = ["delete", "remove", "unlink", "rename", "move", "overwrite", "truncate", "append",
         "chmod", "chattr", "setattr", "lock", "unlock", "write", "prune", "rmdir", "mkdir",
         "symlink", "link", "exec", "forget", "DELETE", "put ", ""]


def test_no_verb_removes_or_changes_anything(victim: Victim) -> None:
    w = Wire(victim.restrict)
    w.hello()
    for ns in OBJECTS:
        name, _ = existing(victim, ns)
        for verb in VERBS:
            refused(w.ask({"op": verb, "ns": ns, "name": name, "to": "0" * 64, "data": b"",
                           "offset": 0, "length": 0}), protocol.E_UNKNOWN_OP, "no operation")
        assert w.ask({"op": "stat", "ns": ns, "name": name})["ok"]  # still served
    assert w.finish()[0] == 0
    victim.unchanged()


def test_existing_objects_cannot_be_rewritten(victim: Victim) -> None:
    """Overwrite, append to, truncate or empty a pack, an index segment, a snapshot, a key."""
    w = Wire(victim.restrict)
    w.hello()
    for ns in KINDS.values():
        name, data = existing(victim, ns)
        for new in (os.urandom(len(data)), data + b"\0appended", data[: len(data) // 2], b""):
            refused(put(w, ns, name, new), protocol.E_NAME_MISMATCH, "do not hash to this name")
        assert put(w, ns, name, data) == {"ok": True, "created": False}  # replay: a no-op
    w.finish()
    victim.unchanged()


def test_config_cannot_be_rewritten(victim: Victim) -> None:
    w = Wire(victim.restrict)
    assert w.hello()["repository"] is True
    refused(w.ask({"op": "init", "config": b"\x80"}), protocol.E_REPOSITORY_EXISTS)
    refused(w.ask({"op": "put", "ns": "config", "name": "config", "size": 1, "data": b"x"}),
            protocol.E_BAD_NAMESPACE)
    w.finish()
    victim.unchanged()


def test_bytes_under_a_name_they_do_not_hash_to(victim: Victim) -> None:
    w = Wire(victim.restrict)
    w.hello()
    for ns in spec.NAMESPACES:
        data = os.urandom(100)
        claimed = crypto.object_name(data + b"x")
        refused(put(w, ns, claimed, data), protocol.E_NAME_MISMATCH, claimed)
        refused(w.ask({"op": "stat", "ns": ns, "name": claimed}), protocol.E_NOT_FOUND)
    w.finish()
    victim.unchanged()
    assert sorted(os.listdir(victim.restrict / "tmp")) == []


BAD_NAMES = ["../config", "/etc/passwd", "..", ".", "lock", "lock.exclusive", "A" * 64,
             "a" * 63, "a" * 65, "a" * 63 + "\0", "a" * 63 + "/", "0" * 62 + "/.", "",
             " " + "a" * 63, "a" * 64 + "\n", "../" + "a" * 61]
BAD_NAMESPACES = ["../snapshots", "/etc", "config", "tmp", "locks", "lock", "", "data/ab",
                  "snapshots\0", "keys/..", ".", "..", "SNAPSHOTS"]


def test_names_that_are_not_object_names(victim: Victim) -> None:
    """Path tricks (.., absolute, NUL, slashes) and lock or temp names, in every operation."""
    w = Wire(victim.restrict)
    w.hello()
    for name in BAD_NAMES:
        for ns in (spec.NS_SNAPSHOTS, spec.NS_DATA):
            refused(put(w, ns, name, b"x"), protocol.E_BAD_NAME, "64 lowercase hex")
            refused(w.ask({"op": "get", "ns": ns, "name": name, "offset": 0, "length": 10}),
                    protocol.E_BAD_NAME)
            refused(w.ask({"op": "stat", "ns": ns, "name": name}), protocol.E_BAD_NAME)
    w.finish()
    victim.unchanged()


def test_namespaces_outside_the_four(victim: Victim) -> None:
    """No lock, temp or config file can be planted, nor any directory named."""
    data = b"planted lock"
    w = Wire(victim.restrict)
    w.hello()
    for ns in BAD_NAMESPACES:
        refused(put(w, ns, crypto.object_name(data), data), protocol.E_BAD_NAMESPACE)
        refused(w.ask({"op": "list", "ns": ns}), protocol.E_BAD_NAMESPACE)
        refused(w.ask({"op": "stat", "ns": ns, "name": crypto.object_name(data)}),
                protocol.E_BAD_NAMESPACE)
    w.finish()
    victim.unchanged()
    assert os.listdir(victim.restrict / "tmp") == []


def test_requests_out_of_order_or_malformed(victim: Victim) -> None:
    w = Wire(victim.restrict)
    refused(w.ask({"op": "list", "ns": spec.NS_SNAPSHOTS}), protocol.E_PROTOCOL, "hello")
    refused(w.ask({"op": "hello", "v": 2}), protocol.E_VERSION, "version 2")
    refused(w.ask({"op": "hello", "v": "1"}), protocol.E_PROTOCOL)
    w.hello()
    refused(w.ask({"op": "data", "data": b"x"}), protocol.E_PROTOCOL, "outside a put")
    name, _ = existing(victim, spec.NS_SNAPSHOTS)
    get = {"op": "get", "ns": spec.NS_SNAPSHOTS, "name": name, "offset": 0}
    refused(w.ask({**get, "length": protocol.DATA_PART + 1}), protocol.E_TOO_LARGE)
    refused(w.ask({**get, "offset": -1, "length": 1}), protocol.E_PROTOCOL)
    refused(w.ask({**get, "length": True}), protocol.E_PROTOCOL)
    refused(w.ask({"op": "put", "ns": spec.NS_DATA, "name": "0" * 64,
                   "size": spec.MAX_OBJECT + 1, "data": b""}), protocol.E_TOO_LARGE)
    refused(w.ask({"op": "put", "ns": spec.NS_DATA, "name": "0" * 64, "size": 1,
                   "data": b"too long"}), protocol.E_PROTOCOL, "more data")
    refused(w.ask({"op": 7}), protocol.E_UNKNOWN_OP)
    assert w.ask({"op": "stat", "ns": spec.NS_SNAPSHOTS, "name": name})["ok"]
    assert w.finish()[0] == 0
    victim.unchanged()


@pytest.mark.parametrize("frame", [
    struct.pack(">I", 0xFFFF_FFFF),  # a 4 GiB frame: refused before anything is read
    struct.pack(">I", protocol.MAX_FRAME + 1) + b"x" * 100,
    struct.pack(">I", 3) + b"\xc1\xc1\xc1",  # not msgpack
    struct.pack(">I", 2) + b"\x91\x01",  # a list, not a map
    struct.pack(">I", 3) + b"\x81\x01\x01",  # a map with a non-text key
    struct.pack(">I", 100) + b"\x80",  # the stream ends inside a frame
    b"\x00\x00",  # ... or inside a frame header
], ids=["4GiB", "over-limit", "not-msgpack", "list", "int-key", "short-body", "short-head"])
def test_oversized_and_malformed_frames_end_the_connection(victim: Victim, frame: bytes) -> None:
    w = Wire(victim.restrict)
    w.hello()
    w.raw(frame)
    if frame != b"\x00\x00" and not frame.endswith(b"\x80"):
        answer = w.recv()
        assert answer is not None and answer["ok"] is False, answer
        assert answer["error"] in (protocol.E_TOO_LARGE, protocol.E_PROTOCOL)
    rc, _ = w.finish()
    assert rc == 2
    victim.unchanged()


def test_a_put_broken_off_or_overrunning_leaves_nothing(victim: Victim) -> None:
    data = os.urandom(protocol.DATA_PART + 1000)
    name = crypto.object_name(data)
    w = Wire(victim.restrict)
    w.hello()
    first = data[: protocol.DATA_PART]
    assert put(w, spec.NS_DATA, name, first, len(data)) == {"ok": True, "more": True}
    w.send({"op": "data", "data": data[protocol.DATA_PART:] + b"overrun"})
    refused(w.recv(), protocol.E_PROTOCOL, "more data")
    assert w.finish()[0] == 2
    w = Wire(victim.restrict)
    w.hello()
    assert put(w, spec.NS_DATA, name, first, len(data))["more"] is True
    w.send({"op": "stat", "ns": spec.NS_DATA, "name": name})  # not the data it owes
    refused(w.recv(), protocol.E_PROTOCOL, "not followed by its data")
    assert w.finish()[0] == 2
    w = Wire(victim.restrict)
    w.hello()
    put(w, spec.NS_DATA, name, first, len(data))
    assert w.finish()[0] == 2  # hung up halfway: an error, and nothing was linked
    victim.unchanged()
    assert not (victim.restrict / spec.NS_DATA / name[:2] / name).exists()
    assert os.listdir(victim.restrict / "tmp") == []


def test_after_every_attack_the_earlier_snapshots_restore(victim: Victim) -> None:
    """A battery of the attacks above on one repository, then a real restore of both
    snapshots through the same forced command, compared byte for byte."""
    w = Wire(victim.restrict)
    w.hello()
    for ns in OBJECTS:
        name, data = existing(victim, ns)
        refused(put(w, ns, name, data + b"x"), protocol.E_NAME_MISMATCH)
        refused(w.ask({"op": "delete", "ns": ns, "name": name}), protocol.E_UNKNOWN_OP)
    w.finish()
    victim.unchanged()
    victim.restores_exactly()
