"""Blob locations heal themselves, through the real CLI (repofs-format(5), DAMAGE).

- An index segment flipped, truncated or deleted: restore, dump, ls, check and a mount
  still give every byte, exit 1, and the warning names the segment (or, deleted, the
  packs no segment lists).
- ``repofs repair`` lists those packs in a new segment; afterwards reads are quiet and
  exit 0, and check still names the damaged segment.
- A ``repofs create`` killed (SIGKILL) after writing packs: the next create reuses them
  and the repository grows by far less than the data; the snapshot restores exactly and
  ``check --read-data`` passes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from repofs import spec

from .harness import REPOFS, Cli, du_bytes, make_cli, rsync_diff, under, write_random

MiB = 1 << 20


def build(src: Path) -> None:
    (src / "sub").mkdir(parents=True)
    write_random(src / "big.bin", 3 * MiB)
    for i in range(30):
        (src / "sub" / f"f{i:02}.txt").write_bytes(os.urandom(i * 977))
    (src / "link").symlink_to("sub/f01.txt")


@pytest.fixture(scope="module")
def pristine(shm_module_dir: Path) -> dict:
    src = shm_module_dir / "src"
    build(src)
    cli = make_cli(shm_module_dir, "pristine")
    first = cli.create(src)["snapshot"]
    (src / "later.txt").write_bytes(b"second snapshot\n")
    second = cli.create(src)["snapshot"]
    segs = sorted(os.listdir(cli.repo / spec.NS_INDEX))
    assert len(segs) == 2
    return {"src": src, "cli": cli, "snaps": [first, second], "base": shm_module_dir}


def copy(p: dict, name: str) -> Cli:
    dst = p["base"] / name
    shutil.copytree(p["cli"].repo, dst / "repo", symlinks=True)
    # the client's state (heads seen) comes along, its index cache does not: a cached table
    # holds what a segment said when it verified, so damage done since would cost this
    # client nothing and never be read (test_blobcache covers that); these tests are about
    # readers that do read the damaged segment (another host, a lost cache)
    shutil.copytree(p["cli"].cache, dst / "cache", symlinks=True,
                    ignore=shutil.ignore_patterns("blobtable*"))
    return Cli(dst / "repo", dst / "cache")


def first_segment(cli: Cli) -> Path:
    """The segment of the first create: the only one listing the first snapshot's data."""
    segs = sorted((cli.repo / spec.NS_INDEX).iterdir(), key=lambda p: p.stat().st_mtime_ns)
    os.chmod(segs[0], 0o600)
    return segs[0]


