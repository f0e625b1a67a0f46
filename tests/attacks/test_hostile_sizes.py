"""Sizes a hostile writer (a stolen writer key, threat model A4) plants in a tree: a size
no OS can take (2^63), chunks shorter or longer than the tree says. The bad entry alone
is left out and named; its directory keeps every other entry; a read through a real
FUSE mount answers EIO for the lying file, never short or other bytes, even when the
chunk it names was read for another file first (and sits in the mount's cache)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from repofs import spec
from repofs.model import SnapshotHead
from repofs.repository import Repository
from tests.integration.harness import PASSPHRASE, Cli, make_cli

from .victim import body_for, put_blobs, put_snapshot, raw_tree

CONTENT = b"twenty-four bytes here!\n"
SMALL = b"x" * 100


def entry(name: bytes, parts: list[list[object]], size: int) -> dict:
    return {"n": name, "t": "f", "m": 0o644, "u": 0, "g": 0, "mt": 0, "ct": 0, "s": size,
            "c": parts}


@pytest.fixture
def planted(shm_dir: Path) -> tuple[Cli, str, str]:
    """A repository whose one snapshot is /d with good and lying files; (cli, snapshot
    id, the hex id of the tree of /d)."""
    cli = make_cli(shm_dir)
    repo = Repository.open(str(cli.repo), PASSPHRASE.encode())
    chunk = repo.blob_id(CONTENT, spec.BLOB_DATA)
    small = repo.blob_id(SMALL, spec.BLOB_DATA)
    n = len(CONTENT)
    d = raw_tree([
        entry(b"a", [[chunk, n]], n),                       # good: read first, then cached
        entry(b"big", [[None, 2**63]], 2**63),              # no OS takes this size
        entry(b"long", [[chunk, 2 * n]], 2 * n),            # the chunk is shorter
        entry(b"short", [[chunk, 10]], 10),                 # the chunk is longer
        entry(b"sum", [[chunk, n]], n + 1),                 # parts do not add up
        entry(b"z", [[small, len(SMALL)]], len(SMALL)),     # good, after the bad ones
    ])
    d_id = repo.blob_id(d, spec.BLOB_TREE)
    root = raw_tree([{"n": b"d", "t": "d", "m": 0o755, "u": 0, "g": 0, "mt": 0, "ct": 0,
                      "sub": d_id}])
    root_id = repo.blob_id(root, spec.BLOB_TREE)
    put_blobs(repo, [(chunk, spec.BLOB_DATA, CONTENT), (small, spec.BLOB_DATA, SMALL),
                     (d_id, spec.BLOB_TREE, d), (root_id, spec.BLOB_TREE, root)])
    snap = put_snapshot(repo, SnapshotHead(0, (), time.time_ns()), body_for(root_id))
    return cli, snap, d_id.hex()


def test_ls_leaves_out_only_the_entries_that_break_a_rule(planted: tuple[Cli, str, str]
                                                          ) -> None:
    cli, snap, d_id = planted
    r = cli.run("ls", snap, expect=1)
    assert r.text.splitlines() == ["/d", "/d/a", "/d/long", "/d/short", "/d/z"]
    assert r.err_lines == [
        f"repofs: warning: tree {d_id} is corrupt or tampered: entry big: field 's' out "
        "of range (entry left out)",
        f"repofs: warning: tree {d_id} is corrupt or tampered: entry sum: file size does "
        "not match its content list (entry left out)"], r


@pytest.fixture
def mounted(planted: tuple[Cli, str, str], shm_dir: Path) -> Iterator[Path]:
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        pytest.skip("needs /dev/fuse and fusermount3")
    cli, snap, _ = planted
    mnt = shm_dir / "mnt"
    mnt.mkdir()
    cli.run("mount", "--snapshot", snap, "--log-file", shm_dir / "mount.log", mnt)
    try:
        yield mnt
    finally:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


def _read(path: Path) -> bytes | int:
    try:
        return path.read_bytes()
    except OSError as e:
        return e.errno or -1


def test_the_mount_hides_the_bad_entry_alone_and_never_serves_short_content(
        mounted: Path) -> None:
    d = mounted / "d"
    assert sorted(os.listdir(d)) == ["a", "long", "short", "z"]
    assert (d / "a").read_bytes() == CONTENT  # its chunk is now in the mount's cache
    for _ in range(2):  # the second time, the chunk is cached for certain
        assert _read(d / "long") == errno.EIO
        assert _read(d / "short") == errno.EIO
    assert (d / "z").read_bytes() == SMALL
    assert (d / "a").read_bytes() == CONTENT
    assert os.stat(d / "long").st_size == 2 * len(CONTENT)
    log = (mounted.parent / "mount.log").read_text()
    assert "entry big: field 's' out of range (entry left out)" in log, log
