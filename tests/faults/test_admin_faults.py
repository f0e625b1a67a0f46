"""Crash safety of key add, key passwd, key remove, forget and prune.

Every mutating storage call (put, and for prune and key remove delete) fails in
turn, in every mode of ``faulty.MODES``. After each fault the repository is
opened afresh: every key file that existed still opens, every snapshot that
should still exist lists and reads back byte for byte, and ``check
--read-data`` finds nothing wrong. Prune is then run again without faults,
and must finish the job from wherever the fault left it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from repofs import crypto, forget, keyring, keys, retention, spec
from repofs.checker import Checker
from repofs.errors import WrongPassphrase
from repofs.prune import prune
from repofs.repository import Repository
from tests.faults.faulty import MODES, POINTS, FaultyAdminStore, SimulatedCrash
from tests.unit.adminkit import assert_restores, backup, contents, make_repo, reopen

FULL, ADMIN = b"full passphrase", b"admin passphrase"


@pytest.fixture
def fast_kdf() -> Iterator[None]:
    """Argon2id's interface without its cost: these tests are about storage faults."""
    def fake(passphrase: bytes, salt: bytes, t: int, m: int, p: int) -> bytes:
        return crypto.keyed_id(salt, b"%d/%d/%d/" % (t, m, p) + passphrase)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crypto, "argon2id", fake)
        yield


def faulty(repo_dir: Path, passphrase: bytes, n: int, mode: str) -> tuple[Repository,
                                                                         FaultyAdminStore]:
    repo = Repository.open(repo_dir, passphrase, index=False)
    store = FaultyAdminStore(repo_dir, n, mode)
    repo.store = store
    return repo, store


def key_files_intact(repo_dir: Path) -> set[str]:
    names = set(os.listdir(repo_dir / spec.NS_KEYS))
    for name in names:
        assert crypto.object_name((repo_dir / spec.NS_KEYS / name).read_bytes()) == name
    return names


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("operation", ["key-add", "key-passwd", "key-remove"])
def test_every_fault_during_key_changes(mode: str, operation: str, shm_dir: Path,
                                        fast_kdf: None) -> None:
    repo_dir = shm_dir / "repo"
    Repository.init(repo_dir, FULL, admin_passphrase=ADMIN)
    spare = keyring.add(Repository.open(repo_dir, FULL), b"spare", keys.CAP_WRITE_ONLY)
    before = key_files_intact(repo_dir)
    n = 1
    while True:
        new = b"new %d" % n
        repo, store = faulty(repo_dir, ADMIN if operation == "key-remove" else FULL, n, mode)
        try:
            if operation == "key-add":
                keyring.add(repo, new, keys.CAP_WRITE_ONLY)
            elif operation == "key-passwd":
                keyring.passwd(repo, new)
            else:
                keyring.remove(repo, store, spare)
        except (OSError, SimulatedCrash):
            assert store.fired, f"{operation} failed without an injected fault"
        else:
            assert not store.fired, "an injected fault went unnoticed"
            break
        POINTS.append(f"{mode}:{operation}:{store.failed}#{n}")
        after = key_files_intact(repo_dir)
        assert Repository.open(repo_dir, FULL).keys.capability == keys.CAP_FULL
        assert Repository.open(repo_dir, ADMIN).keys.capability == keys.CAP_ADMIN
        if operation == "key-remove":
            assert after in (before, before - {spare})
            if spare not in after:  # crash-after: the delete happened
                n += 1
                break
        else:
            assert before <= after and len(after - before) <= 1
            try:  # the new passphrase opens exactly when its key file was written
                opened = Repository.open(repo_dir, new)
                assert after - before == {opened.keys.key_name}
            except WrongPassphrase:
                assert after == before
        before = after
        n += 1
    assert n >= 2


def _template(root: Path) -> tuple[keys.MasterKeys, dict[str, dict[str, bytes]], list[str]]:
    """A repository with six snapshots; the policy keep-last 2 keeps the two newest."""
    repo = make_repo(root)
    shared = os.urandom(150_000)
    snaps = [backup(repo, {"shared": shared, "own": os.urandom(120_000 + i),
                           "tiny": b"%d" % i}, time_ns=10**18 + i * 10**12) for i in range(6)]
    kept = {s.id: contents(repo, s) for s in snaps[-2:]}
    return repo.keys, kept, [s.id for s in snaps]


def _open(root: Path, master: keys.MasterKeys, n: int = 0,
          mode: str = "eio") -> tuple[Repository, FaultyAdminStore]:
    store = FaultyAdminStore(root, n, mode)
    repo = Repository(store, master)
    repo.load_index()
    return repo, store


def _intact(repo: Repository) -> None:
    report = Checker(reopen(repo), read_data=True).run()
    assert report.intact, [p.line() for p in report.problems]


def _data_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in (root / spec.NS_DATA).rglob("*") if f.is_file())


@pytest.mark.parametrize("mode", MODES)
def test_every_fault_during_forget(mode: str, shm_dir: Path) -> None:
    root = shm_dir / "repo"
    master, kept, ids = _template(root)
    n = 1
    while True:
        repo, store = _open(root, master, n, mode)
        try:
            forget.commit(repo, forget.plan_policy(repo, retention.Policy(last=2)))
        except (OSError, SimulatedCrash):
            assert store.fired
        else:
            assert not store.fired
            break
        POINTS.append(f"{mode}:forget:{store.failed}#{n}")
        listed = {s.id for s in reopen(repo).snapshots.list()}
        assert listed in (set(ids), set(kept))  # the record is written whole or not at all
        assert_restores(repo, kept)
        n += 1
    assert {s.id for s in reopen(repo).snapshots.list()} == set(kept)


@pytest.mark.parametrize("mode", MODES)
def test_every_fault_during_prune(mode: str, shm_dir: Path) -> None:
    root, work = shm_dir / "template", shm_dir / "work"
    master, kept, _ids = _template(root)
    prepared, _ = _open(root, master)
    forget.commit(prepared, forget.plan_policy(prepared, retention.Policy(last=2)))
    size_before = _data_bytes(root)
    n = 1
    while True:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(root, work)
        repo, store = _open(work, master, n, mode)
        try:
            prune(repo, grace_ns=0)
        except (OSError, SimulatedCrash):
            assert store.fired
        else:
            assert not store.fired
            break
        POINTS.append(f"{mode}:prune:{store.failed}#{n}")
        assert_restores(repo, kept)
        _intact(repo)
        recovered, _ = _open(work, master)
        prune(recovered, grace_ns=0)  # the next prune finishes the job
        assert_restores(recovered, kept)
        _intact(recovered)
        assert _data_bytes(work) < size_before * 0.6
        n += 1
    assert n > 10  # repacks, segments, the condemn record and deletes were all exercised
