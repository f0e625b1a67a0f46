"""README's "## Use" block, run as written, line by line and in order, on a fresh repository.

The lines are read from README.md itself (the first ```sh block under "## Use"), so an
edit to the README is tested as it reads. Each line runs in its own ``bash -c`` (the
block is shell: pipes and redirections are part of what it teaches), in a scratch
directory, and must exit 0, or what ``EXPECTED`` says.

What cannot be used as written is changed by one documented table, nothing else:

- ``PATHS``: the absolute paths the README names (/srv, /etc, /home, /tmp, /mnt) are
  moved under a scratch root, and the snapshot paths that stand for them (``home/alice``,
  ``etc/fstab``, ``latest:home/alice``) to where that root puts them in a snapshot.
- ``pg_dump`` is a small script on PATH that prints SQL.
- What a person would type at a prompt comes from the environment: the admin passphrase
  (``REPOFS_ADMIN_PASSPHRASE_FILE``, which the README's ``forget`` line names) and the new
  key's passphrase for ``key add`` (``REPOFS_NEW_PASSPHRASE``).
- ``export`` lines set the environment of the lines after them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from .harness import REPOFS, no_traceback

ROOT = Path(__file__).resolve().parents[2]
TOP_DIRS = ("srv", "etc", "home", "tmp", "mnt")
SNAPSHOT_DIRS = ("home", "etc")  # the paths the README's create backs up

_NOT_IN_LATEST = "no such file or directory in the snapshot"  # issue #14: see below
# command (a README line without its comment) -> (expected exit status, the error it
# must give). Only lines that cannot yet run as written are here; when the issue named is
# resolved, remove them (the test fails until then: an expected failure that passes).
EXPECTED: dict[str, tuple[int, str]] = {}


def readme_use_block(text: str) -> list[str]:
    """The command lines of the first ```sh block under "## Use": blank lines dropped,
    trailing comments kept (bash ignores them, and they are part of what is read)."""
    section = text.split("\n## Use\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```sh\n(.*?)^```", section, re.M | re.S)
    assert block is not None, "no ```sh block under ## Use"
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def without_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line)


def relocate(line: str, root: Path) -> str:
    """``PATHS``: the README's absolute paths under ``root``, its snapshot paths (as
    ``create /home /etc`` stored them) under ``root`` without its leading ``/``."""
    rel = str(root).lstrip("/")
    snap = "|".join(SNAPSHOT_DIRS)
    line = re.sub(rf"(?<=[\s:])({snap})/", rf"{rel}/\1/", line)
    return re.sub(rf"(?<![\w/.-])/({'|'.join(TOP_DIRS)})\b", rf"{root}/\1", line)


def _tree(root: Path) -> None:
    """A small /home and /etc, the README's /etc/repofs/passphrase and mount point."""
    alice = root / "home" / "alice"
    (alice / "docs").mkdir(parents=True)
    (alice / "docs" / "notes.txt").write_text("notes\n")
    (alice / "scratch.tmp").write_text("excluded by --exclude '*.tmp'\n")
    (alice / ".cache").mkdir()
    (alice / ".cache" / "CACHEDIR.TAG").write_text(
        "Signature: 8a477f597d28d172789f06886806bc55\n")
    (alice / ".cache" / "big").write_bytes(b"cached" * 1000)
    (root / "etc" / "repofs").mkdir(parents=True)
    (root / "etc" / "fstab").write_text("/dev/sda1 / ext4 defaults 0 1\n")
    (root / "etc" / "hostname").write_text("testhost\n")
    (root / "etc" / "repofs" / "passphrase").write_text("readme passphrase\n")
    os.chmod(root / "etc" / "repofs" / "passphrase", 0o600)
    (root / "srv" / "backup").mkdir(parents=True)
    (root / "mnt" / "backup").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "admin-passphrase").write_text("readme admin passphrase\n")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    pg_dump = bin_dir / "pg_dump"
    pg_dump.write_text("#!/bin/sh\n# a stand-in for pg_dump: SQL on standard output\n"
                       'echo "-- dump of $1"\necho "CREATE TABLE t (id int);"\n')
    pg_dump.chmod(0o755)


def test_readme_use_block_runs_as_written_in_order(tmp_path: Path) -> None:
    lines = readme_use_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert any(ln.startswith("repofs init") for ln in lines)
    gone = set(EXPECTED) - {without_comment(ln) for ln in lines}
    assert not gone, f"EXPECTED names lines the README no longer has: {gone}"
    root = tmp_path / "root"
    _tree(root)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPOFS_")}
    env.update(
        PATH=f"{root / 'bin'}:{Path(REPOFS).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        REPOFS_NO_PROGRESS="1", XDG_CACHE_HOME=str(tmp_path / "cache"),
        XDG_STATE_HOME=str(tmp_path / "state"), LC_ALL="C.UTF-8",
        REPOFS_ADMIN_PASSPHRASE_FILE=str(root / "admin-passphrase"),
        REPOFS_NEW_PASSPHRASE="readme write-only key passphrase",
    )
    mounted = root / "mnt" / "backup"
    try:
        for line in lines:
            command = relocate(line, root)
            export = re.match(r"export (\w+)=(\S+)", command)
            if export:
                env[export.group(1)] = shlex.split(export.group(2))[0]
                continue
            p = subprocess.run(["bash", "-c", command], cwd=work, env=env, input=b"",
                               capture_output=True, timeout=300)
            err = p.stderr.decode("utf-8", "replace")
            no_traceback(err)
            want, why = EXPECTED.get(without_comment(line), (0, ""))
            said = (f"README line: {line}\nran: {command}\nrc={p.returncode} (expected "
                    f"{want} {why})\nstdout={p.stdout[:2000]!r}\nstderr={err}")
            assert p.returncode == want, said
            assert why in err, said  # an expected failure fails for its known reason
    finally:
        if os.path.ismount(mounted):
            subprocess.run(["fusermount3", "-u", "-z", mounted], check=False)
    snapshots = subprocess.run([REPOFS, "snapshots", "--json"], env=env, check=True,
                               capture_output=True).stdout
    assert snapshots.strip(), "the README's backups left no snapshot"


@pytest.mark.parametrize(("line", "moved"), [
    ("repofs create /home /etc --exclude '*.tmp'", "repofs create R/home R/etc --exclude '*.tmp'"),
    ("repofs ls -l latest home/alice      # x", "repofs ls -l latest r/home/alice      # x"),
    ("repofs restore latest:home/alice --target /tmp/alice",
     "repofs restore latest:r/home/alice --target R/tmp/alice"),
    ("repofs dump latest etc/fstab > fstab", "repofs dump latest r/etc/fstab > fstab"),
    ("export REPOFS_REPO=/srv/backup/repo", "export REPOFS_REPO=R/srv/backup/repo"),
    ("repofs mount /mnt/backup  # every snapshot", "repofs mount R/mnt/backup  # every snapshot"),
])
def test_relocate_moves_only_the_readme_paths(line: str, moved: str) -> None:
    root = Path("/scratch/t")
    assert relocate(line, root) == moved.replace("R/", "/scratch/t/").replace("r/", "scratch/t/")
