"""The audit log: every security-relevant command leaves one syslog record, and no secret.

A tiny syslog receiver (a unix datagram socket on tmpfs, read by a thread) stands in
for /dev/log; ``REPOFS_AUDIT_SOCKET`` points the real CLI at it. The records are then
checked the way an administrator would read them: the right event, the repository id
and key id that opened it, and nothing that looks like key material or the passphrase.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from repofs import audit

from .harness import PASSPHRASE, REPOFS, make_cli, write_random

HEADER = re.compile(r"<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d repofs-audit\[(\d+)\]: (.*)\Z")
AUTHPRIV_NOTICE = 10 * 8 + 5
AUTHPRIV_WARNING = 10 * 8 + 4


class Receiver:
    """A syslog daemon in miniature: keeps every datagram sent to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.datagrams: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.datagrams.append(self.sock.recv(65536))
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()

    def records(self) -> list[tuple[int, int, str]]:
        """(priority, pid, message) of every datagram, after letting stragglers arrive."""
        time.sleep(0.3)
        out = []
        for d in self.datagrams:
            m = HEADER.match(d.decode("ascii"))
            assert m, d
            out.append((int(m[1]), int(m[2]), m[3]))
        return out

    def events(self, name: str) -> list[dict[str, str]]:
        return [parse(msg) for _, _, msg in self.records() if msg.startswith(f"event={name} ")]


def parse(message: str) -> dict[str, str]:
    """``key=value`` pairs of one message; quoted values are JSON strings."""
    fields: dict[str, str] = {}
    for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\[[^\]]*\]|\S+)', message):
        value = m[2]
        fields[m[1]] = json.loads(value) if value.startswith('"') else value
    return fields


@pytest.fixture(scope="module")
def receiver(shm_module_dir: Path) -> Iterator[Receiver]:
    r = Receiver(shm_module_dir / "audit.sock")
    yield r
    r.close()


@pytest.fixture(scope="module")
def session(shm_module_dir: Path, receiver: Receiver) -> dict:
    """init, create, snapshots, ls, dump and restore, all logged to ``receiver``."""
    env = {audit.ENV_SOCKET: str(receiver.path)}
    cli = make_cli(shm_module_dir, init=False)
    init = cli.run("init", "--json", env=env).json()
    src = shm_module_dir / "src"
    (src / "docs").mkdir(parents=True)
    write_random(src / "docs" / "a.bin", 300_000)
    (src / "notes.txt").write_text("audit me\n")
    snap = cli.create(src, "--tag", "audit", env=env)
    cli.run("snapshots", env=env)
    cli.run("ls", "latest", env=env)
    dumped = cli.run("dump", "latest", str(src / "notes.txt"), env=env)
    assert dumped.out == b"audit me\n"
    target = shm_module_dir / "restored"
    cli.run("restore", "latest", "--target", target, env=env)
    return {"cli": cli, "env": env, "repo_id": init["id"], "key_id": init["key"],
            "snapshot": snap["snapshot"], "src": src, "target": target}


def _check_opened(e: dict[str, str], s: dict) -> None:
    assert e["repo"] == s["repo_id"]
    assert e["key"] == s["key_id"]
    assert e["path"] == str(s["cli"].repo)
    assert e["uid"] == str(os.getuid())


def test_init_create_and_reads_are_recorded(session: dict, receiver: Receiver) -> None:
    (init,) = receiver.events("init")
    _check_opened(init, session)
    (create,) = receiver.events("create")
    _check_opened(create, session)
    assert create["snapshot"] == session["snapshot"]
    assert create["paths"] == f'["{session["src"]}"]'
    assert create["tags"] == '["audit"]'
    assert create["files"] == "2"
    for name in ("snapshots", "ls", "dump"):
        (e,) = receiver.events(name)
        _check_opened(e, session)
    assert receiver.events("dump")[0]["source"] == str(session["src"] / "notes.txt")


def test_restore_is_recorded(session: dict, receiver: Receiver) -> None:
    (e,) = receiver.events("restore")
    _check_opened(e, session)
    assert e["snapshot"] == session["snapshot"]
    assert e["source"] == "/"
    assert e["target"] == str(session["target"])
    assert e["files"] == "2"
    assert int(e["bytes"]) == 300_000 + len("audit me\n")
    assert e["warnings"] == "0"


@pytest.mark.skipif(not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None,
                    reason="needs /dev/fuse and fusermount3")
def test_mount_and_umount_are_recorded(session: dict, receiver: Receiver,
                                       shm_module_dir: Path) -> None:
    mnt = shm_module_dir / "mnt"
    mnt.mkdir()
    cli = session["cli"]
    try:
        cli.run("mount", mnt, env=session["env"])
        assert (mnt / "snapshots").is_dir()
    finally:
        r = subprocess.run([REPOFS, "umount", str(mnt)], capture_output=True,
                           env=cli.env(session["env"]), check=False)
        if r.returncode != 0:
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, check=False)
    assert r.returncode == 0, r.stderr
    (e,) = receiver.events("mount")
    _check_opened(e, session)
    assert e["mountpoint"] == str(mnt)
    assert e["snapshot"] == "-"
    assert e["allow_other"] == "no"
    assert e["foreground"] == "no"
    (u,) = receiver.events("umount")
    assert u["mountpoint"] == str(mnt)


def test_records_are_authpriv_notice_from_the_cli_process(session: dict,
                                                          receiver: Receiver) -> None:
    records = receiver.records()
    assert len(records) >= 6
    for priority, pid, _ in records:
        assert priority == AUTHPRIV_NOTICE
        assert pid != os.getpid()  # sent by the repofs process, not by this test


