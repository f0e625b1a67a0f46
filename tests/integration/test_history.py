"""The history as honest use makes it: concurrent creates and an admin's forget raise no
alarm in ``repofs check`` (real CLI, real processes)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from .harness import REPOFS, Cli, no_traceback

ADMIN = "history admin passphrase"


def _cli(base: Path) -> Cli:
    cli = Cli(base / "repo", base / "cache")
    cli.run("init", env={"REPOFS_ADMIN_PASSPHRASE": ADMIN})
    return cli


def test_two_creates_at_once_are_no_backdating(shm_dir: Path) -> None:
    """A starts first and commits last, on top of B: A is dated before its prev (a snapshot's
    time is when its create started). check exits 0 and calls nothing backdated."""
    cli = _cli(shm_dir)
    src = shm_dir / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    cli.create(src)
    slow = subprocess.Popen(
        [REPOFS, "create", "-r", str(cli.repo), "--json", "--stdin-name", "slow.txt",
         "--stdin-from-command", "--", "sh", "-c", "sleep 3; echo slow"],
        env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)  # A has started (and taken its time)
    fast = cli.create(src)
    out, err = slow.communicate(timeout=120)
    no_traceback(err.decode())
    assert slow.returncode == 0, err
    snaps = {s["id"]: s for s in cli.snapshots()}
    a = snaps[json.loads(out)["snapshot"]]
    b = snaps[fast["snapshot"]]
    assert a["prev"] == [b["id"]] and a["time"] <= b["time"], (a, b)  # the race happened
    r = cli.run("check")
    assert "backdated" not in r.text and "no problems found" in r.text, r
    # A is trusted (a policy may remove it: it is counted, just before B, not set aside)
    r = cli.run("forget", "--keep-last", "1", "--group-by", "none",
                env={"REPOFS_ADMIN_PASSPHRASE": ADMIN})
    assert "untrusted" not in r.text, r
    assert [s["id"] for s in cli.snapshots()] == [b["id"]]
    cli.run("check")


def test_forgetting_a_middle_snapshot_leaves_one_quiet_history(shm_dir: Path) -> None:
    """An admin forgets the middle of three (and prunes): check finds nothing, no second
    head, no stale first snapshot; the next create follows the newest only."""
    cli = _cli(shm_dir)
    src = shm_dir / "src"
    src.mkdir()
    ids = []
    for i in range(3):
        (src / "f").write_bytes(b"version %d" % i)
        ids.append(cli.create(src)["snapshot"])
    admin = {"REPOFS_ADMIN_PASSPHRASE": ADMIN}
    cli.run("forget", ids[1], env=admin)
    cli.run("prune", "--grace", "0", env=admin)
    r = cli.run("check")
    assert r.text.splitlines()[-1].startswith("no problems found"), r
    assert "heads" not in r.text and "stale" not in r.text and "fork" not in r.text, r
    new = cli.create(src)
    assert new["seq"] == 3
    assert [s["prev"] for s in cli.snapshots() if s["id"] == new["snapshot"]] == [[ids[2]]]
