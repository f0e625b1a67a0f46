"""Restore and check over a disk with bad sectors: both finish, and both name exactly the
files behind the failed reads.

The store wrapper models a failing disk: about 1% of the blobs have one bad byte, and
every read that covers a bad byte fails with EIO (``OSError(errno.EIO)``), every time,
as a bad sector does; a read that avoids it succeeds. The expected loss is computed
from the bad bytes alone: a file is lost if one of its chunks covers one, a directory's
contents if its tree does. Restore (library, through ``Restorer``) and
``check --read-data`` (``Checker``) must report that set exactly, every other file
restored byte for byte; every failed read must be one the bad bytes explain.
"""

from __future__ import annotations

import errno
import io
import os
import random
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from repofs import dumper, restorable, spec
from repofs.checker import Checker
from repofs.damage import DamageLog
from repofs.errors import RepofsError, UnsafePath
from repofs.model import DIR, FILE, Entry, Part
from repofs.repository import Repository
from repofs.restoredir import MAX_OPEN, TargetDir
from repofs.restorer import RestoreOptions, Restorer
from tests.integration.harness import PASSPHRASE, Cli, write_random


class BadSectors:
    """A store whose data files have bad bytes: a read covering one fails with EIO."""

    def __init__(self, inner: Any, bad: dict[str, set[int]]) -> None:
        self.inner, self.bad = inner, bad
        self.failed: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()

    def _check(self, ns: str, name: str, offset: int, length: int) -> None:
        if ns == spec.NS_DATA and any(offset <= b < offset + length
                                      for b in self.bad.get(name, ())):
            with self._lock:
                self.failed.append((name, offset, length))
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    def get(self, ns: str, name: str) -> bytes:
        data: bytes = self.inner.get(ns, name)
        self._check(ns, name, 0, len(data))
        return data

    def get_range(self, ns: str, name: str, offset: int, length: int) -> bytes:
        self._check(ns, name, offset, length)
        data: bytes = self.inner.get_range(ns, name, offset, length)
        return data

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


@pytest.fixture(scope="module")
def source_repo(shm_module_dir: Path) -> tuple[Cli, Path, str]:
    src = shm_module_dir / "src"
    rng = random.Random(7)
    for d in range(12):
        sub = src / f"d{d:02}" / "inner"
        sub.mkdir(parents=True)
        for i in range(25):
            (sub.parent / f"f{i:02}").write_bytes(rng.randbytes(rng.randrange(10, 9000)))
        (sub / "deep.txt").write_bytes(f"deep {d}\n".encode() * 400)
    write_random(src / "big.bin", 3 << 20)
    cli = Cli(shm_module_dir / "repo", shm_module_dir / "cache")
    cli.init()
    return cli, src, cli.create(src)["snapshot"]


def _walk(repo: Repository, tree: bytes, path: bytes) -> Iterator[tuple[bytes, Entry]]:
    stack = [(tree, path)]
    while stack:
        t, p = stack.pop()
        for e in repo.load_tree(t):
            child = p.rstrip(b"/") + b"/" + e.name
            yield child, e
            if e.type == DIR and e.subtree is not None:
                stack.append((e.subtree, child))


