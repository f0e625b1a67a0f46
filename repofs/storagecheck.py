"""``repofs check --storage-only``: what can be proved about a repository without any key.

Why it exists: the host that stores a repository (running ``repofs serve``)
holds no key, yet is where bit rot, a failing disk or a tampered file shows
first. Every object name is the BLAKE3 hash of the object's bytes, so
re-hashing proves each object intact without decrypting anything. On top of
that, what needs no key: the layout (no symlinked or missing directory), the
cleartext parts of each object (header magic, version and kind; a pack's
trailer length; a key file's outer record and KDF bounds; a signed record's
envelope), and anything in the namespaces that is not an object at all.

The same runs on an ``s3://`` or ``ssh://`` repository through its store (no key
there either): every object listed is read back in ranges and re-hashed, and its
cleartext checked. In an S3 bucket that keeps versions, an object whose current
version was put over the one that matches its name is a problem of its own: the
server let a writer overwrite it (Ceph RGW ignores If-None-Match in versioned
buckets), which means a writer's credentials are in hostile hands.

It cannot tell a planted object from a real one (a writer's object hashes to
its name like any other) nor whether anything is missing: that needs a key and
``repofs check``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from repofs import crypto, keys, spec
from repofs.envelope import HEADER, HEADER_LEN
from repofs.errors import BadKeyFile, IntegrityError
from repofs.store import LocalStore, WriterStore, valid_name

_READ = 8 * 1024 * 1024
_KIND = {spec.NS_DATA: spec.KIND_PACK, spec.NS_INDEX: spec.KIND_INDEX,
         spec.NS_SNAPSHOTS: spec.KIND_SNAPSHOT}
_NAMES = {spec.NS_KEYS: "key file", spec.NS_DATA: "pack", spec.NS_INDEX: "index segment",
          spec.NS_SNAPSHOTS: "snapshot", spec.NS_REMOVALS: "removal record",
          spec.NS_CONDEMNED: "condemn record"}
_RECORD_TYPE = {spec.NS_REMOVALS: "removal", spec.NS_CONDEMNED: "condemn"}


@dataclass(frozen=True)
class StorageProblem:
    kind: str
    object_id: str
    detail: str

    def line(self) -> str:
        return f"{self.kind} {self.object_id}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.object_id, "detail": self.detail,
                "snapshots": [], "path": None}


@dataclass
class StorageReport:
    problems: list[StorageProblem] = field(default_factory=list)
    notes: list[StorageProblem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        return not self.problems


def _chunks(fd: int) -> Iterator[bytes]:
    while block := os.read(fd, _READ):
        yield block


class StorageChecker:
    """Re-hash every object of a repository and check its cleartext structure: a local one
    through its files, any other through its store."""

    def __init__(self, store: LocalStore, progress: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.root = store.root
        self.progress = progress or (lambda _m: None)
        self.report = StorageReport()

    def run(self) -> StorageReport:
        try:
            self.store.verify_layout()
        except IntegrityError as e:
            self.report.problems.append(StorageProblem(e.kind, e.object_id, e.detail))
            return self.report
        for ns in spec.NAMESPACES:
            self._namespace(ns)
        leftovers = [e.name for e in os.scandir(self.root / "tmp")]
        if leftovers:
            self.report.notes.append(StorageProblem("directory", "tmp", f"{len(leftovers)} "
                                                    "temporary files left by interrupted "
                                                    "writers (harmless)"))
        return self.report

    def _dirs(self, ns: str) -> list[tuple[str, str]]:
        if ns != spec.NS_DATA:
            return [(ns, "")]
        return [(f"{ns}/{i:02x}", f"{i:02x}") for i in range(256)]

    def _namespace(self, ns: str) -> None:
        count = 0
        if not (self.root / ns).exists():  # a namespace newer than the repository: empty
            self.report.counts[f"{_NAMES[ns]}s"] = 0
            return
        for rel, prefix in self._dirs(ns):
            with os.scandir(self.root / rel) as it:
                entries = sorted(it, key=lambda e: e.name)
            for e in entries:
                if not valid_name(e.name):
                    self._problem("directory", f"{rel}/{e.name}", "not an object name: "
                                  "nothing repofs writes (readers ignore it)")
                elif not e.name.startswith(prefix):
                    self._problem("directory", f"{rel}/{e.name}", "a pack in the wrong "
                                  "data/ subdirectory (readers never find it)")
                elif not e.is_file(follow_symlinks=False):
                    self._problem(_NAMES[ns], e.name, "is a symlink or not a regular file")
                else:
                    count += 1
                    self.progress(f"{ns}: {count}")
                    self._object(ns, e.name)
        if ns == spec.NS_DATA:
            extra = {e.name for e in os.scandir(self.root / ns)} - {
                f"{i:02x}" for i in range(256)}
            for name in sorted(extra):
                self._problem("directory", f"{ns}/{name}", "not part of a repository")
        self.report.counts[f"{_NAMES[ns]}s"] = count

    def _problem(self, kind: str, object_id: str, detail: str) -> None:
        self.report.problems.append(StorageProblem(kind, object_id, detail))

    def _object(self, ns: str, name: str) -> None:
        kind = _NAMES[ns]
        path = self.store.path(ns, name)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self._problem(kind, name, "is not a regular file")
                return
            if crypto.object_name_of(_chunks(fd)) != name:
                self._problem(kind, name, "content does not match its name (damaged or "
                                          "tampered)")
                return
            head = os.pread(fd, HEADER_LEN, 0)
            tail = os.pread(fd, 4, max(st.st_size - 4, 0))
            small = os.pread(fd, st.st_size, 0) if ns in (
                spec.NS_KEYS, spec.NS_REMOVALS, spec.NS_CONDEMNED) else b""
        finally:
            os.close(fd)
        detail = _structure(ns, name, st.st_size, head, tail, small)
        if detail:
            self._problem(kind, name, detail)

def _structure(ns: str, name: str, size: int, head: bytes, tail: bytes,
               whole: bytes) -> str | None:
    """What is wrong with the cleartext of an intact object (planted by a key holder)."""
    if ns in _KIND:
        if len(head) < HEADER_LEN:
            return "shorter than an object header"
        magic, version, kind, mode, form, _ = HEADER.unpack(head)
        if magic != spec.MAGIC or version != spec.FORMAT_VERSION:
            return "not a repofs object of format version 1"
        if kind != _KIND[ns] or mode not in (spec.MODE_SEALED, spec.MODE_SHARED):
            return f"header names kind {kind}, mode {mode}: not a {_NAMES[ns]}"
        if ns == spec.NS_DATA and form not in spec.TRAILER_FORMS:
            return f"unknown trailer form {form}"
        if ns == spec.NS_DATA and (size < HEADER_LEN + 4 or size - 4 - int.from_bytes(
                tail, "big") < HEADER_LEN):
            return "bad trailer length"
        return None
    if ns == spec.NS_KEYS:
        try:
            keys.describe(whole, name)
        except BadKeyFile as e:
            return f"not a usable key file ({e})"
        return None
    try:
        f = spec.Fields(spec.unpack(whole, _NAMES[ns], name), _NAMES[ns], name)
        ok = (f.integer("v") == spec.FORMAT_VERSION and f.text("type") == _RECORD_TYPE[ns]
              and len(f.blob("sig")) == 64 and bool(f.blob("body")))
    except IntegrityError as e:
        return e.detail
    return None if ok else "not a signed record of this namespace's type"


class StoreChecker:
    """The same checks on an ``s3://`` or ``ssh://`` store: no files to look at, so every
    listed object is read back in ranges of at most 8 MiB (memory stays bounded)."""

    def __init__(self, store: WriterStore,
                 progress: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.progress = progress or (lambda _m: None)
        self.report = StorageReport()
        if hasattr(store, "overwrite"):  # s3://: a newer version over the matching one
            store.overwrite = lambda e: self._problem(
                _NAMES.get(e.kind, e.kind), e.object_id,
                f"{e.detail}: the server let a writer overwrite it, so a writer's "
                "credentials are in hostile hands")

    def run(self) -> StorageReport:
        config_overwritten = getattr(self.store, "config_overwritten", None)
        if config_overwritten is not None and config_overwritten():
            self._problem("config", "config", "overwritten in the bucket (several versions; "
                          "readers use the first): a writer's credentials are in hostile "
                          "hands")
        for ns in spec.NAMESPACES:
            count = 0
            for name in sorted(self.store.list(ns)):
                count += 1
                self.progress(f"{ns}: {count}")
                self._object(ns, name)
            self.report.counts[f"{_NAMES[ns]}s"] = count
        return self.report

    def _problem(self, kind: str, object_id: str, detail: str) -> None:
        self.report.problems.append(StorageProblem(kind, object_id, detail))

    def _object(self, ns: str, name: str) -> None:
        kind = _NAMES[ns]
        try:
            size = self.store.size(ns, name)
            if crypto.object_name_of(self._chunks(ns, name, size)) != name:
                self._problem(kind, name, "content does not match its name (damaged or "
                                          "tampered)")
                return
            head = self.store.get_range(ns, name, 0, HEADER_LEN)
            tail = self.store.get_range(ns, name, max(size - 4, 0), 4)
            small = self.store.get_range(ns, name, 0, size) if ns in (
                spec.NS_KEYS, spec.NS_REMOVALS, spec.NS_CONDEMNED) else b""
        except FileNotFoundError:
            self._problem(kind, name, "listed but cannot be read (deleted meanwhile?)")
            return
        except IntegrityError as e:
            self._problem(kind, name, e.detail)
            return
        detail = _structure(ns, name, size, head, tail, small)
        if detail:
            self._problem(kind, name, detail)

    def _chunks(self, ns: str, name: str, size: int) -> Iterator[bytes]:
        for offset in range(0, size, _READ):
            block = self.store.get_range(ns, name, offset, min(_READ, size - offset))
            if not block:
                return
            yield block


def check_storage(store: WriterStore,
                  progress: Callable[[str], None] | None = None) -> StorageReport:
    """Check a local repository through its files, any other through its store."""
    if isinstance(store, LocalStore):
        return StorageChecker(store, progress).run()
    return StoreChecker(store, progress).run()


__all__ = ["StorageChecker", "StorageProblem", "StorageReport", "StoreChecker",
           "check_storage"]
