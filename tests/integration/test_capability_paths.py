"""create as an unprivileged user holding only CAP_DAC_READ_SEARCH, as the systemd unit
runs it: a path whose mode shuts that user out (root's home, a home at 0700) is backed
up, because create opens paths instead of asking os.access(), which ignores
capabilities. An empty path is still refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.integration.harness import PASSPHRASE, REPOFS, make_cli, no_traceback


def _as_service_user(args: list[str], home: Path) -> subprocess.CompletedProcess[bytes]:
    caps = "-all,+dac_read_search"
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "REPOFS_PASSPHRASE": PASSPHRASE,
           "XDG_CACHE_HOME": str(home), "XDG_STATE_HOME": str(home), "LC_ALL": "C.UTF-8"}
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}",
            "--no-new-privs", "--", REPOFS, *args]
    p = subprocess.run(argv, capture_output=True, env=env, check=False, timeout=120)
    no_traceback(p.stderr.decode())
    return p


def test_create_reads_what_only_the_capability_opens(shm_dir: Path) -> None:
    src = shm_dir / "home-alice"
    src.mkdir(mode=0o700)
    (src / "private.txt").write_text("alice's\n")
    (src / "private.txt").chmod(0o600)
    cli = make_cli(shm_dir)
    home = shm_dir / "service-home"
    home.mkdir()
    for p in (cli.repo, home):
        subprocess.run(["chown", "-R", "nobody:nogroup", str(p)], check=True)
    p = _as_service_user(["create", "-r", str(cli.repo), "--json", str(src)], home)
    assert p.returncode == 0, p.stderr.decode()
    assert b"not readable" not in p.stderr
    out = shm_dir / "out"
    cli.run("restore", "latest", "--target", out)
    assert (out / str(src).lstrip("/") / "private.txt").read_text() == "alice's\n"


def test_create_refuses_an_empty_path(shm_dir: Path) -> None:
    cli = make_cli(shm_dir)
    r = cli.run("create", "", expect=2)
    assert r.err_lines[-1].startswith("repofs: error: ") and "empty path" in r.err