def test_restore_and_check_name_exactly_the_files_behind_failed_reads(
        source_repo: tuple[Cli, Path, str], tmp_path: Path) -> None:
    cli, src, snap_id = source_repo
    clean = Repository.open(cli.repo, PASSPHRASE.encode())
    body = clean.snapshots.read(snap_id).body
    assert body is not None
    blobs = sorted((loc.pack, loc.entry.offset, loc.entry.length, loc.entry.blob_id)
                   for loc in (clean.index.lookup(e.blob_id, e.blob_type)
                               for _p, e in clean.index.entries())
                   if loc.entry.blob_id != body.tree)  # the root tree: asked for, not damage
    rng = random.Random(11)
    chosen = rng.sample(blobs, max(3, len(blobs) // 100))
    bad: dict[str, set[int]] = {}
    for pack, offset, length, _id in chosen:
        bad.setdefault(pack, set()).add(offset + rng.randrange(length))
    lost_ids = {c[3] for c in chosen}
    expected: set[bytes] = set()
    hidden: set[bytes] = set()  # below a lost directory: not reached, not named
    for path, e in _walk(clean, body.tree, b"/"):
        if any(path.startswith(h + b"/") for h in hidden):
            continue
        if e.type == DIR and e.subtree in lost_ids:
            expected.add(path)
            hidden.add(path)
        elif e.type == FILE and any(p.chunk_id in lost_ids for p in e.parts):
            expected.add(path)
    assert expected, "the seed must damage something"

    repo = Repository.open(cli.repo, PASSPHRASE.encode(), damage=DamageLog())
    disk = BadSectors(repo.store, bad)
    repo.store = disk  # type: ignore[assignment]
    target = tmp_path / "t"
    stats = Restorer(repo, target, RestoreOptions()).run(repo.root_entry(body.tree), b"/")
    got = {d.path[len(os.fsencode(target)):] for d in stats.damaged}
    got |= {d[len(os.fsencode(target)):] for d in stats.damaged_dirs}
    assert got == expected
    assert disk.failed and all(any(o <= b < o + n for b in bad[name])
                               for name, o, n in disk.failed)
    assert repo.damage and all("could not be read" in d.line() for d in repo.damage)
    for path, e in _walk(clean, body.tree, b"/"):
        out = target / os.fsdecode(path.lstrip(b"/"))
        if e.type == FILE and not any(path == x or path.startswith(x + b"/") for x in expected):
            assert out.read_bytes() == Path(os.fsdecode(path)).read_bytes(), path
        elif e.type == FILE and path in expected:
            assert not out.exists(), path

    checking = Repository.open(cli.repo, PASSPHRASE.encode(), index=False)
    checking.store = BadSectors(checking.store, bad)  # type: ignore[assignment]
    report = Checker(checking, read_data=True).run()
    assert {os.fsencode(x.path) for x in report.lost[snap_id]} == expected
    assert {bytes.fromhex(i) for _t, i in report.lost_blobs} == lost_ids


def test_target_dirs_keep_few_descriptors_however_deep(tmp_path: Path) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    root = TargetDir(None, b"", os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY),
                     os.fsencode(tmp_path))
    before = open_fds()
    chain = [root]
    for i in range(3 * MAX_OPEN):
        chain.append(TargetDir(chain[-1], b"d%d" % i))
        chain[-1].fd()
        assert open_fds() - before <= MAX_OPEN
    for child, parent in zip(reversed(chain[1:]), reversed(chain[:-1]), strict=True):
        parent.reopen_from(child.fd())
        child.close()
        assert open_fds() - before <= MAX_OPEN + 1
    assert os.path.isdir(tmp_path / "/".join(f"d{i}" for i in range(3 * MAX_OPEN)))
    # a chain made at once (--include selects a file deep down): still bounded
    lazy = [root]
    for i in range(3 * MAX_OPEN):
        lazy.append(TargetDir(lazy[-1], b"e%d" % i))
    lazy[-1].fd()
    assert open_fds() - before <= MAX_OPEN
    assert lazy[-1].parts() == [b"e%d" % i for i in range(3 * MAX_OPEN)]
    for t in lazy[1:]:
        t.close()
    # a directory let go and replaced meanwhile is refused, not followed
    a = TargetDir(root, b"a")
    b = TargetDir(a, b"b")
    b.fd()
    a.release()
    b.release()
    os.rename(tmp_path / "a", tmp_path / "a-moved")
    os.mkdir(tmp_path / "a")
    os.mkdir(tmp_path / "a" / "b")
    with pytest.raises(UnsafePath, match="was replaced during the restore"):
        b.fd()
    root.close()


def test_restorable_entries_and_privileges() -> None:
    plain = Entry(name=b"f", type=FILE, mode=0o6755, uid=0, gid=0, mtime_ns=0, ctime_ns=0,
                  size=3, parts=(Part(None, 3),),
                  xattrs=((b"security.capability", b"x"), (b"user.a", b"1")))
    assert restorable.entry_problem(plain) is None
    assert restorable.privileges(plain) == ["set-user-ID bit", "set-group-ID bit",
                                            "file capabilities"]
    assert restorable.without_privileges(plain) == (0o755, ((b"user.a", b"1"),))
    huge = replace(plain, size=2**63, parts=(Part(None, 2**63),))
    assert "more than a file can hold" in (restorable.entry_problem(huge) or "")
    uneven = replace(plain, size=4)
    assert restorable.entry_problem(uneven) == "parts do not add up to its size"
    big_chunk = replace(plain, size=spec.CHUNK_MAX + 1,
                        parts=(Part(b"\1" * 32, spec.CHUNK_MAX + 1),))
    assert restorable.entry_problem(big_chunk) == "has a part of impossible size"
    sgid_dir = replace(plain, type=DIR, size=0, parts=(), subtree=b"\0" * 32, mode=0o2755)
    assert restorable.privileges(sgid_dir) == []
    assert restorable.without_privileges(sgid_dir)[0] == 0o2755
    dev = replace(plain, type="b", size=0, parts=(), xattrs=(), mode=0o666, rdev=2**64)
    assert "device number" in (restorable.entry_problem(dev) or "")
    assert restorable.privileges(dev) == ["device node"]


def test_dump_never_writes_a_byte_that_did_not_verify(
        source_repo: tuple[Cli, Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to DUMP_BUFFER a damaged file writes nothing; beyond it, exactly the verified
    chunks before the damage, and the error says how many bytes that is."""
    cli, src, snap_id = source_repo
    repo = Repository.open(cli.repo, PASSPHRASE.encode())
    body = repo.snapshots.read(snap_id).body
    assert body is not None
    entry = repo.lookup_path(body.tree, os.fsencode(src / "big.bin"))
    assert len(entry.parts) >= 2 and entry.parts[1].chunk_id is not None
    loc = repo.index.lookup(entry.parts[1].chunk_id, spec.BLOB_DATA)
    repo.store = BadSectors(repo.store, {loc.pack: {loc.entry.offset + 5}})  # type: ignore[assignment]
    out = io.BytesIO()
    with pytest.raises(RepofsError, match=r"big\.bin: not written: chunk .* could not be "
                                          r"read: .* \(nothing was written\)$"):
        dumper.dump(repo, entry, out, "big.bin")
    assert out.getvalue() == b""
    monkeypatch.setattr(dumper, "DUMP_BUFFER", 0)
    first = entry.parts[0].size
    with pytest.raises(RepofsError, match=f"only its first {first} bytes were written"):
        dumper.dump(repo, entry, out, "big.bin")
    assert out.getvalue() == (src / "big.bin").read_bytes()[:first]


def test_resume_and_dry_run_read_no_data(source_repo: tuple[Cli, Path, str],
                                         tmp_path: Path) -> None:
    """A restore into a target that already holds the tree (a resumed restore) and a dry
    run decide from the target alone: with every data chunk unreadable they still find
    everything unchanged, and not one data read is tried (the prefetcher included)."""
    cli, src, snap_id = source_repo
    repo = Repository.open(cli.repo, PASSPHRASE.encode(), damage=DamageLog())
    body = repo.snapshots.read(snap_id).body
    assert body is not None
    target = tmp_path / "t"
    first = Restorer(repo, target, RestoreOptions()).run(repo.root_entry(body.tree), b"/")
    assert first.files > 300 and not first.warnings
    bad: dict[str, set[int]] = {}
    for _p, e in repo.index.entries():
        if e.blob_type == spec.BLOB_DATA:
            loc = repo.index.lookup(e.blob_id, e.blob_type)
            bad.setdefault(loc.pack, set()).add(loc.entry.offset)
    for opts in (RestoreOptions(), RestoreOptions(dry_run=True),
                 RestoreOptions(overwrite="if-changed")):
        repo = Repository.open(cli.repo, PASSPHRASE.encode(), damage=DamageLog())
        disk = BadSectors(repo.store, bad)
        repo.store = disk  # type: ignore[assignment]
        stats = Restorer(repo, target, opts).run(repo.root_entry(body.tree), b"/")
        assert stats.unchanged == first.files + first.others, opts
        assert not stats.warnings and not stats.damaged and not disk.failed, opts
