"""repofs replicate and check --storage-only over ssh:// (through ``repofs serve``, with
the attack suite's stand-in ssh, so no sshd): a keyless copy local -> ssh:// -> local,
idempotent, restorable byte for byte; the storage host's check over ssh:// finds a
damaged object by name."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ..attacks.victim import write_fake_ssh
from .harness import REPOFS, Cli, Result, assert_same_tree, no_traceback, under


def _run(env: dict[str, str], *argv: str, expect: int = 0) -> Result:
    p = subprocess.run([REPOFS, *argv], capture_output=True, env=env, timeout=300,
                       stdin=subprocess.DEVNULL)
    r = Result([a.encode() for a in (REPOFS, *argv)], p.returncode, p.stdout,
               p.stderr.decode())
    no_traceback(r.err)
    assert r.rc == expect, str(r)
    return r


def test_replicate_over_ssh_and_check_storage_only(shm_dir: Path) -> None:
    src = shm_dir / "src"
    (src / "d").mkdir(parents=True)
    (src / "big").write_bytes(os.urandom(600_000))
    for i in range(5):
        (src / "d" / f"f{i}").write_bytes(os.urandom(i * 1000))
    local = Cli(shm_dir / "repo", shm_dir / "cache")
    local.run("init")
    local.create(str(src))
    host = shm_dir / "offsite"
    host.mkdir()
    url = f"ssh://backup@offsite.example{host}/copy"
    env = {k: v for k, v in local.env().items() if not k.startswith("REPOFS_PASS")}
    env.update({"REPOFS_SSH": str(write_fake_ssh(shm_dir)), "FAKE_SSH_RESTRICT": str(host),
                "FAKE_SSH_SERVE_FLAGS": "", "FAKE_SSH_PREFIX": ""})

    first = json.loads(_run(env, "replicate", "--json", str(local.repo), url).out)
    assert first["created"] is True and first["skipped"] == []
    assert first["copied"]["snapshots"] == 1 and first["copied"]["data"] >= 1
    again = json.loads(_run(env, "replicate", "--json", str(local.repo), url).out)
    assert sum(again["copied"].values()) == 0  # idempotent
    assert "no problems found" in _run(env, "check", "--storage-only", "-r", url).out.decode()

    back = shm_dir / "back"  # and from ssh:// to a local path, restorable as the original
    assert json.loads(_run(env, "replicate", "--json", url, str(back)).out)["created"]
    Cli(back, shm_dir / "cache2").run("restore", "latest", "-t", str(shm_dir / "out"))
    assert_same_tree(src, under(shm_dir / "out", src))

    pack = next(p for p in (host / "copy" / "data").rglob("*") if p.is_file())  # bit rot
    data = bytearray(pack.read_bytes())
    data[-10] ^= 1
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    out = _run(env, "check", "--storage-only", "-r", url, expect=2).out.decode()
    assert f"pack {pack.name}: content does not match its name" in out, out
