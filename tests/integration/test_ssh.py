"""ssh:// end to end: a real sshd on a loopback port, the client's key bound to the forced
command ``repofs serve --restrict-to-path DIR`` in authorized_keys, and the real ``ssh``.

init, create, snapshots, ls, dump, restore, check and mount run through ssh://; then a
compromised client uses the same key for what the server must refuse: other commands,
other paths, and requests that would delete, rename or overwrite. Afterwards every
snapshot still restores byte for byte.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from repofs import protocol, spec

from ..attacks.wire import Wire, refused
from .harness import REPOFS, Cli, Result, assert_same_tree

SSHD = "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(not (Path(SSHD).exists() and shutil.which("ssh")),
                                reason="needs openssh-server and openssh-client")


@dataclass
class Server:
    base: Path
    port: int
    key: Path
    restrict: Path

    @property
    def ssh_options(self) -> str:
        return (f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                f"-o BatchMode=yes -o LogLevel=ERROR -i {self.key} -p {self.port}")

    def url(self, path: Path | str) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{path}"

    def ssh(self, command: str) -> list[str]:
        return ["ssh", *shlex.split(self.ssh_options), "root@127.0.0.1", command]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    assert os.geteuid() == 0, "sshd needs root here"
    base = Path(tempfile.mkdtemp(prefix="repofs-ssh-", dir="/dev/shm"))
    os.chmod(base, 0o755)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)],
                       check=True)
    restrict = base / "srv" / "web1"
    restrict.mkdir(parents=True)
    pub = (base / "client_key.pub").read_text().strip()
    (base / "authorized_keys").write_text(
        f'command="{REPOFS} serve --restrict-to-path {restrict}",restrict {pub}\n')
    port = free_port()
    (base / "sshd_config").write_text(f"""
Port {port}
ListenAddress 127.0.0.1
HostKey {base}/host_key
AuthorizedKeysFile {base}/authorized_keys
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin forced-commands-only
LogLevel ERROR
""")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(base / "sshd_config")],
                            stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if proc.poll() is not None:  # e.g. the port was taken meanwhile
                break
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        if proc.poll() is not None:
            pytest.fail(f"sshd did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield Server(base, port, base / "client_key", restrict)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


class SshCli(Cli):
    def __init__(self, server: Server, path: Path | str) -> None:
        super().__init__(Path("/unused"), server.base / "cache")
        self.server, self.url = server, server.url(path)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return super().env({"REPOFS_SSH": self.server.ssh_options, **(extra or {})})

    def run(self, command: str, *args, **kw) -> Result:  # type: ignore[override]
        kw.setdefault("repo", self.url)
        return super().run(command, *args, **kw)


@pytest.fixture(scope="module")
def backed_up(server: Server) -> tuple[SshCli, list[str], list[Path], Path]:
    cli = SshCli(server, server.restrict)
    r = cli.init()
    assert server.url(server.restrict) in r.text
    src = server.base / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"one\n")
    (src / "sub" / "big.bin").write_bytes(os.urandom(3 << 20))
    os.symlink("a.txt", src / "link")
    snaps, expected = [], []
    for gen in (1, 2):
        if gen == 2:
            (src / "a.txt").write_bytes(b"two\n")
        snaps.append(cli.create(src, "--tag", f"gen{gen}")["snapshot"])
        keep = server.base / f"expected{gen}"
        subprocess.run(["cp", "-a", str(src), str(keep)], check=True)
        expected.append(keep)
    return cli, snaps, expected, src


def restore_all(cli: SshCli, snaps: list[str], expected: list[Path], src: Path,
                where: Path) -> None:
    for snap, want in zip(snaps, expected, strict=True):
        target = where / snap[:8]
        cli.run("restore", snap, "--target", target)
        assert_same_tree(want, target / os.path.relpath(src, "/"))


def test_backup_cycle_over_ssh(server: Server, backed_up) -> None:
    cli, snaps, expected, src = backed_up
    listed = cli.snapshots()
    assert [s["id"] for s in listed] == snaps and listed[1]["prev"] == [snaps[0]]
    assert cli.run("ls", "latest", src / "a.txt").text.strip() == f"{src}/a.txt"
    assert cli.run("dump", snaps[0], src / "a.txt").out == b"one\n"
    restore_all(cli, snaps, expected, src, server.base / "restore-1")
    r = cli.run("check", "--read-data")
    assert r.text.splitlines()[-1].startswith("no problems found"), r


@pytest.mark.skipif(not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None,
                    reason="needs /dev/fuse and fusermount3")
def test_mount_over_ssh(server: Server, backed_up) -> None:
    cli, snaps, expected, src = backed_up
    mnt = server.base / "mnt"
    mnt.mkdir()
    try:
        cli.run("mount", "--snapshot", snaps[1], "--log-file", server.base / "mount.log", mnt)
        assert_same_tree(expected[1], mnt / os.path.relpath(src, "/"))
        time.sleep(0.5)  # the client that started the daemon has exited: the link stays up
        assert (mnt / os.path.relpath(src, "/") / "sub" / "big.bin").read_bytes() == \
            (expected[1] / "sub" / "big.bin").read_bytes()
    finally:
        subprocess.run([REPOFS, "umount", str(mnt)], capture_output=True, check=False)
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, check=False)


def test_the_key_can_do_nothing_else(server: Server, backed_up) -> None:
    cli, snaps, expected, src = backed_up
    before = {p: p.read_bytes() for p in server.restrict.rglob("*") if p.is_file()}
    for command in ("rm -rf /", f"cat {server.restrict}/config", "sh"):
        p = subprocess.run(server.ssh(command), capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "may only run 'repofs serve'" in p.stderr, p
    for path in ("/etc", f"{server.restrict}/../..", f"{server.base}/src"):
        r = cli.run("snapshots", repo=server.url(path), expect=2)
        assert len(r.err_lines) == 1 and "refused by the server" in r.err, r
    w = Wire(server.restrict, argv=server.ssh(f"repofs serve {server.restrict}"))
    assert w.hello()["repository"] is True
    snap_file = server.restrict / spec.NS_SNAPSHOTS / snaps[0]
    for verb in ("delete", "rename", "truncate", "chmod", "lock"):
        refused(w.ask({"op": verb, "ns": spec.NS_SNAPSHOTS, "name": snaps[0]}),
                protocol.E_UNKNOWN_OP)
    refused(w.ask({"op": "put", "ns": spec.NS_SNAPSHOTS, "name": snaps[0], "size": 4,
                   "data": b"gone"}), protocol.E_NAME_MISMATCH)
    refused(w.ask({"op": "put", "ns": "..", "name": snaps[0], "size": 1, "data": b"x"}),
            protocol.E_BAD_NAMESPACE)
    refused(w.ask({"op": "get", "ns": spec.NS_SNAPSHOTS, "name": "../config", "offset": 0,
                   "length": 1}), protocol.E_BAD_NAME)
    w.raw(b"\xff\xff\xff\xff")
    refused(w.recv(), protocol.E_TOO_LARGE)
    assert w.finish()[0] != 0
    assert {p: p.read_bytes() for p in server.restrict.rglob("*") if p.is_file()} == before
    assert snap_file.exists()
    restore_all(cli, snaps, expected, src, server.base / "restore-2")
