"""``repofs mount`` end to end: real FUSE mounts through the real CLI.

The module backs up the metadata-rich tree of the round-trip tests plus two
small trees (permissions, history) and mounts the repository once; most tests
read that mount. Tests that kill, corrupt or add work on copies of their own.
Every mount made here is unmounted at the end (``fusermount3 -uz``) whatever
happens, so a failing test never leaves a mount behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import REPOFS, Cli, rsync_diff, under, write_random
from .test_cli_roundtrip import SPARSE_DATA, SPARSE_SIZE, build_tree

pytestmark = pytest.mark.skipif(
    not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None,
    reason="needs /dev/fuse and fusermount3")

VERSIONS = [{"f": b"v1", "g": b"same", "h": b"A"},
            {"f": b"v2", "g": b"same", "h": b"B"},
            {"f": b"v3", "g": b"same", "h": b"A", "new": b"n"}]


class StateCli(Cli):
    """A Cli with client state of its own (the heads it saw): a copy of a repository has the
    same id, and a snapshot added to the copy would look like a rollback of the original."""

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return super().env({"XDG_STATE_HOME": f"{self.cache}-state", **(extra or {})})


def state_cli(base: Path, name: str) -> StateCli:
    cli = StateCli(base / name, base / f"{name}-cache")
    cli.init()
    return cli


class Mounts:
    """Mount points made by the tests, all force-unmounted at the end."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def add(self, cli: Cli, mnt: Path, *args: str, repo: Path | None = None) -> Path:
        mnt.mkdir(exist_ok=True)
        self.points.append(mnt)
        cli.run("mount", *args, "--log-file", mnt.parent / f"{mnt.name}.log", mnt, repo=repo)
        assert os.path.ismount(mnt)  # the command returns only once the mount is ready
        return mnt

    def cleanup(self) -> None:
        for p in self.points:
            subprocess.run(["fusermount3", "-uz", str(p)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def mounts() -> Iterator[Mounts]:
    m = Mounts()
    try:
        yield m
    finally:
        m.cleanup()


def umount(mnt: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([REPOFS, "umount", str(mnt)], capture_output=True, check=False)


def snapshot_dirs(mnt: Path) -> list[str]:
    return sorted(n for n in os.listdir(mnt / "snapshots") if n != "latest")


@pytest.fixture(scope="module")
def env(shm_module_dir: Path, mounts: Mounts) -> dict:
    base = shm_module_dir
    base.chmod(0o755)  # other users must reach the mount and the stored tree
    src, perm, hist = base / "src", base / "perm", base / "hist"
    build_tree(src)
    perm.mkdir(mode=0o755)
    (perm / "public").write_bytes(b"everyone may read this\n")
    (perm / "rootonly").write_bytes(b"root only\n")
    (perm / "public").chmod(0o644)
    (perm / "rootonly").chmod(0o600)
    # ACLs the kernel must apply, not just the mode bits: one grants what the mode does
    # not, the other denies the owning group what the mode's group bits (the mask) show
    (perm / "acl-granted").write_bytes(b"granted by an ACL\n")
    (perm / "acl-granted").chmod(0o600)
    subprocess.run(["setfacl", "-m", "u:65534:r", str(perm / "acl-granted")], check=True)
    (perm / "acl-denied").write_bytes(b"denied by an ACL\n")
    os.chown(perm / "acl-denied", 0, 65534)
    subprocess.run(["setfacl", "-m", "g::-,m::rw,o::-", str(perm / "acl-denied")], check=True)
    cli = state_cli(base, "repo")
    ids = []
    for i, files in enumerate(VERSIONS):
        hist.mkdir(exist_ok=True)
        for name, data in files.items():
            (hist / name).write_bytes(data)
        paths = (src, perm, hist) if i == 0 else (hist,)
        ids.append(cli.create(*paths)["snapshot"])
    mnt = mounts.add(cli, base / "mnt", "--allow-other")
    return {"base": base, "src": src, "perm": perm, "hist": hist, "cli": cli, "ids": ids,
            "mnt": mnt}


def in_snapshot(env: dict, index: int, path: Path) -> Path:
    return under(env["mnt"] / "ids" / env["ids"][index], path)


# -- what the mount shows --------------------------------------------------------------------
def test_rsync_sees_no_difference(env: dict) -> None:
    dst = in_snapshot(env, 0, env["src"])
    assert rsync_diff(env["src"], dst, "--exclude=/sock.sock") == ""


def test_hardlinks_sparse_files_and_times(env: dict) -> None:
    dst = in_snapshot(env, 0, env["src"])
    a, b, c = (os.stat(dst / p) for p in ("hard/a", "hard/b", "dir/hard_c"))
    assert a.st_ino == b.st_ino == c.st_ino and a.st_nlink == 3
    p1, p2 = os.stat(dst / "pair1"), os.stat(dst / "hard/pair2")
    assert p1.st_ino == p2.st_ino != a.st_ino and p1.st_nlink == 2
    sparse = os.stat(dst / "sparse.img")
    assert sparse.st_size == SPARSE_SIZE
    assert sparse.st_blocks * 512 <= sum(n for _, n in SPARSE_DATA) + 64 * 1024
    for rel in ("times_old", "times_ns", "times_future", "emptydir", "links/rel"):
        want, got = os.lstat(env["src"] / rel), os.lstat(dst / rel)
        assert (got.st_mtime_ns, got.st_mode) == (want.st_mtime_ns, want.st_mode), rel
    assert os.statvfs(env["mnt"]).f_namemax == 255


def test_layout_ids_snapshots_hosts(env: dict) -> None:
    mnt = env["mnt"]
    assert sorted(os.listdir(mnt)) == ["history", "hosts", "ids", "snapshots", "tags"]
    assert sorted(os.listdir(mnt / "ids")) == sorted(env["ids"])
    names = snapshot_dirs(mnt)
    assert len(names) == 3
    assert os.readlink(mnt / "snapshots" / "latest") == names[-1]
    assert os.listdir(mnt / "snapshots" / "latest" / env["hist"].relative_to("/")) != []
    (host,) = os.listdir(mnt / "hosts")
    assert sorted(os.listdir(mnt / "hosts" / host)) == names
    by_time, by_id = mnt / "snapshots" / names[0], mnt / "ids" / env["ids"][0]
    assert os.listdir(by_time) == os.listdir(by_id)


def test_every_write_gives_erofs(env: dict) -> None:
    root = in_snapshot(env, 0, env["src"])
    f, d = root / "hello.txt", root / "dir"
    attempts: dict[str, Callable[[], object]] = {
        "open O_WRONLY": lambda: os.open(f, os.O_WRONLY),
        "open O_RDWR": lambda: os.open(f, os.O_RDWR),
        "open O_TRUNC": lambda: os.open(f, os.O_RDONLY | os.O_TRUNC),
        "open O_APPEND": lambda: os.open(f, os.O_WRONLY | os.O_APPEND),
        "create": lambda: os.open(d / "new", os.O_WRONLY | os.O_CREAT, 0o644),
        "mkdir": lambda: os.mkdir(d / "newdir"),
        "mkdir in layout": lambda: os.mkdir(env["mnt"] / "ids" / "x"),
        "rmdir": lambda: os.rmdir(root / "emptydir"),
        "unlink": lambda: os.unlink(f),
        "rename": lambda: os.rename(f, d / "moved"),
        "link": lambda: os.link(f, d / "hardlink"),
        "symlink": lambda: os.symlink("target", d / "symlink"),
        "mknod": lambda: os.mknod(d / "fifo", stat.S_IFIFO | 0o600),
        "chmod": lambda: os.chmod(f, 0o600),
        "chown": lambda: os.chown(f, 1, 1),
        "utime": lambda: os.utime(f, ns=(0, 0)),
        "truncate": lambda: os.truncate(f, 0),
        "setxattr": lambda: os.setxattr(f, "user.new", b"1"),
        "removexattr": lambda: os.removexattr(root / "xattr" / "file", "user.text"),
        "set ACL": lambda: os.setxattr(root / "acl" / "file", "system.posix_acl_access",
                                        os.getxattr(root / "acl" / "file",
                                                    "system.posix_acl_access")),
    }
    for what, attempt in attempts.items():
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno == errno.EROFS, what
    assert (root / "hello.txt").read_bytes() == b"hello, world\n"


def test_other_users_read_only_what_owner_mode_and_acls_allow(env: dict) -> None:
    perm = in_snapshot(env, 0, env["perm"])

    def cat_as_nobody(path: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "cat", str(path)], capture_output=True, check=False)

    public = cat_as_nobody(perm / "public")
    assert public.returncode == 0 and public.stdout == b"everyone may read this\n"
    private = cat_as_nobody(perm / "rootonly")
    assert private.returncode != 0 and private.stdout == b""
    assert b"Permission denied" in private.stderr
    assert (perm / "rootonly").read_bytes() == b"root only\n"  # root still reads it
    assert stat.S_IMODE(os.stat(perm / "acl-granted").st_mode) == 0o640  # mask r
    assert cat_as_nobody(perm / "acl-granted").stdout == b"granted by an ACL\n"
    assert stat.S_IMODE(os.stat(perm / "acl-denied").st_mode) & 0o060 == 0o060
    denied = cat_as_nobody(perm / "acl-denied")
    assert denied.returncode != 0 and b"Permission denied" in denied.stderr


def test_history_lists_exactly_the_distinct_versions(env: dict) -> None:
    mnt, rel = env["mnt"], env["hist"].relative_to("/")
    names = snapshot_dirs(mnt)
    hist = mnt / "history" / rel
    assert sorted(os.listdir(hist / "f")) == names  # changed in each snapshot
    assert [(hist / "f" / n).read_bytes() for n in names] == [b"v1", b"v2", b"v3"]
    assert sorted(os.listdir(hist / "g")) == names[:1]  # never changed
    assert sorted(os.listdir(hist / "h")) == names[:2]  # A, B, back to A
    assert sorted(os.listdir(hist / "new")) == names[2:]
    assert sorted(os.listdir(hist / ".versions")) == names  # the directory changed each time
    assert sorted(os.listdir(hist)) == [".versions", "f", "g", "h", "new"]


# -- failures: damaged data, killed daemon ---------------------------------------------------
def test_corrupted_pack_gives_eio_there_and_correct_data_elsewhere(env: dict,
                                                                    mounts: Mounts) -> None:
    base = env["base"]
    cli = state_cli(base, "damaged")
    src = base / "damaged-src"
    src.mkdir()
    write_random(src / "a.bin", 2 << 20)
    cli.create(src)
    packs_a = {p for p in (base / "damaged" / "data").rglob("*") if p.is_file()}
    write_random(src / "b.bin", 2 << 20)
    cli.create(src)
    pack = max(packs_a, key=lambda p: p.stat().st_size)  # the one holding a.bin's chunks
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x40
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    mnt = mounts.add(cli, base / "damaged-mnt")
    latest = under(mnt / "snapshots" / "latest", src)
    with pytest.raises(OSError) as e:
        (latest / "a.bin").read_bytes()
    assert e.value.errno == errno.EIO  # an error, never zeros
    assert (latest / "b.bin").read_bytes() == (src / "b.bin").read_bytes()
    log = (base / "damaged-mnt.log").read_text()
    assert f"pack {pack.name} is corrupt or tampered" in log and "a.bin" in log
    assert umount(mnt).returncode == 0


def _mount_pids(mnt: Path) -> dict[int, int]:
    """pid -> parent pid of the processes serving ``mnt``: the daemon and its decoders."""
    out = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if b"mount" in argv and os.fsencode(mnt) in argv:
                out[int(proc.name)] = ppid
    return out


def _daemon_pid(mnt: Path) -> int:
    pids = _mount_pids(mnt)
    daemons = [p for p, parent in pids.items() if parent not in pids]
    assert len(daemons) == 1, pids
    return daemons[0]


def _state(pid: int) -> str:
    try:
        return "(" + Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] + ")"
    except OSError:
        return "(gone)"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_new_snapshot_appears_memory_stays_bounded_kill_9_and_umount(
        env: dict, mounts: Mounts) -> None:
    base = env["base"]
    shutil.copytree(base / "repo", base / "copy")
    cli = StateCli(base / "copy", base / "copy-cache")
    mnt = mounts.add(cli, base / "copy-mnt")
    assert len(os.listdir(mnt / "ids")) == 3
    big = base / "big"
    big.mkdir()
    write_random(big / "data.bin", 256 << 20)
    for i in range(40):  # small files: fetched ahead by the decoders, forked before this
        (big / f"s{i:02}.txt").write_bytes(os.urandom(100 + i * 50))
    new = cli.create(big)["snapshot"]
    deadline = time.monotonic() + 15
    while new not in os.listdir(mnt / "ids"):  # no remount: listed again every few seconds
        assert time.monotonic() < deadline, "the new snapshot did not appear"
        time.sleep(0.5)
    pid = _daemon_pid(mnt)
    with open(under(mnt / "ids" / new, big) / "data.bin", "rb") as f, \
            open(big / "data.bin", "rb") as want:
        while block := f.read(1 << 20):
            assert block == want.read(len(block))
    # 256 MiB read through a 64 MiB chunk cache: memory does not follow what was read
    assert _rss_mib(pid) < 200, _rss_mib(pid)
    for i in range(40):
        name = f"s{i:02}.txt"
        assert (under(mnt / "ids" / new, big) / name).read_bytes() == (big / name).read_bytes()
    decoders = [p for p, parent in _mount_pids(mnt).items() if parent == pid]
    assert len(decoders) == 2
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() and "(Z)" not in _state(p) for p in decoders):
        assert time.monotonic() < deadline, "decoders outlived their daemon"
        time.sleep(0.1)
    with pytest.raises(OSError) as e:
        os.listdir(mnt)
    assert e.value.errno == errno.ENOTCONN
    r = umount(mnt)
    assert r.returncode == 0, r.stderr
    assert not os.path.ismount(mnt) and os.listdir(mnt) == []


