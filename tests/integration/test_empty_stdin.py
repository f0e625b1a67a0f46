"""A backup of standard input that read nothing (the command before the pipe failed) is
never silent: create exits 1 with a warning, the snapshot is tagged empty-stdin, and
forget's keep rules do not count it, so the last good dump stays."""

from __future__ import annotations

from pathlib import Path

from repofs.retention import EMPTY_STDIN_TAG
from tests.integration.harness import Cli

ADMIN = {"REPOFS_ADMIN_PASSPHRASE": "the admin key"}


def test_an_empty_stdin_backup_warns_and_is_not_counted(shm_dir: Path) -> None:
    cli = Cli(shm_dir / "repo", shm_dir / "cache")
    cli.run("init", env=ADMIN)
    good = cli.create("--stdin-name", "db.sql", input=b"CREATE TABLE t;\n")
    assert cli.run("create", "--stdin-name", "db.sql", input=b"", expect=1).err_lines == [
        f"repofs: warning: /db.sql: standard input was empty; the snapshot is tagged "
        f"{EMPTY_STDIN_TAG} and forget's --keep rules never count it"]
    empty = cli.snapshots()[-1]
    assert empty["tags"] == [EMPTY_STDIN_TAG] and empty["stats"]["bytes_total"] == 0
    plan = cli.run("forget", "--keep-last", "1", "--dry-run", "--json", env=ADMIN).json()
    verdicts = {v["id"]: v for g in plan["groups"] for v in g["snapshots"]}
    assert verdicts[good["snapshot"]]["keep"] is True  # the last good dump stays
    assert verdicts[empty["id"]]["keep"] is False
    assert verdicts[empty["id"]]["reasons"] == ["empty standard input, not counted"]
    # a command whose empty output is its success is judged by its exit status alone
    cli.create("--stdin-name", "db.sql", "--stdin-from-command", "--", "true")
    assert cli.snapshots()[-1]["tags"] == []
