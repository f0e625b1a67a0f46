"""Deduplication through the real CLI, on a 1 GiB tree on tmpfs.

- An unchanged tree backed up again adds less than 1 MiB and reads no file contents.
- Without the files cache every file is read again, but still almost nothing is added.
- 100 bytes inserted into the middle of a 100 MiB file add less than 5 MiB.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from .harness import Cli, du_bytes, write_random

MiB = 1 << 20
LARGE = 10  # files of 100 MiB
SMALL_DIRS, SMALL_PER_DIR = 20, 500  # 10,000 files of 0..16 KiB


@pytest.fixture(scope="module")
def tree(shm_module_dir: Path) -> dict:
    src = shm_module_dir / "src"
    src.mkdir()
    for i in range(LARGE):
        write_random(src / f"large{i}.bin", 100 * MiB)
    pool = os.urandom(32 * MiB)
    rnd = random.Random(1)
    for d in range(SMALL_DIRS):
        sub = src / "small" / f"d{d:02}"
        sub.mkdir(parents=True)
        for i in range(SMALL_PER_DIR):
            n = rnd.randrange(16 * 1024)
            off = rnd.randrange(len(pool) - n)
            (sub / f"f{i:04}.dat").write_bytes(pool[off : off + n])
    (src / "small" / "empty").mkdir()
    total = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    assert total >= 1 << 30, total
    cli = Cli(shm_module_dir / "repo", shm_module_dir / "cache")
    cli.init()
    first = cli.create(src)
    assert first["bytes_read"] == total and first["files"] == LARGE + SMALL_DIRS * SMALL_PER_DIR
    return {"src": src, "cli": cli, "total": total, "first": first}


def test_unchanged_tree_adds_under_1_MiB_and_reads_nothing(tree: dict) -> None:
    cli: Cli = tree["cli"]
    before = du_bytes(cli.repo)
    again = cli.create(tree["src"])
    added = du_bytes(cli.repo) - before
    assert added < MiB, added
    assert again["bytes_read"] == 0 and again["files_read"] == 0, again
    assert again["files_unchanged"] == again["files"] == tree["first"]["files"]
    assert again["bytes_total"] == tree["total"]


def test_without_files_cache_reads_everything_but_adds_under_1_MiB(tree: dict) -> None:
    cli: Cli = tree["cli"]
    before = du_bytes(cli.repo)
    again = cli.create(tree["src"], "--no-cache")
    added = du_bytes(cli.repo) - before
    assert again["bytes_read"] == tree["total"]
    assert added < MiB, added


def test_insert_100_bytes_in_100_MiB_file_adds_under_5_MiB(tree: dict) -> None:
    cli: Cli = tree["cli"]
    path: Path = tree["src"] / "large4.bin"
    data = path.read_bytes()
    mid = len(data) // 2 + 12345
    changed = data[:mid] + os.urandom(100) + data[mid:]
    del data
    path.write_bytes(changed)
    before = du_bytes(cli.repo)
    snap = cli.create(tree["src"])
    added = du_bytes(cli.repo) - before
    assert added < 5 * MiB, added
    assert snap["files_read"] == 1 and snap["bytes_read"] == len(changed), snap
    out = cli.run("dump", snap["snapshot"], path).out
    assert hashlib.sha256(out).digest() == hashlib.sha256(changed).digest()
