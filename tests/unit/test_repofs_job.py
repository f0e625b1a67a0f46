"""packaging/repofs-job: the job file becomes the right argument vectors and environments.

The admin passphrase reaches only init, forget and prune; keep rules become forget's
options; an ssh:// repository is never pruned from the client; unsafe or incomplete job
files are refused with one line. (The whole job under systemd: packaging/ci-test.sh.)
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "packaging" / "example.conf"


def _load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("repofs_job", str(ROOT / "packaging" /
                                                                    "repofs-job"))
    spec = importlib.util.spec_from_loader("repofs_job", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["repofs_job"] = module
    loader.exec_module(module)
    return module


job_mod = _load()


def _job(text: str) -> object:
    return job_mod.parse(Path("/etc/repofs/t.conf"), text)


def test_the_example_is_a_complete_job() -> None:
    job = _job(EXAMPLE.read_text())
    assert "/root" in job.lists["path"]
    assert job.has_admin
    assert job.keep_argv() == ["--keep-daily", "7", "--keep-weekly", "5",
                               "--keep-monthly", "12"]
    assert job.forget_argv()[1:] == ["forget", *job.keep_argv()]
    assert job.prune_argv() == [job_mod.REPOFS, "prune"]
    assert job.check_argv()[1:] == ["check", "--read-data-subset", "5%"]
    for action in ("create", "forget", "check", "init", "show"):
        job_mod._requirements(job, action)


def test_the_admin_passphrase_reaches_only_admin_commands() -> None:
    job = _job(EXAMPLE.read_text())
    assert "REPOFS_ADMIN_PASSPHRASE_FILE" not in job.env()
    assert job.env(admin=True)["REPOFS_ADMIN_PASSPHRASE_FILE"] == \
        "/etc/repofs/system.admin-passphrase"
    admin = {tuple(c[:2]): a for action in ("create", "forget", "check", "init")
             for c, a in job_mod._commands(job, action)}
    assert admin == {(job_mod.REPOFS, "create"): False, (job_mod.REPOFS, "forget"): True,
                     (job_mod.REPOFS, "prune"): True, (job_mod.REPOFS, "check"): False,
                     (job_mod.REPOFS, "init"): True}


def test_a_command_for_the_admin_passphrase() -> None:
    job = _job("repository = /r\npassphrase-file = /p\n"
               "admin-passphrase-command = /usr/bin/cat /etc/repofs/a\nkeep-last = 3\n")
    assert job.env(admin=True)["REPOFS_ADMIN_PASSCOMMAND"] == "/usr/bin/cat /etc/repofs/a"
    assert "REPOFS_ADMIN_PASSCOMMAND" not in job.env()


def test_an_ssh_repository_is_not_pruned_from_the_client() -> None:
    job = _job("repository = ssh://backup@store/srv/r\npassphrase-file = /p\n"
               "admin-passphrase-file = /a\nkeep-daily = 7\ncheck-read-data-subset = none\n")
    assert job.prune_argv() is None
    assert [c[1] for c, _ in job_mod._commands(job, "forget")] == ["forget"]
    assert job.check_argv() == [job_mod.REPOFS, "check"]


@pytest.mark.parametrize(("text", "action", "message"), [
    ("", "init", "admin-passphrase-file"),
    ("admin-passphrase-file = /a\n", "forget", "no keep-"),
    ("keep-daily = 7\n", "forget", "admin passphrase"),
    ("path = /etc\n", "create", None),
])
def test_what_each_action_needs(text: str, action: str, message: str | None) -> None:
    job = _job("repository = /r\npassphrase-file = /p\n" + text)
    if message is None:
        job_mod._requirements(job, action)
        return
    with pytest.raises(job_mod.ConfigError, match=message):
        job_mod._requirements(job, action)


@pytest.mark.parametrize(("line", "message"), [
    ("admin-passphrase = x", "unknown key"),
    ("admin-passphrase-file = relative", "absolute"),
    ("admin-passphrase-command = cat /a", "absolute program"),
    ("keep-daily = seven", "whole number"),
    ("check-read-data-subset = 0.5", "percentage"),
    ("keep-daily = 1\nkeep-daily = 2", "twice"),
])
def test_bad_settings_are_refused(line: str, message: str) -> None:
    with pytest.raises(job_mod.ConfigError, match=message):
        _job(f"repository = /r\npassphrase-file = /p\n{line}\n")


def test_both_admin_sources_are_refused() -> None:
    with pytest.raises(job_mod.ConfigError, match="not both"):
        _job("repository = /r\npassphrase-file = /p\nadmin-passphrase-file = /a\n"
             "admin-passphrase-command = /bin/cat /a\n")


def test_selection_settings_become_create_options() -> None:
    job = _job("repository = /srv/r\npassphrase-file = /etc/repofs/p\npath = /home\n"
               "exclude = *.o\niexclude = *.TMP\nexclude-if-present = .nobackup\n"
               "exclude-if-present = .nobak\nexclude-larger-than = 2G\nexclude-nodump = yes\n")
    argv = job.create_argv()  # type: ignore[attr-defined]
    assert argv[1:] == ["create", "--exclude", "*.o", "--iexclude", "*.TMP",
                        "--exclude-if-present", ".nobackup", "--exclude-if-present", ".nobak",
                        "--exclude-nodump", "--exclude-larger-than", "2G", "--", "/home"]