def test_foreground_snapshot_mode_overrides_and_sigterm(env: dict, mounts: Mounts) -> None:
    mnt = env["base"] / "fg-mnt"
    mnt.mkdir()
    mounts.points.append(mnt)
    cli: Cli = env["cli"]
    argv = [REPOFS, "mount", "-r", str(cli.repo), "--foreground", "--snapshot", env["ids"][0],
            "--uid", "4242", "--gid", "4343", "--umask", "077", str(mnt)]
    p = subprocess.Popen(argv, env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the mount did not come up"
            time.sleep(0.1)
        assert os.listdir(mnt) == ["dev"]  # the snapshot's tree at the root
        st = os.stat(under(mnt, env["perm"]) / "public")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4242, 4343, 0o600)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        assert b"Traceback" not in err
        assert not os.path.ismount(mnt)
    finally:
        if p.poll() is None:
            p.kill()


def test_umount_refuses_what_is_not_a_repofs_mount(env: dict) -> None:
    r = umount(env["base"] / "perm")
    assert r.returncode == 2 and b"not mounted" in r.stderr
    r = umount(Path("/dev/shm"))
    assert r.returncode == 2 and b"not a repofs mount" in r.stderr
    assert os.path.ismount(env["mnt"])


def test_a_relative_repository_path_still_reads_after_the_daemon_leaves_the_cwd(
        env: dict, mounts: Mounts) -> None:
    # the daemon changes to /: a path relative to where mount ran must not be looked up there
    cli: Cli = env["cli"]
    mnt = env["base"] / "rel-mnt"
    mnt.mkdir()
    mounts.points.append(mnt)
    rel = os.path.relpath(cli.repo, env["base"])
    r = subprocess.run([REPOFS, "mount", "-r", rel, str(mnt)], env=cli.env(), cwd=env["base"],
                       capture_output=True, check=False)
    assert r.returncode == 0, r.stderr
    public = under(mnt / "ids" / env["ids"][0], env["perm"]) / "public"
    assert public.read_bytes() == b"everyone may read this\n"
    assert umount(mnt).returncode == 0


def test_tar_through_the_mount_reads_every_byte_as_stored(env: dict) -> None:
    # tar opens files in readdir order, depth first: the walk ahead fetches them and they
    # are handed to the page cache at open; what tar reads must still be the stored bytes
    tree = in_snapshot(env, 0, env["src"])
    out = subprocess.run(["tar", "-cf", "-", "--sort=none", "."], cwd=tree, capture_output=True,
                         check=True).stdout
    listing = subprocess.run(["tar", "-tvf", "-"], input=out, capture_output=True,
                             check=True).stdout
    assert listing
    mine = env["base"] / "tar-out"
    mine.mkdir()
    subprocess.run(["tar", "-xf", "-", "-C", str(mine)], input=out, check=True)
    for dirpath, _dirs, files in os.walk(env["src"]):
        for name in files:
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                assert (mine / p.relative_to(env["src"])).read_bytes() == p.read_bytes(), p


def test_a_root_mount_reads_ahead_a_mib_at_a_time(env: dict) -> None:
    # FUSE starts at 128 KiB; the daemon (root here) widens it once the mount is up
    dev = os.stat(env["mnt"]).st_dev
    path = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    deadline = time.monotonic() + 5
    while path.read_text().strip() != "1024":
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)
