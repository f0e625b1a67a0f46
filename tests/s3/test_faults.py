"""Faults between repofs and the gateway (tests/s3/faultproxy.py): 500s, 429s, dropped
connections, answers cut mid-body, stalls and lost acknowledgements during init, create,
restore and replicate are retried and everything ends byte for byte; a server that stays
down gives one clear error line, loses no acknowledged snapshot and leaves nothing
half-written (check passes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..integration.harness import assert_same_tree, under
from .ceph import Ceph
from .conftest import s3_cli
from .faultproxy import FaultProxy
from .test_replicate import replicate
from .test_s3_cli import make_tree


@pytest.fixture
def proxy(ceph: Ceph) -> Iterator[FaultProxy]:
    p = FaultProxy(ceph.port)
    yield p
    p.stop()


def test_faults_are_retried_and_an_outage_is_clean(ceph: Ceph, plain_bucket: str,
                                                   proxy: FaultProxy, shm_dir: Path) -> None:
    src = make_tree(shm_dir)
    cli = s3_cli(ceph, plain_bucket, shm_dir)
    cli.repo = f"s3+http://127.0.0.1:{proxy.port}/{plain_bucket}/repo"  # type: ignore[assignment]
    proxy.faults.every = 5
    proxy.faults.stall = 0.3
    cli.run("init")
    first = cli.create(str(src))["snapshot"]
    cli.run("restore", "latest", "-t", str(shm_dir / "out"))
    assert_same_tree(src, under(shm_dir / "out", src))
    r = replicate(cli.env(), cli.repo, shm_dir / "copy", "--json")
    assert json.loads(r.out)["skipped"] == []
    assert set(proxy.faults.injected) == set(proxy.faults.kinds), proxy.faults.injected

    # the server goes down for good in the middle of a create: one error line, exit 2
    (src / "more").write_bytes(b"x" * 100_000)
    proxy.faults.every = 0
    proxy.faults.mode = "down"
    r = cli.run("create", str(src), expect=2, env={"AWS_MAX_ATTEMPTS": "2"})
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repofs: error: "), r.err
    assert "ServiceUnavailable" in lines[0] or "503" in lines[0], r.err
    proxy.faults.mode = "ok"
    assert "no problems found" in cli.run("check", "--read-data").text  # nothing half-made
    assert [s["id"] for s in cli.snapshots()] == [first]  # the acknowledged one, whole


def test_a_conditional_put_conflict_is_retried(ceph: Ceph, plain_bucket: str,
                                               proxy: FaultProxy, shm_dir: Path) -> None:
    """409 ConditionalRequestConflict (botocore leaves it alone) is retried by put."""
    src = shm_dir / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}").write_bytes(bytes([i]) * (i + 1) * 5000)
    cli = s3_cli(ceph, plain_bucket, shm_dir)
    cli.repo = f"s3+http://127.0.0.1:{proxy.port}/{plain_bucket}/repo"  # type: ignore[assignment]
    proxy.faults.kinds = ("409",)
    proxy.faults.every = 2
    cli.run("init")
    cli.create(str(src))
    assert proxy.faults.injected.get("409", 0) >= 3, proxy.faults.injected
    proxy.faults.every = 0
    assert "no problems found" in cli.run("check", "--read-data").text
