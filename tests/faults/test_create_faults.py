"""Crash safety of create: fail every mutating storage call in turn, every way.

After each injected fault the repository is opened afresh: every snapshot
acknowledged before must list and restore byte for byte, and the failed create
either left no snapshot or a complete one (crash-after on the snapshot itself).
"""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

import pytest

from repofs.archiver import Archiver, CreateOptions
from repofs.compression import Codec
from repofs.repository import Repository
from repofs.restorer import RestoreOptions, Restorer
from repofs.session import WriteSession
from tests.faults.faulty import MODES, POINTS, FaultyStore, SimulatedCrash

PASS = b"fault injection"


def make_tree(src: Path, generation: int) -> None:
    (src / "sub").mkdir(parents=True, exist_ok=True)
    rnd = bytes((i * 7 + generation) % 251 for i in range(1 << 16))
    (src / "big.bin").write_bytes(os.urandom(20 * 1024 * 1024) if generation == 1
                                  else (src / "big.bin").read_bytes()[:-100] + os.urandom(100))
    (src / "sub" / f"gen{generation}.txt").write_bytes(rnd * (generation + 1))
    (src / "small.txt").write_text(f"generation {generation}\n")


def create(repo: Repository, src: Path) -> None:
    with WriteSession(repo, Codec()) as s:
        Archiver(s, CreateOptions(paths=[os.fsencode(src)], use_files_cache=False)).run()


def assert_restores(repo_dir: Path, expected: dict[str, Path], work: Path, src: Path) -> None:
    """Every acknowledged snapshot restores to exactly its saved copy of the tree."""
    repo = Repository.open(repo_dir, PASS)
    snaps = {s.id: s for s in repo.snapshots.list()}
    for snap_id, copy in expected.items():
        assert snap_id in snaps, f"acknowledged snapshot {snap_id} lost"
        body = snaps[snap_id].body
        assert body is not None
        target = work / f"restore-{snap_id[:8]}"
        shutil.rmtree(target, ignore_errors=True)
        entry = repo.lookup_path(body.tree, os.fsencode(src).lstrip(b"/"))
        Restorer(repo, target, RestoreOptions()).run(entry, os.fsencode(src))
        cmp = filecmp.dircmp(copy, target)
        assert not (cmp.diff_files or cmp.left_only or cmp.right_only), cmp.report()
        for name in ("big.bin", "small.txt"):
            assert (copy / name).read_bytes() == (target / name).read_bytes()
        shutil.rmtree(target)


@pytest.mark.parametrize("mode", MODES)
def test_every_failing_put_during_create(mode: str, shm_dir: Path) -> None:
    src, repo_dir = shm_dir / "src", shm_dir / "repo"
    Repository.init(repo_dir, PASS)
    expected: dict[str, Path] = {}
    for generation in (1, 2):
        make_tree(src, generation)
        copy = shm_dir / f"copy{generation}"
        shutil.copytree(src, copy)
        n = 1
        while True:
            repo = Repository.open(repo_dir, PASS)
            store = FaultyStore(repo_dir, n, mode)
            repo.store = store
            before = {s.id for s in repo.snapshots.list()}
            try:
                create(repo, src)
            except (OSError, SimulatedCrash):
                assert store.fired, "create failed without an injected fault"
            else:
                assert not store.fired, "an injected fault went unnoticed"
                break
            POINTS.append(f"{mode}:create-gen{generation}:put#{n}")
            assert_restores(repo_dir, expected, shm_dir, src)
            after = Repository.open(repo_dir, PASS).snapshots.list()
            new = [s for s in after if s.id not in before]
            # a snapshot appears only when the fault hit after its own put
            assert len(new) <= 1
            if new:
                assert mode == "crash-after"
                expected[new[0].id] = copy
            n += 1
        after = Repository.open(repo_dir, PASS).snapshots.list()
        for s in after:
            expected.setdefault(s.id, copy)
        assert_restores(repo_dir, expected, shm_dir, src)
    assert n > 3  # packs, index segment and snapshot were all exercised
