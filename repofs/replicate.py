"""``repofs replicate SRC DST``: copy a repository's objects without any key.

Why it needs no key: every object's name is the BLAKE3 hash of its bytes, so a copy
can be verified before it is written without decrypting anything, and a storage host
or an off-site job can run it holding no passphrase. Why it is safe to run again and
again: it only creates (``WriterStore.put``, write-once at every kind of store), never
deletes or overwrites, and copies only what DST lacks, so an interrupted run resumes
and a second run copies nothing.

Order: key files, packs, index segments, then snapshots and signed records; so a DST
cut off half-way never holds a snapshot whose data is not there yet (as a create's
own write order, repofs-format(5) WRITE ORDER). An object that does not verify at SRC
is skipped and reported (damage is never copied); a DST that holds another repository
(another id in its config) is refused unless it is empty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from repofs import crypto, spec
from repofs.damage import DamageLog
from repofs.errors import IntegrityError, ObjectExists, RepositoryExists, RepositoryNotFound
from repofs.location import RepoLocation, create_store, open_store
from repofs.store import WriterStore

ORDER = (spec.NS_KEYS, spec.NS_DATA, spec.NS_INDEX, spec.NS_SNAPSHOTS, spec.NS_REMOVALS,
         spec.NS_CONDEMNED)
assert set(ORDER) == set(spec.NAMESPACES)
WORKERS = 4  # objects in flight: bounds memory to WORKERS objects (packs are ~16 MiB)


@dataclass
class ReplicateReport:
    """What one run did: objects copied and already present per namespace, bytes copied,
    and the objects skipped because they did not verify at SRC (or clash at DST)."""

    created: bool = False  # DST was empty and got SRC's config
    copied: dict[str, int] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    bytes_copied: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # ns, name, why


def repository_id(config: bytes) -> bytes:
    """The repository id in a config (cleartext, no key needed)."""
    f = spec.Fields(spec.unpack(config, "config", "config"), "config", "config")
    if f.text("format") != "repofs":
        raise RepositoryNotFound("not a repofs repository (config)")
    return f.blob("id", size=32)


def open_destination(src_config: bytes, dst: RepoLocation) -> tuple[WriterStore, bool]:
    """DST's store, made with SRC's config if there is no repository there yet; refuse a
    DST that holds another repository."""
    try:
        store = open_store(dst)
    except RepositoryNotFound:
        return create_store(dst, src_config), True  # refuses a non-empty location
    theirs = repository_id(store.read_config())
    if not crypto.same(theirs, repository_id(src_config)):
        raise RepositoryExists(f"{dst} holds another repository ({theirs.hex()[:8]}, not "
                               f"{repository_id(src_config).hex()[:8]}): refusing to mix them")
    return store, False


class Replicator:
    def __init__(self, src: WriterStore, dst: WriterStore, damage: DamageLog | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.src, self.dst = src, dst
        self.damage = damage if damage is not None else DamageLog()
        self.progress = progress or (lambda _m: None)
        self.report = ReplicateReport()
        self._lock = threading.Lock()

    def run(self) -> ReplicateReport:
        for ns in ORDER:
            have = set(self.dst.list(ns))
            wanted = sorted(set(self.src.list(ns)))
            missing = [n for n in wanted if n not in have]
            self.report.present[ns] = len(wanted) - len(missing)
            self.report.copied[ns] = 0
            self._copy_all(ns, missing)
        return self.report

    def _copy_all(self, ns: str, names: list[str]) -> None:
        """Copy ``names`` with a few threads, never more than WORKERS objects in memory;
        every namespace is finished before the next starts (the write order)."""
        todo: Iterator[str] = iter(names)
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="replicate") as pool:
            running: set[Future[None]] = set()
            for name in todo:
                running.add(pool.submit(self._copy, ns, name))
                if len(running) >= WORKERS:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
            for f in running:
                f.result()

    def _copy(self, ns: str, name: str) -> None:
        try:
            data = self.src.get(ns, name)
        except FileNotFoundError:
            return  # gone since the listing (SRC pruned meanwhile): nothing to copy
        except IntegrityError as e:
            self._skip(ns, name, e.detail)
            return
        if not crypto.same(crypto.object_name(data).encode(), name.encode()):
            self._skip(ns, name, "content does not match its name (damaged or tampered)")
            return
        try:
            created = self.dst.put(ns, name, data)
        except ObjectExists:
            self._skip(ns, name, "DST holds another object under this name (left as it is)")
            return
        with self._lock:
            if created:
                self.report.copied[ns] += 1
                self.report.bytes_copied += len(data)
            else:
                self.report.present[ns] += 1
            total = sum(self.report.copied.values())
        self.progress(f"{ns}: copied {total} objects")

    def _skip(self, ns: str, name: str, why: str) -> None:
        with self._lock:
            self.report.skipped.append((ns, name, why))
        self.damage.report(IntegrityError(_KIND.get(ns, ns), name, why), "not copied")


_KIND = {spec.NS_KEYS: "key file", spec.NS_DATA: "pack", spec.NS_INDEX: "index segment",
         spec.NS_SNAPSHOTS: "snapshot", spec.NS_REMOVALS: "removal record",
         spec.NS_CONDEMNED: "condemn record"}


def replicate(src: RepoLocation, dst: RepoLocation, damage: DamageLog | None = None,
              progress: Callable[[str], None] | None = None) -> ReplicateReport:
    """Copy every object DST lacks from SRC (see the module docstring)."""
    source = open_store(src)
    config = source.read_config()
    repository_id(config)  # SRC must be a repository we understand
    target, created = open_destination(config, dst)
    report = Replicator(source, target, damage, progress).run()
    report.created = created
    for store in (source, target):
        close = getattr(store, "close", None)
        if close is not None:
            close()
    return report


__all__ = ["ReplicateReport", "Replicator", "open_destination", "replicate", "repository_id"]
