"""One rule for ``latest``: the mount's ``snapshots/latest`` and the CLI's ``latest`` are the
same snapshot, whatever time a writer gives a planted one (in the future, in the past, or
equal to the newest real snapshot's). The plant is made with the stolen key through
``repofs serve``; the mount is a real FUSE mount made by the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from repofs.model import SnapshotHead
from tests.integration.harness import Cli

from .victim import Victim, body_for, put_snapshot

pytestmark = pytest.mark.skipif(
    not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None,
    reason="needs /dev/fuse and fusermount3")

YEAR = 365 * 86400 * 10**9


@pytest.mark.parametrize("when", ["future", "past", "equal"])
def test_latest_is_one_snapshot_in_the_cli_and_the_mount(victim: Victim, when: str) -> None:
    head = victim.snaps[-1]
    repo = victim.client.attacker()
    real = repo.snapshots.read(head)
    first = repo.snapshots.read(victim.snaps[0])
    assert real.body is not None and first.body is not None
    t = {"future": time.time_ns() + YEAR, "past": real.head.time_ns - 3600 * 10**9,
         "equal": real.head.time_ns}[when]
    planted = put_snapshot(repo, SnapshotHead(real.head.seq + 1, (bytes.fromhex(head),), t),
                           body_for(first.body.tree))  # other content: tells them apart
    local = Cli(victim.restrict, victim.base / "local-client")
    by_cli = local.run("restore", "--json", "latest", "--target", victim.base / "t").json()
    chosen = by_cli["snapshot"]  # type: ignore[index]
    assert chosen == (planted if when == "equal" else head)
    mnt = victim.base / "mnt"
    mnt.mkdir()
    try:
        local.run("mount", "--log-file", victim.base / "mnt.log", mnt)
        link = os.readlink(mnt / "snapshots" / "latest")
        shown = mnt / "snapshots" / link
        rel = os.path.relpath(victim.src, "/")
        assert os.stat(shown / rel / "a.txt").st_size > 0
        assert (shown / rel / "a.txt").read_bytes() == \
            (mnt / "ids" / chosen / rel / "a.txt").read_bytes()
        other = head if chosen == planted else planted
        assert (shown / rel / "a.txt").read_bytes() != \
            (mnt / "ids" / other / rel / "a.txt").read_bytes()
    finally:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, check=False)
