"""A real one-node Ceph cluster with an S3 gateway (RGW), in a temporary directory.

Why real: the S3 behaviour repofs must survive (If-None-Match ignored in versioned and
object-lock buckets, lock headers dropped on multipart uploads, bucket policies) is the
server's, and no mock would have it. Debian 12's own packages (ceph-mon, ceph-osd,
radosgw, ceph-common) start in a few seconds with the settings below: memstore OSD,
pools of size 1 and 8 PGs, paxos proposals every 50 ms (radosgw creates its pools one by
one), cephx with one keyring, every path (run dir, logs, sockets, keyring, mon and osd
data) in ``base``. The
daemons write PID files there; ``stop`` ends them by those PIDs, nothing else.

Failure to start raises: the S3 tests then fail, they never skip.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")
ADMIN_KEYS = ("REPOFSADMINKEY0000001", "repofs-admin-secret-0000000000000000000001")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class User:
    uid: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """The standard environment variables that give a client these credentials."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


@dataclass
class Ceph:
    base: Path
    mon_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    daemons: list[str] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.base / "ceph.conf"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, *argv: str, timeout: float = 60) -> str:
        r = subprocess.run([*argv, "-c", str(self.conf)], capture_output=True, text=True,
                           timeout=timeout, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
        return r.stdout

    def _daemon(self, name: str, *argv: str) -> None:
        """Start a daemon (it forks itself); its output goes to a file, not to a pipe
        the forked child would hold open."""
        with open(self.base / "log" / f"{name}.out", "wb") as out:
            r = subprocess.run([*argv, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.STDOUT, timeout=60, check=False)
        self.daemons.append(name)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({r.returncode}): "
                               f"{(self.base / 'log' / f'{name}.out').read_text()[-2000:]}")

    def start(self) -> None:
        b = self.base
        for d in ("run", "log", "mon/ceph-a", "osd/ceph-0"):
            (b / d).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        self.conf.write_text(f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{self.mon_port}
ms bind ipv6 = false
ms bind ipv4 = true
public addr = 127.0.0.1
cluster addr = 127.0.0.1
run dir = {b}/run
admin socket = {b}/run/$cluster-$name.asok
log file = {b}/log/$cluster-$name.log
pid file = {b}/run/$cluster-$name.pid
mon data = {b}/mon/$cluster-$id
osd data = {b}/osd/$cluster-$id
keyring = {b}/keyring
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
paxos propose interval = 0.05
mon osd down out interval = 0
osd max object name len = 460
osd max object namespace len = 64
debug ms = 0
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{self.port} tcp_nodelay=1
rgw enable usage log = false
rgw lc debug interval = 10
rgw thread pool size = 64
rgw exit timeout secs = 1
""")
        self._run("monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]",
                  "--fsid", fsid, str(b / "monmap"))
        keyring = str(b / "keyring")
        self._run("ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.",
                  "--cap", "mon", "allow *")
        for name, caps in (("client.admin", ("mon", "allow *", "osd", "allow *")),
                           ("osd.0", ("mon", "allow profile osd", "osd", "allow *")),
                           ("client.rgw", ("mon", "allow rw", "osd", "allow rwx"))):
            self._run("ceph-authtool", keyring, "--gen-key", "-n", name,
                      *[w for i in range(0, len(caps), 2) for w in ("--cap", *caps[i:i + 2])])
        self._run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(b / "monmap"))
        self._daemon("mon.a", "ceph-mon", "-i", "a")
        osd = self._run("ceph", "osd", "create").strip()
        self._run("ceph-osd", "-i", osd, "--mkfs")
        self._daemon(f"osd.{osd}", "ceph-osd", "-i", osd)
        self._daemon("client.rgw", "radosgw", "-n", "client.rgw")
        self._wait_for_rgw()
        self.user("admin", ADMIN_KEYS, caps="user-policy=*;users=*;buckets=*")

    def _wait_for_rgw(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.endpoint, timeout=2):  # noqa: S310
                    return
            except OSError as e:
                if getattr(e, "code", None):  # an HTTP answer (403): the gateway is up
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"radosgw did not answer on {self.endpoint}: "
                                       f"{self.tail_log('client.rgw')}") from None
                time.sleep(0.1)

    def tail_log(self, name: str) -> str:
        try:
            return (self.base / "log" / f"ceph-{name}.log").read_text()[-2000:]
        except OSError:
            return "(no log)"

    def user(self, uid: str, keys: tuple[str, str] | None = None, caps: str = "") -> User:
        access, secret = keys or (f"K{uuid.uuid4().hex[:19].upper()}", uuid.uuid4().hex * 2)
        self._run("radosgw-admin", "user", "create", "--uid", uid, "--display-name", uid,
                  "--access-key", access, "--secret", secret)
        if caps:
            self._run("radosgw-admin", "caps", "add", "--uid", uid, "--caps", caps)
        return User(uid, access, secret)

    def admin(self) -> User:
        return User("admin", *ADMIN_KEYS)

    def info(self, uid: str) -> dict[str, object]:
        return dict(json.loads(self._run("radosgw-admin", "user", "info", "--uid", uid)))

    def stop(self) -> None:
        """End the daemons by the PIDs they wrote, gateway first, monitor last (a daemon
        whose monitor is gone hangs on its way out); kill one that has not exited after
        8 s (memstore has nothing to flush)."""
        for name in reversed(self.daemons):
            try:
                pid = int((self.base / "run" / f"ceph-{name}.pid").read_text().strip())
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue
            deadline = time.monotonic() + 8  # radosgw: 1 s (rgw exit timeout secs)
            while _alive(pid):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(0.02)
        self.daemons.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # our own child reaped? (daemons are not our children: they forked off)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
