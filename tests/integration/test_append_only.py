"""Append-only by format: a repository whose every file is immutable still takes new snapshots.

The repository lives on the root ext4 file system (tmpfs has no immutable flag).
After each ``create`` every repository file gets ``chattr +i``; the next ``create``
must not need to change, rename or delete any of them. All snapshots then restore
exactly. Writing under an existing name through the store is refused.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from repofs.errors import ObjectExists, RepositoryExists
from repofs.spec import CONFIG_NAME, NAMESPACES, NS_DATA, NS_KEYS, NS_SNAPSHOTS
from repofs.store import LocalStore

from .harness import Cli, rsync_copy, rsync_diff, under, write_random

DISK_BASE = Path("/var/tmp")


def repo_files(repo: Path) -> list[Path]:
    return sorted(p for p in repo.rglob("*") if p.is_file())


def make_immutable(repo: Path) -> None:
    files = repo_files(repo)
    subprocess.run(["chattr", "+i", *map(str, files)], check=True)
    flags = subprocess.run(["lsattr", *map(str, files)], capture_output=True, check=True,
                           text=True).stdout.splitlines()
    assert len(flags) == len(files) and all("i" in ln.split()[0] for ln in flags), flags


@pytest.fixture(scope="module")
def disk_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="repofs-it-append-", dir=DISK_BASE))
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-R", "-i", str(d)], check=False, capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def test_creates_on_an_immutable_repository_restore_exactly(disk_dir: Path,
                                                             shm_module_dir: Path) -> None:
    cli = Cli(disk_dir / "repo", shm_module_dir / "cache")
    cli.init()
    src = shm_module_dir / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"generation 1\n")
    (src / "sub" / "gone.txt").write_bytes(b"removed in generation 2\n")
    write_random(src / "big.bin", 6 << 20)
    os.symlink("a.txt", src / "link")
    expected = []
    ids = []
    for gen in (1, 2, 3):
        if gen == 2:
            (src / "sub" / "gone.txt").unlink()
            (src / "a.txt").write_bytes(b"generation 2\n")
            write_random(src / "sub" / "new.bin", 3 << 20)
        if gen == 3:
            with open(src / "big.bin", "r+b") as f:
                f.seek(3 << 20)
                f.write(b"changed in generation 3")
            os.link(src / "a.txt", src / "sub" / "a-link")
            (src / "empty").mkdir()
        ids.append(cli.create(src, "--name", f"gen{gen}")["snapshot"])
        copy = shm_module_dir / f"expected{gen}"
        rsync_copy(src, copy)
        expected.append(copy)
        make_immutable(cli.repo)  # every file so far, the new ones of this create too

    snaps = cli.snapshots()
    assert [s["id"] for s in snaps] == ids
    assert snaps[2]["prev"] == [ids[1]] and snaps[1]["prev"] == [ids[0]]
    for gen, (snap_id, copy) in enumerate(zip(ids, expected, strict=True), 1):
        target = shm_module_dir / f"restored{gen}"
        cli.run("restore", snap_id, "--target", target)
        assert rsync_diff(copy, under(target, src)) == "", gen
    # the repository files are still the immutable, read-only objects they were
    for p in repo_files(cli.repo):
        assert stat.S_IMODE(p.stat().st_mode) == 0o440, p
    with pytest.raises(PermissionError):
        open(repo_files(cli.repo)[0], "r+b")


def test_store_refuses_to_write_under_an_existing_name(shm_module_dir: Path) -> None:
    cli = Cli(shm_module_dir / "store-repo", shm_module_dir / "store-cache")
    cli.init()
    src = shm_module_dir / "store-src"
    src.mkdir()
    (src / "f").write_bytes(b"some data")
    cli.create(src)
    store = LocalStore.open(cli.repo)
    assert not any(hasattr(store, m) for m in ("delete", "remove", "rename", "unlink"))
    for ns in NAMESPACES:
        names = sorted(store.list(ns))
        if not names:  # a namespace this repository has not used yet: add an object first
            names = ["5e" * 32]
            assert store.put(ns, names[0], b"first") is True
        name = names[0]
        path = store.path(ns, name)
        original = path.read_bytes()
        with pytest.raises(ObjectExists):
            store.put(ns, name, original + b"x")
        with pytest.raises(ObjectExists):
            store.put(ns, name, b"")
        assert store.put(ns, name, original) is False  # identical bytes: a verified no-op
        assert path.read_bytes() == original
    with pytest.raises(RepositoryExists):
        LocalStore.create(cli.repo, b"new config")
    config = (cli.repo / CONFIG_NAME).read_bytes()
    r = cli.run("init", expect=2)
    assert len(r.err_lines) == 1
    assert (cli.repo / CONFIG_NAME).read_bytes() == config
    # names are validated: nothing can be written outside the namespace directories
    for ns, name in [(NS_KEYS, "../config"), (NS_SNAPSHOTS, "a" * 63), ("tmp", "b" * 64),
                     (NS_DATA, "../../" + "c" * 58)]:
        with pytest.raises(ValueError):
            store.put(ns, name, b"x")


def test_racing_writers_on_one_name_first_wins_no_torn_file(shm_module_dir: Path) -> None:
    cli = Cli(shm_module_dir / "race-repo", shm_module_dir / "race-cache")
    cli.init()
    store = LocalStore.open(cli.repo)
    name = "ab" * 32
    contents = [bytes([i]) * (4 << 20) for i in range(8)]
    results: list[object] = [None] * len(contents)
    barrier = threading.Barrier(len(contents))

    def put(i: int) -> None:
        barrier.wait()
        try:
            results[i] = store.put(NS_SNAPSHOTS, name, contents[i])
        except ObjectExists as e:
            results[i] = e

    threads = [threading.Thread(target=put, args=(i,)) for i in range(len(contents))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in enumerate(results) if r is True]
    assert len(winners) == 1, results
    assert all(isinstance(r, ObjectExists) for i, r in enumerate(results) if i != winners[0])
    assert store.path(NS_SNAPSHOTS, name).read_bytes() == contents[winners[0]]
    assert os.listdir(cli.repo / "tmp") == []
