"""The repository facade: layout, keys, dedup, reading blobs and the write order.

Readers and writers see the repository through this class. Writing follows
one order (repofs-format(5), WRITE ORDER): packs, then this session's index
segment, then the snapshot, the commit point. A crash before the snapshot
leaves only objects nothing references. Every object read is checked: names
against content hashes for whole objects, AEAD for every message, keyed ids
for every blob's plaintext.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Container, Iterator
from dataclasses import dataclass

from repofs import crypto, keys, recovery, signed, spec
from repofs.blobcache import BlobCache
from repofs.blobtable import BlobTable, Location
from repofs.config import encode_config as _encode_config
from repofs.config import parse_config as _parse_config
from repofs.damage import DamageLog
from repofs.envelope import (
    HEADER_LEN,
    CannotRead,
    ObjectCipher,
    new_object,
    open_object,
    open_trailer_cipher,
    trailer_cipher,
)
from repofs.errors import (
    BadEntry,
    BadKeyFile,
    IntegrityError,
    PathNotFound,
    RepositoryNotFound,
    Unreadable,
    WrongPassphrase,
)
from repofs.index import decode_segment, encode_segment
from repofs.location import RepoLocation, create_store, open_store
from repofs.model import DIR, Entry, RawEntry, decode_tree, find_entry, split_tree
from repofs.pack import BlobEntry, open_blob
from repofs.snapshots import SnapshotLog
from repofs.store import WriterStore

__all__ = ["CannotRead", "Repository", "Segment"]


@dataclass(frozen=True)
class Segment:
    """One index segment as read: the packs it lists, or why it cannot be used."""

    name: str
    packs: list[tuple[str, list[BlobEntry]]]
    error: IntegrityError | None = None


class Repository:
    """An open repository: unlocked keys, the loaded index, and access to objects."""

    def __init__(self, store: WriterStore, master: keys.MasterKeys,
                 damage: DamageLog | None = None, version: int = spec.REPO_VERSION) -> None:
        self.store = store
        self.keys = master
        # config "v": a format 1 repository keeps writing format 1 packs, which older
        # builds read; format 2 packs' trailers open with any key (recovery, repair)
        self.version = version
        # what this command left out because it did not verify (repofs.damage)
        self.damage = DamageLog() if damage is None else damage
        self.index = BlobTable()
        # the table cached locally (repofs.blobcache); None: read every segment at open
        self.index_cache: BlobCache | None = BlobCache.of(master.repo_id, master.shared_key)
        self._cache_state = (0, 0)  # (table generation that is exactly the segments read,
        #                              distinct blobs the cache held when loaded)
        self._id_keys = {t: keys.blob_id_key(master.id_key, t) for t in spec.BLOB_NAMES}
        self._ciphers: OrderedDict[str, ObjectCipher] = OrderedDict()
        self._trees: OrderedDict[bytes, tuple[list[Entry], list[BadEntry]]] = OrderedDict()
        self._lock = threading.Lock()
        self._segments: set[str] = set()  # index segments already read
        self.damaged_segments: dict[str, IntegrityError] = {}  # skipped by load_index
        self._recovery: recovery.Recovery | None = None  # blobs located from packs (recovery)
        self._recover_lock = threading.Lock()
        self.snapshots = SnapshotLog(self)
        if hasattr(store, "overwrite"):  # s3://: an object overwritten in the bucket
            store.overwrite = lambda e: self.damage.report(
                e, "the version that matches its name was read")

    # -- open / init ------------------------------------------------------------------
    @classmethod
    def init(cls, path: RepoLocation, passphrase: bytes,
             kdf: dict[str, int] | None = None,
             admin_passphrase: bytes | None = None) -> Repository:
        """A new repository at ``path``: a directory, or ``ssh://[user@]host[:port]/path``.

        It gets a full key file under ``passphrase`` and, with ``admin_passphrase``, an
        admin key file (forget, prune) apart from it, so the passphrase backup hosts use
        cannot sign removals. Without it the admin private key is discarded: nobody can
        ever forget or prune (repofs-format(5), KEY FILES).
        """
        if admin_passphrase is not None and admin_passphrase == passphrase:
            raise ValueError("the admin passphrase must differ from the passphrase")
        repo_id = crypto.random_bytes(32)
        master = keys.generate(repo_id)
        # the key files first: a passphrase they refuse must leave no repository behind
        keyfile = keys.wrap(master, passphrase, kdf)
        admin_file = None if admin_passphrase is None else \
            keys.wrap(keys.restrict(master, keys.CAP_ADMIN), admin_passphrase, kdf)
        store = create_store(path, _encode_config(repo_id))
        name = crypto.object_name(keyfile)
        store.put(spec.NS_KEYS, name, keyfile)
        if admin_file is not None:
            store.put(spec.NS_KEYS, crypto.object_name(admin_file), admin_file)
        return cls(store, keys.unwrap(keyfile, name, passphrase, repo_id) or master)

    @classmethod
    def open(cls, path: RepoLocation, passphrase: bytes, *, index: bool = True,
             damage: DamageLog | None = None) -> Repository:
        """Open with the keys ``passphrase`` unlocks; ``index=False`` leaves loading the index
        to the caller (``check`` reads every segment itself, to report all damage).
        ``damage`` hears of every object left out, from the first one on."""
        store = open_store(path)
        repo_id, version = _parse_config(store.read_config())
        files = [(n, store.get(spec.NS_KEYS, n)) for n in sorted(store.list(spec.NS_KEYS))]
        if not files:
            raise RepositoryNotFound(f"{path} has no key files")
        intact = [(n, d) for n, d in files if crypto.object_name(d) == n]
        try:
            master = keys.unlock(intact, passphrase, repo_id)
        except (WrongPassphrase, BadKeyFile):
            damaged = [n for n, _ in files if (n, _) not in intact]
            if damaged:  # say so: "wrong passphrase" would send the user the wrong way
                raise IntegrityError("key file", damaged[0],
                                     "content does not match its name") from None
            raise
        repo = cls(store, master, damage, version)
        repo._report_key_files(files, {n for n, _ in intact})
        if index:
            repo.load_index()
        return repo

    def _report_key_files(self, files: list[tuple[str, bytes]], intact: set[str]) -> None:
        """Name each key file that could not be used although another one opened: damaged,
        or planted by a writer (any key holder can add key files). Left out; the command
        goes on (repofs-format(5), DAMAGE)."""
        for name, data in files:
            try:
                if name not in intact:
                    raise IntegrityError("key file", name, "content does not match its name")
                keys.describe(data, name)
            except BadKeyFile as e:
                self.damage.report(IntegrityError("key file", name, str(e).removeprefix(
                    f"key file {name} ")), "skipped; another key file opened")
            except IntegrityError as e:
                self.damage.report(e, "skipped; another key file opened")

    @property
    def id(self) -> str:
        return self.keys.repo_id.hex()

    @property
    def can_read(self) -> bool:
        return self.keys.reader is not None

    @property
    def fork_safe(self) -> bool:
        """Whether a forked copy of this object may read blobs too: true of a local store,
        which shares no connection (the mount decodes in children, ``vfs.decoder``)."""
        return bool(getattr(self.store, "fork_safe", False))

    # -- whole objects -------------------------------------------------------------------
    def get_verified(self, namespace: str, name: str, kind: str) -> bytes:
        """Read a whole object and check its name is the hash of its bytes."""
        try:
            data = self.store.get(namespace, name)
        except FileNotFoundError:
            raise IntegrityError(kind, name, "missing") from None
        if not crypto.same(crypto.object_name(data).encode(), name.encode()):
            raise IntegrityError(kind, name, "content does not match its name")
        return data

    def put_object(self, namespace: str, data: bytes) -> str:
        name = crypto.object_name(data)
        self.store.put(namespace, name, data)
        return name

    def new_cipher(self, kind: int, mode: int) -> ObjectCipher:
        return new_object(kind, mode, self.keys.shared_key, self.keys.repo_public)

    def open_cipher(self, header: bytes, kind: int, name: str,
                    mode: int | None = None) -> ObjectCipher:
        return open_object(header, kind, name, self.keys.shared_key, self.keys.repo_public,
                           self.keys.reader, mode)

    def new_pack_cipher(self) -> tuple[ObjectCipher, ObjectCipher]:
        """The cipher of a new pack and of its trailer, in this repository's format."""
        form = spec.TRAILER_SHARED if self.version >= 2 else spec.TRAILER_SEALED
        pack = new_object(spec.KIND_PACK, spec.MODE_SEALED, self.keys.shared_key,
                          self.keys.repo_public, form)
        return pack, trailer_cipher(pack, self.keys.shared_key)

    def open_trailer_cipher(self, header: bytes, name: str) -> ObjectCipher:
        """The cipher of the trailer of pack ``name`` whose header is ``header``: any key
        opens a format 2 trailer; a format 1 one raises CannotRead without a full key."""
        return open_trailer_cipher(header, name, self.keys.shared_key, self.keys.repo_public,
                                   self.keys.reader)

    def pack_trailer_cipher(self, pack: ObjectCipher) -> ObjectCipher:
        """The trailer's cipher of an opened pack."""
        return trailer_cipher(pack, self.keys.shared_key)

    # -- index ---------------------------------------------------------------------------
    def segments(self, skip: Container[str] = (),
                 names: list[str] | None = None) -> Iterator[Segment]:
        """Every index segment in storage (or of ``names``) but those in ``skip``, each read
        and verified: its packs, or the error that makes it unusable. The one loop that
        reads segments (load_index, gc, check); what to do with a damaged one is the
        caller's."""
        for name in sorted(self.store.list(spec.NS_INDEX)) if names is None else names:
            if name in skip:
                continue
            try:
                data = self.get_verified(spec.NS_INDEX, name, "index segment")
                cipher = self.open_cipher(data[:HEADER_LEN], spec.KIND_INDEX, name)
                yield Segment(name, decode_segment(cipher, data))
            except IntegrityError as e:
                yield Segment(name, [], e)

    def load_index(self) -> None:
        """Read the index segments not read yet (again later: a mount sees new snapshots).

        A segment that does not verify is skipped (a writer can plant one under a valid
        name, bit rot can damage one: refusing the repository over it would lock every
        reader out). The blobs it listed are located from the packs no other segment lists
        (``recovery``); it is named then, and only then: once every pack is listed by a
        usable segment again (``repair``, or the next ``create``), nothing was lost and
        readers stay quiet about it; ``check`` names it until an admin removes it.
        """
        names = sorted(self.store.list(spec.NS_INDEX))
        exact = self._index_from_cache(names)
        fresh: list[Segment] = []
        for seg in self.segments(self._segments, names):
            self._segments.add(seg.name)
            if seg.error is not None:
                self.damaged_segments[seg.name] = seg.error
                fresh.append(seg)
                continue
            for pack, entries in seg.packs:
                self.index.add_pack(pack, entries)
        self._index_to_cache(exact)
        if not fresh:
            return
        found = self.recover_locations(again=True)
        if not found.unlisted:
            return
        if found.cannot_read:
            what = (f"this key cannot open format 1 packs, so the blobs of {len(found.sealed)} "
                    "packs no other segment lists count as absent")
        else:
            what = (f"the blobs of the {len(found.packs)} packs no other segment lists were "
                    "located from the packs themselves; repofs repair lists them again")
        for seg in fresh:
            assert seg.error is not None
            self.damage.report(seg.error, f"skipped; {what}")

    def recover_locations(self, again: bool = False, report: bool = True) -> recovery.Recovery:
        """Locate, from their trailers, the blobs of the packs no usable segment lists
        (``recovery``): once per command, or ``again`` (a segment newly skipped). Returns
        everything recovered so far; a pack whose trailer does not verify is named in the
        damage log unless not ``report`` (check names it in its report).
        Thread-safe: restore and the mount read in threads."""
        with self._recover_lock:
            if self._recovery is not None and not again:
                return self._recovery
            done = self._recovery or recovery.Recovery()
            records = signed.read_condemnations(self.store, self.keys)
            condemned = {p for r in records.records for p in r.packs}
            todo = recovery.unlisted(self.store, self.index.packs(),
                                     condemned | set(done.bad))
            found = recovery.recover(self, todo)
            for pack, entries in found.packs.items():
                self.index.add_pack(pack, entries)
            for e in found.bad.values() if report else ():
                self.damage.report(e, recovery.UNLOCATABLE)
            done.unlisted = sorted(set(done.unlisted) | set(todo))
            done.packs.update(found.packs)
            done.bad.update(found.bad)
            done.sealed = sorted(set(done.sealed) | set(found.sealed))
            self._recovery = done
            return done

    def _locate_missing(self, blob_id: bytes, blob_type: int) -> bool:
        """A blob no segment lists: look in the packs no segment lists, once per command.
        True if it was found there."""
        if self._recovery is not None or self.index.has(blob_id, blob_type):
            return False
        self.recover_locations()
        if not self.index.has(blob_id, blob_type):
            return False
        if not self.damaged_segments:  # a segment was lost (a skipped one is named already)
            found = self.recover_locations()
            self.damage.report(recovery.Unlisted(sorted(found.packs)), "their blobs were "
                               "located from the packs themselves; repofs repair lists them "
                               "in a new index segment")
        return True

    def _index_from_cache(self, names: list[str]) -> bool:
        """At the first load, take the table and the segments it holds from the local
        cache. Whether the table holds exactly the segments read (nothing else added)."""
        if self.index_cache is None:
            return False
        if not self._segments and not self.index.generation:
            cached = self.index_cache.load(set(names))
            if cached is not None:
                self.index, held = cached
                self._segments |= held
                self._cache_state = (self.index.generation, len(self.index))
        return self.index.generation == self._cache_state[0]

    def _index_to_cache(self, exact: bool) -> None:
        """Save the table when it grew enough since the cache was loaded. Never when some
        rows came from elsewhere (a session's own, check's, rows recovered from damage):
        the cache must hold exactly the segments it names. A damaged segment added no rows
        and is not named, so every open reads it again and treats it as DAMAGE says; a
        writer who plants one cannot switch the cache off for everyone (threat model A3)."""
        gen, cached = self._cache_state
        if self.index_cache is None or not exact or self.index.generation == gen:
            return
        if not self.index_cache.worth_saving(cached, len(self.index)):
            self._cache_state = (self.index.generation, cached)
            return
        saved = self.index_cache.save(self.index, self._segments - set(self.damaged_segments))
        if saved is not None:
            self.index = saved
        self._cache_state = (self.index.generation, len(self.index))

    def write_index_segment(self, packs: list[tuple[str, list[BlobEntry]]]) -> str:
        cipher = self.new_cipher(spec.KIND_INDEX, spec.MODE_SHARED)
        return self.put_object(spec.NS_INDEX, encode_segment(cipher, packs))

    # -- blobs ---------------------------------------------------------------------------
    def _pack_cipher(self, pack: str) -> ObjectCipher:
        with self._lock:
            c = self._ciphers.get(pack)
            if c is not None:
                self._ciphers.move_to_end(pack)
                return c
        try:
            header = self.store.get_range(spec.NS_DATA, pack, 0, HEADER_LEN)
        except FileNotFoundError:
            raise IntegrityError("pack", pack, "missing") from None
        c = self.open_cipher(header, spec.KIND_PACK, pack)
        self.check_pack_tail(pack, c)
        with self._lock:
            self._ciphers[pack] = c
            while len(self._ciphers) > 4096:
                self._ciphers.popitem(last=False)
        return c

    def check_pack_tail(self, pack: str, cipher: ObjectCipher) -> None:
        """Open the sealed trailer once per pack: blob reads alone never touch the tail,
        so bytes appended to a pack or a changed trailer would otherwise go unnoticed."""
        size = self.store.size(spec.NS_DATA, pack)
        tail = self.store.get_range(spec.NS_DATA, pack, max(size - 4, 0), 4)
        start = size - 4 - int.from_bytes(tail, "big")
        if len(tail) != 4 or start < HEADER_LEN:
            raise IntegrityError("pack", pack, "bad trailer length")
        self.pack_trailer_cipher(cipher).open(
            spec.TRAILER_NONCE, self.store.get_range(spec.NS_DATA, pack, start, size - 4 - start),
            b"trailer")

    def read_blob(self, blob_id: bytes, blob_type: int) -> bytes:
        """A blob's plaintext, verified against its keyed id.

        Where the index knows several places for it, the first that verifies wins: a
        writer can add index entries that lie, never make the true copy unreachable.
        """
        try:
            locations = self.index.locations(blob_id, blob_type)
        except IntegrityError:
            if not self._locate_missing(blob_id, blob_type):
                raise
            locations = self.index.locations(blob_id, blob_type)
        first_error: IntegrityError | None = None
        for loc in locations:
            try:
                return self.read_located(blob_id, loc)
            except IntegrityError as e:
                first_error = first_error or e
        assert first_error is not None
        raise first_error

    def read_located(self, blob_id: bytes, loc: Location) -> bytes:
        e = loc.entry
        cipher = self._pack_cipher(loc.pack)
        try:
            ct = self.store.get_range(spec.NS_DATA, loc.pack, e.offset, e.length)
        except FileNotFoundError:
            raise IntegrityError("pack", loc.pack, "missing") from None
        except OSError as err:  # EIO from a failing disk: this blob is lost to this read
            raise Unreadable("pack", loc.pack, err.strerror or str(err)) from None
        plain = open_blob(cipher, e, ct)
        if not crypto.same(self.blob_id(plain, e.blob_type), blob_id):
            name = spec.BLOB_NAMES.get(e.blob_type, "blob")
            raise IntegrityError(name, blob_id.hex(), f"content does not match its id "
                                 f"(in pack {loc.pack})")
        return plain

    def blob_id(self, data: bytes | memoryview, blob_type: int) -> bytes:
        """Keyed BLAKE3 of the plaintext under the key of its blob type."""
        return crypto.keyed_id(self._id_keys[blob_type], data)

    def load_tree(self, tree_id: bytes, left_out: list[BadEntry] | None = None) -> list[Entry]:
        """A tree's entries. An entry that breaks a per-entry rule is left out alone: named
        in the damage log, or, given ``left_out``, handed to the caller instead (check
        counts it as what a restore would lose)."""
        with self._lock:
            hit = self._trees.get(tree_id)
            if hit is not None:
                self._trees.move_to_end(tree_id)
        if hit is None:
            bad: list[BadEntry] = []
            hit = decode_tree(self.read_blob(tree_id, spec.BLOB_TREE), tree_id.hex(), bad), bad
            with self._lock:
                self._trees[tree_id] = hit
                while len(self._trees) > 512:
                    self._trees.popitem(last=False)
        entries, bad = hit
        if left_out is not None:
            left_out.extend(bad)
        else:
            for error in bad:  # the bad entry alone: its directory keeps the others
                self.damage.report(error, "entry left out")
        return entries

    def load_tree_raw(self, tree_id: bytes) -> list[RawEntry]:
        """A tree's entries with only their names checked (``model.split_tree``), for
        readers that decode what they use; not cached: such a reader reads a tree once."""
        return split_tree(self.read_blob(tree_id, spec.BLOB_TREE), tree_id.hex())

    def root_entry(self, tree_id: bytes) -> Entry:
        """A directory entry standing for a snapshot's root tree."""
        return Entry(name=b"/", type=DIR, mode=0o755, uid=0, gid=0, mtime_ns=0, ctime_ns=0,
                     subtree=tree_id)

    def lookup_path(self, tree_id: bytes, path: bytes) -> Entry:
        """The entry at ``path`` (``a/b/c``, leading ``/`` optional) below a root tree."""
        entry = self.root_entry(tree_id)
        for comp in (c for c in path.split(b"/") if c and c != b"."):
            if entry.type != DIR or entry.subtree is None:
                raise PathNotFound(f"{os.fsdecode(path)}: not a directory in the snapshot")
            found = find_entry(self.load_tree(entry.subtree), comp)
            if found is None:
                raise PathNotFound(f"{os.fsdecode(path)}: no such file or directory "
                                   "in the snapshot")
            entry = found
        return entry

    def walk(self, entry: Entry, path: bytes,
             depth: int = 0) -> Iterator[tuple[bytes, Entry]]:
        """(path, entry) for everything below a directory entry, depth first, sorted.

        Iterative (one frame per level, each holding its tree's entries): a stored tree
        may nest down to spec.MAX_TREE_DEPTH, far past Python's recursion limit.
        """
        if entry.type != DIR or entry.subtree is None:
            return
        if depth > spec.MAX_TREE_DEPTH:
            raise IntegrityError("tree", entry.subtree.hex(), "nested too deep")
        stack = [(path.rstrip(b"/"), iter(self.load_tree(entry.subtree)), depth)]
        while stack:
            base, children, level = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                continue
            child_path = base + b"/" + child.name
            yield child_path, child
            if child.type == DIR and child.subtree is not None:
                if level + 1 > spec.MAX_TREE_DEPTH:
                    raise IntegrityError("tree", child.subtree.hex(), "nested too deep")
                stack.append((child_path, iter(self.load_tree(child.subtree)), level + 1))

    def iter_chunks(self, entry: Entry) -> Iterator[tuple[int, bytes | None, int]]:
        """(offset, data or None for a hole, size) for each part of a file entry."""
        offset = 0
        for p in entry.parts:
            if p.chunk_id is None:
                yield offset, None, p.size
            else:
                data = self.read_blob(p.chunk_id, spec.BLOB_DATA)
                if len(data) != p.size:
                    raise IntegrityError("chunk", p.chunk_id.hex(), "size differs from the tree")
                yield offset, data, p.size
            offset += p.size