def damage(seg: Path, how: str) -> None:
    data = seg.read_bytes()
    if how == "flip":
        seg.write_bytes(data[:60] + bytes([data[60] ^ 4]) + data[61:])
    elif how == "truncate":
        seg.write_bytes(data[: len(data) // 2])
    else:
        seg.unlink()


def reads_everything(p: dict, cli: Cli, expect: int, named: str | None) -> None:
    """restore, dump and ls of the first snapshot: every byte, exit ``expect``, and the one
    warning naming ``named`` (None: no warning at all)."""
    snap, src = p["snaps"][0], p["src"]
    target = cli.repo.parent / f"restore-{time.monotonic_ns()}"
    runs = [cli.run("restore", snap, "--target", target, expect=expect),
            cli.run("dump", snap, src / "big.bin", expect=expect),
            cli.run("ls", snap, expect=expect)]
    assert rsync_diff(src, under(target, src), "--exclude=/later.txt", "--omit-dir-times") == ""
    assert runs[1].out == (src / "big.bin").read_bytes()
    assert b"f29.txt" in runs[2].out
    for r in runs:
        if named is None:
            assert r.err_lines == [], str(r)
        else:
            assert len(r.err_lines) == 1 and named in r.err_lines[0], str(r)
            assert r.err_lines[0].startswith("repofs: warning: "), str(r)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_lost_segment_costs_no_byte_and_repair_makes_it_quiet(pristine: dict,
                                                                 how: str) -> None:
    cli = copy(pristine, f"lost-{how}")
    seg = first_segment(cli)
    damage(seg, how)
    named = "listed by no index segment" if how == "delete" else seg.name
    reads_everything(pristine, cli, 1, named)
    r = cli.run("check", expect=None)
    if how == "delete":  # nothing names a deleted segment; its packs are a note
        assert r.rc == 0 and "listed by no index segment" in r.text, str(r)
    else:
        assert r.rc == 2 and r.text.startswith(f"index segment {seg.name}"), str(r)
        assert "1 problem found" in r.text, str(r)
    dry = cli.run("repair", "--dry-run", "--json", expect=None).json()
    assert dry["segments_written"] == [] and dry["recovered_packs"], dry
    assert len(os.listdir(cli.repo / spec.NS_INDEX)) == (1 if how == "delete" else 2)
    fixed = cli.run("repair", "--json", expect=None)
    assert len(fixed.json()["segments_written"]) == 1, str(fixed)
    reads_everything(pristine, cli, 0, None)
    assert cli.run("snapshots", expect=0).err_lines == []
    r = cli.run("check", "--read-data", expect=None)
    if how == "delete":
        assert r.rc == 0, str(r)
    else:  # the damaged object is named until an admin removes it
        assert r.rc == 2 and "1 problem found" in r.text and seg.name in r.text, str(r)
    r = cli.run("repair", expect=0)
    assert "nothing to repair" in r.text


def test_a_write_only_key_repairs_a_format_2_repository(pristine: dict) -> None:
    """Every index segment gone; a write-only key (no history, no blob readable) lists
    every pack again through the real CLI, and a full key then reads every byte, quietly."""
    cli = copy(pristine, "write-only-repair")
    cli.run("key", "add", "--write-only", env={"REPOFS_NEW_PASSPHRASE": "writer only"})
    for seg in (cli.repo / spec.NS_INDEX).iterdir():
        os.chmod(seg, 0o600)
        seg.unlink()
    writer = {"REPOFS_PASSPHRASE": "writer only"}
    dry = cli.run("repair", "--dry-run", "--json", env=writer).json()
    assert dry["recovered_packs"] and dry["sealed_packs"] == [], dry
    assert dry["unlisted_packs"] == sorted(dry["recovered_packs"]), dry
    fixed = cli.run("repair", "--json", env=writer).json()
    assert len(fixed["segments_written"]) == 1, fixed
    reads_everything(pristine, cli, 0, None)
    r = cli.run("repair", env=writer)
    assert "nothing to repair" in r.text
    denied = cli.run("dump", pristine["snaps"][0], pristine["src"] / "big.bin", env=writer,
                     expect=2)
    assert "cannot read" in denied.err


def test_a_mount_reads_every_byte_past_a_damaged_segment(pristine: dict) -> None:
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        pytest.skip("needs /dev/fuse and fusermount3")
    cli = copy(pristine, "mount")
    seg = first_segment(cli)
    damage(seg, "flip")
    mnt = cli.repo.parent / "mnt"
    mnt.mkdir()
    log = cli.repo.parent / "mount.log"
    try:
        cli.run("mount", "--log-file", log, mnt, expect=None)
        assert os.path.ismount(mnt)
        src = pristine["src"]
        inside = under(mnt / "ids" / pristine["snaps"][0], src)
        assert rsync_diff(src, inside, "--exclude=/later.txt", "--omit-dir-times") == ""
    finally:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, check=False)


def test_a_killed_create_is_resumed_by_the_next(shm_dir: Path) -> None:
    """SIGKILL a real create once several packs of a 96 MiB tree are written (the index
    segment comes after all of them), then create again: it reuses those packs."""
    src = shm_dir / "src"
    src.mkdir()
    for i in range(6):
        write_random(src / f"part{i}.bin", 16 * MiB)
    total = 96 * MiB
    cli = make_cli(shm_dir)
    empty = du_bytes(cli.repo)
    data = cli.repo / spec.NS_DATA
    argv = [REPOFS, "create", "-r", str(cli.repo), str(src)]
    proc = subprocess.Popen(argv, env=cli.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while sum(1 for _ in data.glob("*/*")) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "create finished before it could be killed"
    assert not os.listdir(cli.repo / spec.NS_INDEX) and not os.listdir(
        cli.repo / spec.NS_SNAPSHOTS)
    left = du_bytes(cli.repo) - empty
    assert left >= 3 * 15 * MiB
    before = du_bytes(cli.repo)
    unlisted = sum(1 for _ in data.glob("*/*"))
    created = cli.create(src)
    assert created["packs_adopted"] == unlisted  # what the summary and --json report
    snap = created["snapshot"]
    grew = du_bytes(cli.repo) - before
    assert grew < total - left + 4 * MiB, (grew, left, total)
    assert grew < total * 0.6, (grew, total)
    target = shm_dir / "restored"
    cli.run("restore", snap, "--target", target)
    assert rsync_diff(src, under(target, src)) == ""
    r = cli.run("check", "--read-data")
    assert "no problems found" in r.text and "listed by no index segment" not in r.text
