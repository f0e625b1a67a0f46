"""repofs replicate: local -> s3 -> local without any passphrase, verified, create-only,
idempotent; another repository at DST refused; damage at SRC skipped and named."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..integration.harness import REPOFS, Cli, Result, assert_same_tree, no_traceback, under
from .ceph import Ceph
from .conftest import s3_cli
from .test_s3_cli import make_tree


def replicate(env: dict[str, str], src: Path | str, dst: Path | str, *args: str,
              expect: int = 0) -> Result:
    """``repofs replicate SRC DST`` with ``env`` (no passphrase in it unless given)."""
    argv = [REPOFS, "replicate", *args, str(src), str(dst)]
    p = subprocess.run(argv, capture_output=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    r = Result([a.encode() for a in argv], p.returncode, p.stdout, p.stderr.decode())
    no_traceback(r.err)
    assert r.rc == expect, str(r)
    return r


def test_replicate_local_to_s3_and_back(ceph: Ceph, plain_bucket: str,
                                        shm_dir: Path) -> None:
    src_tree = make_tree(shm_dir)
    local = Cli(shm_dir / "repo", shm_dir / "cache")
    local.run("init")
    local.create(str(src_tree))
    remote = s3_cli(ceph, plain_bucket, shm_dir)
    env = {k: v for k, v in remote.env().items() if k != "REPOFS_PASSPHRASE"}  # keyless
    dst = str(remote.repo)

    first = json.loads(replicate(env, local.repo, dst, "--json").out)
    assert first["created"] is True and first["skipped"] == []
    assert first["copied"]["data"] >= 1 and first["copied"]["snapshots"] == 1
    again = json.loads(replicate(env, local.repo, dst, "--json").out)
    assert sum(again["copied"].values()) == 0  # idempotent: nothing left to copy
    assert again["present"] == {k: first["copied"][k] for k in again["present"]}

    assert "no problems found" in remote.run("check", "--read-data").text
    remote.run("restore", "latest", "-t", str(shm_dir / "from-s3"))
    assert_same_tree(src_tree, under(shm_dir / "from-s3", src_tree))

    back = shm_dir / "back"
    r = replicate(env, dst, back, "--json")
    assert json.loads(r.out)["created"] is True
    local.run("restore", "latest", "-t", str(shm_dir / "from-back"), repo=back)
    assert_same_tree(src_tree, under(shm_dir / "from-back", src_tree))

    other = Cli(shm_dir / "other", shm_dir / "cache")
    other.run("init")
    r = replicate(env, other.repo, dst, expect=2)
    assert "holds another repository" in r.err


def test_replicate_skips_what_does_not_verify(shm_dir: Path) -> None:
    src_tree = make_tree(shm_dir)
    local = Cli(shm_dir / "repo", shm_dir / "cache")
    local.run("init")
    local.create(str(src_tree))
    pack = next((shm_dir / "repo" / "data").glob("*/*"))
    pack.chmod(0o640)
    with open(pack, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 8)
    r = replicate(local.env(), local.repo, shm_dir / "copy", expect=1)
    assert f"pack {pack.name}" in r.err and "not copied" in r.err, r.err
    assert "skipped 1 that did not verify" in r.text
    assert not (shm_dir / "copy" / "data" / pack.name[:2] / pack.name).exists()
    assert (shm_dir / "copy" / "snapshots").is_dir()