def test_no_passphrase_and_no_key_material(session: dict, receiver: Receiver) -> None:
    """Only public identifiers: every long hex string is the repository, key or snapshot id."""
    text = b"\n".join(receiver.datagrams)
    assert PASSPHRASE.encode() not in text
    known = {session["repo_id"], session["key_id"], session["snapshot"]}
    for token in re.findall(rb"[0-9a-fA-F]{16,}", text):
        assert token.decode() in known, token
    key_files = list((session["cli"].repo / "keys").iterdir())
    assert key_files
    for f in key_files:
        data = f.read_bytes()
        assert data.hex().encode() not in text
        for i in range(0, len(data) - 8, 8):  # no 8-byte window of a key file, raw
            assert data[i:i + 8] not in text


def test_failed_commands_leave_no_success_record(session: dict, receiver: Receiver) -> None:
    before = len(receiver.records())
    cli = session["cli"]
    cli.run("restore", "latest", "--target", session["target"] / "x", expect=2,
            env={**session["env"], "REPOFS_PASSPHRASE": "wrong"})
    assert len(receiver.records()) == before


# -- the module itself ---------------------------------------------------------------------
def test_values_are_one_escaped_line() -> None:
    line = audit.format_line("restore", {"target": "/tmp/evil\nevent=forged \x1b[31m",
                                          "files": 3, "ok": True, "name": None,
                                          "tags": ["a b", "c"], "where": Path("/x y")})
    assert "\n" not in line and "\x1b" not in line
    fields = parse(line)
    assert fields["event"] == "restore"
    assert fields["target"] == "/tmp/evil\nevent=forged \x1b[31m"
    assert (fields["files"], fields["ok"], fields["name"]) == ("3", "yes", "-")
    assert fields["tags"] == '["a b","c"]'
    assert fields["where"] == "/x y"
    assert line.count("event=") == 2 and line.startswith("event=restore ")


def test_secrets_cannot_be_passed() -> None:
    with pytest.raises(TypeError):
        audit.format_line("open", {"key": b"\x00" * 32})
    with pytest.raises(TypeError):
        audit.format_line("open", {"ids": [b"\x00"]})  # type: ignore[list-item]
    for name in ("passphrase", "master_password", "secret", "token_x"):
        with pytest.raises(ValueError):
            audit.format_line("open", {name: "x"})
    with pytest.raises(ValueError):
        audit.format_line("Bad Name", {})


def test_long_records_are_truncated() -> None:
    line = audit.format_line("create", {"paths": ["/p" * 1000] * 10})
    assert len(line) <= 4000 and line.endswith(" [truncated]")


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch, shm_dir: Path) -> None:
    monkeypatch.setenv(audit.ENV_SOCKET, str(shm_dir / "nobody-listens"))
    audit.event("restore", repo="r")
    audit.refusal("serve", "append-only", op="delete")


def test_refusal_is_a_warning(monkeypatch: pytest.MonkeyPatch, shm_dir: Path) -> None:
    r = Receiver(shm_dir / "refusal.sock")
    try:
        monkeypatch.setenv(audit.ENV_SOCKET, str(r.path))
        audit.refusal("serve", "append-only namespace", op="delete", object="data/ab")
        ((priority, pid, msg),) = r.records()
    finally:
        r.close()
    assert (priority, pid) == (AUTHPRIV_WARNING, os.getpid())
    f = parse(msg)
    assert (f["event"], f["outcome"], f["reason"], f["op"]) == (
        "serve", "refused", "append-only namespace", "delete")


def _has_command(name: str) -> bool:
    out = subprocess.run([REPOFS, "--help"], capture_output=True, text=True, check=False).stdout
    return any(line.split()[:1] == [name] for line in out.split("Commands:")[-1].splitlines())


@pytest.mark.skipif(not _has_command("key"), reason="no 'repofs key' command yet")
def test_key_changes_are_recorded_without_passphrases(shm_dir: Path) -> None:
    r = Receiver(shm_dir / "keys.sock")
    try:
        env = {audit.ENV_SOCKET: str(r.path)}
        cli = make_cli(shm_dir, "keyrepo", init=False)
        init = cli.run("init", "--json", env=env).json()
        new = "a brand new passphrase for the audit test"

        def key(sub: str, extra: dict[str, str] | None = None) -> dict:
            p = subprocess.run([REPOFS, "key", sub, "-r", str(cli.repo), "--json"],
                               capture_output=True, env=cli.env({**env, **(extra or {})}),
                               check=False)
            assert p.returncode == 0, p.stderr
            return json.loads(p.stdout) if sub != "list" else {}

        added = key("add", {"REPOFS_NEW_PASSPHRASE": new})
        changed = key("passwd", {"REPOFS_NEW_PASSPHRASE": new + " 2"})
        key("list")
        (add,) = r.events("key-add")
        (passwd,) = r.events("key-passwd")
        assert len(r.events("key-list")) == 1
        text = b"\n".join(r.datagrams)
    finally:
        r.close()
    for e in (add, passwd):
        assert (e["repo"], e["key"]) == (init["id"], init["key"])
    assert add["new_key"] == added["key"]
    assert passwd["new_key"] == changed["key"]
    assert new.encode() not in text and PASSPHRASE.encode() not in text
    known = {init["id"], init["key"], added["key"], changed["key"]}
    for token in re.findall(rb"[0-9a-fA-F]{16,}", text):
        assert token.decode() in known, token
