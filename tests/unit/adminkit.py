"""Helpers for the tests of keys, forget and prune: repositories without Argon2 cost,
snapshots made in one call, and a check that every kept snapshot reads back exactly."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from repofs import crypto, keys, spec
from repofs.adminstore import AdminStore
from repofs.compression import Codec
from repofs.model import FILE, Entry, Part, Snapshot, SnapshotBody, SnapshotHead, encode_tree
from repofs.repository import Repository, _encode_config
from repofs.session import WriteSession

DAY = 86400 * 10**9


def make_repo(root: Path, version: int = spec.REPO_VERSION) -> Repository:
    """A repository opened with an admin key, on an AdminStore (no KDF is run); of format
    ``version`` (config "v"; a format 1 one writes packs with format 1 trailers)."""
    repo_id = crypto.random_bytes(32)
    AdminStore.create(root, _encode_config(repo_id, version))
    master = keys.restrict(keys.generate(repo_id), keys.CAP_ADMIN)
    return Repository(AdminStore(root), master, version=version)


def as_capability(repo: Repository, capability: str, store: object | None = None) -> Repository:
    """The same repository seen through a key of ``capability`` (a fresh index load)."""
    k = keys.restrict(repo.keys, capability) if capability != keys.CAP_ADMIN else repo.keys
    fresh = Repository(store or AdminStore(repo.store.root), k,  # type: ignore[arg-type]
                       version=repo.version)
    fresh.load_index()
    return fresh


def reopen(repo: Repository) -> Repository:
    return as_capability(repo, repo.keys.capability)


def tree_of(session: WriteSession, files: dict[str, bytes]) -> bytes:
    entries = []
    for name, data in sorted(files.items()):
        cid = session.add(spec.BLOB_DATA, data)
        entries.append(Entry(name=name.encode(), type=FILE, mode=0o644, uid=0, gid=0,
                             mtime_ns=0, ctime_ns=0, size=len(data),
                             parts=(Part(cid, len(data)),)))
    return session.add(spec.BLOB_TREE, encode_tree(entries))


def backup(repo: Repository, files: dict[str, bytes], time_ns: int | None = None,
           host: str = "h", paths: tuple[bytes, ...] = (b"/src",),
           tags: tuple[str, ...] = ()) -> Snapshot:
    with WriteSession(repo, Codec()) as s:
        tree = tree_of(s, files)
        body = SnapshotBody(tree=tree, paths=paths, host=host, user="u", tags=tags, name=None,
                            hardlinks={}, stats={})
        return s.commit(body, time_ns if time_ns is not None else time.time_ns())


def plant(repo: Repository, files: dict[str, bytes], head: SnapshotHead,
          host: str = "h", paths: tuple[bytes, ...] = (b"/src",)) -> Snapshot:
    """A snapshot with any head a writer likes (forged time, seq, prev)."""
    from repofs.model import encode_body, encode_head

    with WriteSession(repo, Codec()) as s:
        tree = tree_of(s, files)
        s.flush()
    body = SnapshotBody(tree=tree, paths=paths, host=host, user="u", tags=(), name=None,
                        hardlinks={}, stats={})
    inner = repo.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SEALED)
    sealed = inner.header + inner.seal(0, encode_body(head, body), b"snapshot body")
    outer = repo.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SHARED)
    data = outer.header + outer.seal(0, encode_head(head, sealed), b"snapshot")
    name = repo.put_object(spec.NS_SNAPSHOTS, data)
    return Snapshot(name, head, body)


def contents(repo: Repository, snap: Snapshot) -> dict[str, bytes]:
    """name -> bytes of every file of a snapshot made by ``backup``, read and verified."""
    assert snap.body is not None
    out = {}
    for e in repo.load_tree(snap.body.tree):
        out[e.name.decode()] = b"".join(d or bytes(n) for _o, d, n in repo.iter_chunks(e))
    return out


def assert_restores(repo: Repository, expected: dict[str, dict[str, bytes]]) -> None:
    """Every snapshot id in ``expected`` lists and reads back exactly (fresh open)."""
    fresh = reopen(repo)
    listed = {s.id: s for s in fresh.snapshots.list()}
    for sid, files in expected.items():
        assert sid in listed, f"kept snapshot {sid[:8]} is gone"
        assert contents(fresh, listed[sid]) == files


def with_time(head: SnapshotHead, **kw: object) -> SnapshotHead:
    return dataclasses.replace(head, **kw)  # type: ignore[arg-type]
