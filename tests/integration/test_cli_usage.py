"""What a new user (or a script with an unset variable) meets at the command line: empty
paths refused, errors in one form, a failing passphrase command explained, interrupts
that take the source command along, counts that do not lie, and what init tells."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .harness import PASSPHRASE, REPOFS, Cli, make_cli

EMPTY = "an empty path is not allowed (an unset variable?)"


def test_an_empty_path_or_target_is_refused(shm_dir: Path) -> None:
    cli = make_cli(shm_dir)
    src = shm_dir / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f\n")
    os.chdir(src)  # an empty path would have meant this directory
    try:
        r = cli.run("create", "", expect=2)
        assert r.err_lines == [f"repofs: error: Invalid value for PATHS: {EMPTY} (see "
                               "'repofs create --help')"], r
        r = cli.run("create", str(src), "", expect=2)
        assert cli.snapshots() == []
        cli.run("create", str(src))
        r = cli.run("restore", "latest", "-t", "", expect=2)
        assert r.err_lines == [f"repofs: error: Invalid value for '-t' / '--target': {EMPTY} "
                               "(see 'repofs restore --help')"], r
        assert sorted(os.listdir(src)) == ["f"]
        r = cli.run("mount", "", expect=2)
        assert EMPTY in r.err
        # the words of a command may well be empty: they are no paths
        cli.run("create", "--stdin-name", "x", "--stdin-from-command", "--", "printf", "")
    finally:
        os.chdir("/")


def test_errors_have_one_form(shm_dir: Path) -> None:
    cli = make_cli(shm_dir)
    for argv, expected in [
        ([], "repofs: error: no command given (see 'repofs --help')"),
        (["key"], "repofs: error: no command given (see 'repofs key --help')"),
        (["nope"], "repofs: error: No such command 'nope'. (see 'repofs --help')"),
    ]:
        p = subprocess.run([REPOFS, *argv], capture_output=True, text=True, env=cli.env())
        assert (p.returncode, p.stderr.splitlines()) == (2, [expected]), p
    r = cli.run("ls", expect=2)
    assert r.err_lines == ["repofs: error: Missing argument 'SNAPSHOT'. (see 'repofs ls "
                           "--help')"], r
    r = cli.run("mount", "--log-file", shm_dir / "no" / "log", shm_dir, expect=2)
    assert r.err_lines == [f"repofs: error: Invalid value for --log-file: cannot open "
                           f"{shm_dir}/no/log: No such file or directory (see 'repofs "
                           "mount --help')"], r
    for spec in ("zstd,", "none,3"):
        r = cli.run("create", "--compression", spec, shm_dir, expect=2)
        assert r.err_lines[0].startswith(f"repofs: error: Invalid value for --compression: "
                                         f"bad --compression '{spec}'"), r


def test_a_failing_passphrase_command_says_why(shm_dir: Path) -> None:
    cli = make_cli(shm_dir)
    bare = Cli(cli.repo, cli.cache, passphrase=None)
    for command, said in [
        ("false", "REPOFS_PASSCOMMAND: 'false' exited with status 1"),
        ("/nonexistent/pass", "REPOFS_PASSCOMMAND: cannot run '/nonexistent/pass': No such "
                              "file or directory"),
        ("sh -c 'kill -TERM $$'", "REPOFS_PASSCOMMAND: 'sh' was killed by signal 15"),
        ("'unbalanced", "REPOFS_PASSCOMMAND cannot be parsed: No closing quotation"),
    ]:
        r = bare.run("snapshots", env={"REPOFS_PASSCOMMAND": command}, expect=2)
        assert r.err_lines == [f"repofs: error: {said}"], r
    r = bare.run("snapshots", env={"REPOFS_PASSCOMMAND": f"echo '{PASSPHRASE}'"})


def test_an_empty_passphrase_variable_is_an_empty_passphrase(shm_dir: Path) -> None:
    """Set but empty is an empty passphrase (repofs(1)), not unset: the passphrase file
    named too is not read instead."""
    good = shm_dir / "pass"
    good.write_text(PASSPHRASE + "\n")
    empty = Cli(shm_dir / "repo", shm_dir / "cache", passphrase="")
    r = empty.run("init", expect=2, env={"REPOFS_PASSPHRASE_FILE": str(good)})
    assert r.err_lines == ["repofs: error: an empty passphrase would protect nothing: "
                           "choose one"], r
    make_cli(shm_dir)
    r = empty.run("snapshots", expect=2, env={"REPOFS_PASSPHRASE_FILE": str(good)})
    assert "wrong passphrase" in r.err, r
    Cli(empty.repo, empty.cache, passphrase=None).run(
        "snapshots", env={"REPOFS_PASSPHRASE_FILE": str(good)})


def test_init_says_the_key_file_and_the_passphrase_are_both_needed(shm_dir: Path) -> None:
    cli = Cli(shm_dir / "repo", shm_dir / "cache")
    out = cli.init().text
    [key] = os.listdir(cli.repo / "keys")
    assert f"key file: {cli.repo}/keys/{key}\n" in out
    assert "both this key file and the passphrase" in out
    assert f"  cp {cli.repo}/keys/{key} " in out


def test_a_file_not_read_is_not_counted_as_backed_up(shm_dir: Path) -> None:
    cli = make_cli(shm_dir)
    src = shm_dir / "src"
    src.mkdir()
    (src / "ok").write_bytes(b"ok\n")
    (src / "secret").write_bytes(b"no\n")
    os.chmod(src / "secret", 0)
    r = cli.run("create", "--json", src, drop_dac=True, expect=1)
    stats = r.json()
    assert (stats["files"], stats["files_read"], stats["bytes_total"]) == (1, 1, 3), stats
    assert stats["warnings"] == [f"{src}/secret: not read: Permission denied"]
    r = cli.run("create", src, drop_dac=True, expect=1)
    assert "  files: 1 (" in r.text, r


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_create_takes_its_source_command_along(shm_dir: Path,
                                                              signum: int) -> None:
    cli = make_cli(shm_dir)
    pidfile = shm_dir / "pid"
    script = f"echo $$ > {pidfile}; printf 'some output'; exec sleep 600"
    p = subprocess.Popen([REPOFS, "create", "-r", str(cli.repo), "--stdin-name", "db",
                          "--stdin-from-command", "--", "sh", "-c", script],
                         env=cli.env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    child = int(pidfile.read_text())
    time.sleep(0.5)  # repofs is reading the command's output now
    p.send_signal(signum)
    _, err = p.communicate(timeout=30)
    assert (p.returncode, err.splitlines()[-1]) == (130, "repofs: interrupted"), err
    assert not Path(f"/proc/{child}").exists() or \
        Path(f"/proc/{child}/stat").read_text().split()[2] == "Z", "the command runs on"
    assert cli.snapshots() == []


def test_standard_output_closed_early_is_an_error(shm_dir: Path) -> None:
    """`repofs dump ... | head -c 1`: what was asked was not done, so exit 2 (click alone
    would make it 1, which a script reads as "done, with warnings")."""
    cli = make_cli(shm_dir)
    src = shm_dir / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(8 << 20))
    cli.run("create", str(src))
    p = subprocess.Popen([REPOFS, "dump", "-r", str(cli.repo), "latest",
                          str(src / "big").lstrip("/")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=cli.env())
    assert p.stdout is not None and p.stderr is not None
    assert p.stdout.read(1)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 2, err
    assert b"Traceback" not in err
