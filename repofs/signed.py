"""Records only an admin key can write: removals (forget) and condemnations (prune).

Why signatures and not the AEAD every other object uses: AEAD keys are shared by
every key holder, a compromised backup host included, so anything sealed with
them could be forged by that host. A removal must be something such a host
cannot make, or ransomware could "forget" the history it cannot delete. So
these records are signed with the repository's Ed25519 admin key; every key
file carries the public half in its authenticated payload, and every reader
verifies (repofs-format(5), SIGNED RECORDS).

A record that fails any check (name, size, encoding, signature, type) is not
an error for a reader: it is ignored and named in ``bad``, so a writer that
plants garbage in these namespaces can neither remove anything nor lock anyone
out; ``repofs check`` reports it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from repofs import crypto, spec
from repofs.damage import DamageLog
from repofs.errors import IntegrityError, Unreadable
from repofs.model import Snapshot, SnapshotHead
from repofs.store import WriterStore

TYPE_REMOVAL = "removal"
TYPE_CONDEMN = "condemn"
NAMESPACE_OF = {TYPE_REMOVAL: spec.NS_REMOVALS, TYPE_CONDEMN: spec.NS_CONDEMNED}
KIND_OF = {TYPE_REMOVAL: "removal record", TYPE_CONDEMN: "condemn record"}
SIGNATURE_CONTEXT = b"repofs signed record v1\x00"
MAX_SIGNED = 64 * 1024 * 1024  # largest record read: 1M ids of 32 bytes plus encoding
MAX_REMOVED = 65536  # snapshots per removal record
MAX_CONDEMNED = 1048576  # packs (and segments) per condemn record


class _Keys(Protocol):
    @property
    def repo_id(self) -> bytes: ...

    @property
    def admin_public(self) -> bytes: ...


class _Signer(Protocol):
    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class Removal:
    """Snapshots an admin forgot: readers hide them, and accept them missing from a prev.

    Each keeps its head (seq, prev, time) as a ghost, so the history stays one connected
    graph after prune deletes the snapshot objects: without them, the snapshots before a
    removed one would look like forks nobody followed (``chain.analyse``).
    """

    name: str
    time_ns: int
    snapshots: dict[str, SnapshotHead]
    explicit: bool  # named by the admin (void: planted or unwanted), not chosen by a policy


@dataclass(frozen=True)
class Condemnation:
    """Packs and index segments a prune intends to delete once the grace period is over."""

    name: str
    time_ns: int
    packs: frozenset[str]
    segments: frozenset[str]


R = TypeVar("R", Removal, Condemnation)


@dataclass
class RecordSet(Generic[R]):
    """The verified records of one namespace, and the names of those that failed."""

    records: list[R] = field(default_factory=list)
    bad: dict[str, IntegrityError] = field(default_factory=dict)


def _message(rtype: str, repo_id: bytes, body: bytes) -> bytes:
    return SIGNATURE_CONTEXT + rtype.encode() + b"\x00" + repo_id + body


def _sign(signer: _Signer, repo_id: bytes, rtype: str, body: dict[str, object]) -> bytes:
    encoded = spec.pack(body)
    return spec.pack({"v": spec.FORMAT_VERSION, "type": rtype, "body": encoded,
                      "sig": signer.sign(_message(rtype, repo_id, encoded))})


def _ids(names: Iterable[str]) -> list[bytes]:
    out = sorted({bytes.fromhex(n) for n in names})
    if any(len(i) != 32 for i in out):
        raise ValueError("object names are 32-byte hashes")
    return out


def sign_removal(signer: _Signer, repo_id: bytes, snapshots: dict[str, SnapshotHead],
                 time_ns: int, explicit: bool = False) -> bytes:
    ids = _ids(snapshots)
    if not 1 <= len(ids) <= MAX_REMOVED:
        raise ValueError(f"a removal record names 1 to {MAX_REMOVED} snapshots")
    rows = [[i, h.seq, list(h.prev), h.time_ns] for i in ids for h in [snapshots[i.hex()]]]
    return _sign(signer, repo_id, TYPE_REMOVAL,
                 {"v": spec.FORMAT_VERSION, "time": time_ns, "explicit": explicit,
                  "snapshots": rows})


def sign_condemn(signer: _Signer, repo_id: bytes, packs: Iterable[str],
                 segments: Iterable[str], time_ns: int) -> bytes:
    p, s = _ids(packs), _ids(segments)
    if not (p or s) or len(p) > MAX_CONDEMNED or len(s) > MAX_CONDEMNED:
        raise ValueError(f"a condemn record names 1 to {MAX_CONDEMNED} packs and segments")
    return _sign(signer, repo_id, TYPE_CONDEMN,
                 {"v": spec.FORMAT_VERSION, "time": time_ns, "packs": p, "segments": s})


def _sorted_ids(f: spec.Fields, key: str, most: int, least: int) -> frozenset[str]:
    ids = f.id_list(key, 32, most)
    if len(ids) < least or any(a >= b for a, b in itertools.pairwise(ids)):
        raise f.fail(f"field {key!r} is not a sorted list of distinct ids")
    return frozenset(i.hex() for i in ids)


def _ghosts(f: spec.Fields) -> dict[str, SnapshotHead]:
    rows = f.items("snapshots", MAX_REMOVED)
    out: dict[str, SnapshotHead] = {}
    last = b""
    for row in rows:
        r = spec.Fields(dict(zip(("id", "seq", "prev", "time"), row, strict=False))
                        if isinstance(row, list) and len(row) == 4 else None, f.kind, f.object_id)
        sid = r.blob("id", size=32)
        if sid <= last:
            raise f.fail("removed snapshots are not sorted and distinct")
        last = sid
        out[sid.hex()] = SnapshotHead(seq=r.integer("seq", hi=2**62),
                                      prev=tuple(r.id_list("prev", 32, 4096)),
                                      time_ns=r.integer("time", hi=2**63 - 1))
    if not out:
        raise f.fail("removes nothing")
    return out


def decode(data: bytes, name: str, rtype: str, keys: _Keys) -> Removal | Condemnation:
    """Verify one stored record of type ``rtype``; IntegrityError if anything is wrong."""
    kind = KIND_OF[rtype]
    if len(data) > MAX_SIGNED:
        raise IntegrityError(kind, name, "record too large")
    if not crypto.same(crypto.object_name(data).encode(), name.encode()):
        raise IntegrityError(kind, name, "content does not match its name")
    outer = spec.Fields(spec.unpack(data, kind, name), kind, name)
    if outer.integer("v") != spec.FORMAT_VERSION or outer.text("type", 32) != rtype:
        raise outer.fail("unknown version, or a record of another type")
    body = outer.blob("body", max_len=MAX_SIGNED)
    if not crypto.ed25519_verify(keys.admin_public, outer.blob("sig", size=64),
                                 _message(rtype, keys.repo_id, body)):
        raise outer.fail("signature does not verify with the admin key (forged or damaged)")
    f = spec.Fields(spec.unpack(body, kind, name), kind, name)
    if f.integer("v") != spec.FORMAT_VERSION:
        raise f.fail("unknown version")
    time_ns = f.integer("time", hi=2**63 - 1)
    if rtype == TYPE_REMOVAL:
        explicit = f.raw("explicit")
        if not isinstance(explicit, bool):
            raise f.fail("field 'explicit' is not a boolean")
        return Removal(name, time_ns, _ghosts(f), explicit)
    packs = _sorted_ids(f, "packs", MAX_CONDEMNED, 0)
    segments = _sorted_ids(f, "segments", MAX_CONDEMNED, 0)
    if not (packs or segments):
        raise f.fail("condemns nothing")
    return Condemnation(name, time_ns, packs, segments)


_IGNORED = {TYPE_REMOVAL: "ignored: it removes nothing; see repofs check",
            TYPE_CONDEMN: "ignored: it condemns nothing; see repofs check"}


def _read(store: WriterStore, keys: _Keys, rtype: str,
          damage: DamageLog | None = None) -> RecordSet[R]:
    """The records of one namespace; each one that fails is set aside in ``bad`` and, with
    ``damage``, named once there (repofs-format(5), DAMAGE)."""
    out: RecordSet[R] = RecordSet()
    ns = NAMESPACE_OF[rtype]
    try:
        names = sorted(store.list(ns))
    except FileNotFoundError:  # a repository made before the namespace existed: none
        return out
    for name in names:
        try:
            data = store.get(ns, name)
            out.records.append(decode(data, name, rtype, keys))  # type: ignore[arg-type]
        except FileNotFoundError:
            out.bad[name] = IntegrityError(KIND_OF[rtype], name, "vanished while read")
        except IntegrityError as e:
            out.bad[name] = e
        except OSError as e:  # EIO: set aside like damage, not called tampered
            out.bad[name] = Unreadable(KIND_OF[rtype], name, e.strerror or str(e))
        if damage is not None and name in out.bad:
            damage.report(out.bad[name], _IGNORED[rtype])
    return out


def read_removals(store: WriterStore, keys: _Keys,
                  damage: DamageLog | None = None) -> RecordSet[Removal]:
    return _read(store, keys, TYPE_REMOVAL, damage)


def read_condemnations(store: WriterStore, keys: _Keys,
                       damage: DamageLog | None = None) -> RecordSet[Condemnation]:
    return _read(store, keys, TYPE_CONDEMN, damage)


def removed_snapshots(records: RecordSet[Removal]) -> frozenset[str]:
    return frozenset(i for r in records.records for i in r.snapshots)


UNKNOWN_SEQ = 2**62  # with prev naming the object itself: "its head could not be read"


def unknown_head(object_id: str) -> SnapshotHead:
    """The row of a removal record for an object in snapshots/ that does not decode (planted
    or damaged): its head is unknown. Its prev names the object itself, which no real
    snapshot's can (its id is the hash of bytes that include prev), so readers tell it from
    a real head; seq 2^62 and time 0 make a reader that does not know this rule draw no
    conclusion from it (nothing can follow it, nothing is dated before it)."""
    return SnapshotHead(seq=UNKNOWN_SEQ, prev=(bytes.fromhex(object_id),), time_ns=0)


def is_unknown(object_id: str, head: SnapshotHead) -> bool:
    return head.prev == (bytes.fromhex(object_id),)


def ghosts(records: RecordSet[Removal]) -> list[Snapshot]:
    """Removed snapshots as bodiless snapshots: the history ``chain.analyse`` walks. An
    object removed with an unknown head is no ghost: it links nothing."""
    out: dict[str, Snapshot] = {}
    for r in records.records:
        for sid, head in r.snapshots.items():
            if not is_unknown(sid, head):
                out.setdefault(sid, Snapshot(sid, head, None))
    return list(out.values())


def void(records: RecordSet[Removal]) -> frozenset[str]:
    """Snapshots an admin removed by naming them (planted ones, typically): they still link
    the history, but witness nothing against the rest (no stale forks because of them)."""
    return frozenset(i for r in records.records if r.explicit for i in r.snapshots)


__all__ = [
    "Condemnation", "RecordSet", "Removal", "decode", "ghosts", "is_unknown",
    "read_condemnations", "read_removals", "removed_snapshots", "sign_condemn", "sign_removal",
    "unknown_head", "void",
]
