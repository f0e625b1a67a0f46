"""Round trip through the real CLI: every file type and metadata kind, and the commands around it.

The module builds one metadata-rich tree on tmpfs (as root), backs it up once as the
snapshot named ``main`` and restores it; most tests then read that snapshot. Tests
that need their own snapshots add them to the same repository under their own paths,
or use a repository of their own where the snapshot list matters.
"""

from __future__ import annotations

import io
import os
import random
import signal
import socket
import stat
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from .harness import (
    PASSPHRASE,
    REPOFS,
    Cli,
    assert_same_tree,
    du_bytes,
    file_digest,
    make_cli,
    no_traceback,
    rsync_diff,
    under,
    write_random,
)

MiB = 1 << 20
OLD_NS = -(86400 * 365 * 20) * 10**9 + 123_456_789  # 1950, with nanoseconds
NS_TIME = 1_234_567_890_123_456_789
FUTURE_NS = 4_102_444_800 * 10**9 + 999_999_999  # 2100
SPARSE_SIZE = 64 * MiB
SPARSE_DATA = [(8 * MiB, MiB), (40 * MiB, 4096)]
NAMES = [b"caf\xe9", b"caf\\xe9", b"\xff\xfe raw", b"with space", b"new\nline", b"tab\there",
         b"-dash", "ü-utf8 ✓".encode()]


def _setfacl(*args: str | Path) -> None:
    subprocess.run(["setfacl", *map(str, args)], check=True)


def build_tree(src: Path) -> None:
    """Every kind of entry and metadata repofs promises to keep."""
    b = os.fsencode(src)
    src.mkdir()
    (src / "empty.txt").write_bytes(b"")
    (src / "hello.txt").write_bytes(b"hello, world\n")
    write_random(src / "big.bin", 12 * MiB + 12345)
    (src / "compressible.txt").write_bytes(b"".join(b"line %08d of a dull file\n" % i
                                                    for i in range(80_000)))
    with open(src / "sparse.img", "wb") as f:
        for off, n in SPARSE_DATA:
            f.seek(off)
            f.write(os.urandom(n))
        f.truncate(SPARSE_SIZE)
    (src / "dir" / "sub" / "deep").mkdir(parents=True)
    (src / "dir" / "sub" / "deep" / "file").write_bytes(b"deep file\n")
    (src / "emptydir").mkdir()
    (src / "links").mkdir()
    os.symlink("../hello.txt", src / "links" / "rel")
    os.symlink("does/not/exist", src / "links" / "dangling")
    os.symlink("/etc/hostname", src / "links" / "abs")
    os.symlink("../dir", src / "links" / "dirlink")
    os.symlink(b"caf\xe9-target", b + b"/links/raw-target")
    # hardlinks: three names for one inode (across directories) and a pair
    (src / "hard").mkdir()
    (src / "hard" / "a").write_bytes(b"three names, one inode\n")
    os.link(src / "hard" / "a", src / "hard" / "b")
    os.link(src / "hard" / "a", src / "dir" / "hard_c")
    (src / "pair1").write_bytes(b"two names\n")
    os.link(src / "pair1", src / "hard" / "pair2")
    # devices, fifo, socket
    (src / "dev").mkdir()
    os.mknod(src / "dev" / "blk", stat.S_IFBLK | 0o640, os.makedev(8, 1))
    os.mknod(src / "dev" / "chr", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(src / "dev" / "fifo", 0o620)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(src / "sock.sock"))
    s.close()
    # owners, including ids without a passwd/group entry
    (src / "owners").mkdir()
    for name, uid, gid in [("nobody", 65534, 65534), ("u1000", 1000, 1000),
                           ("nopw", 123456, 654321), ("mixed", 0, 424243)]:
        (src / "owners" / name).write_bytes(name.encode())
        os.chown(src / "owners" / name, uid, gid)
    (src / "owners" / "dir_nopw").mkdir()
    os.chown(src / "owners" / "dir_nopw", 424242, 424243)
    os.symlink("nobody", src / "owners" / "link_nopw")
    os.lchown(src / "owners" / "link_nopw", 777, 888)
    # modes (after chown, which clears set-id bits)
    (src / "modes").mkdir()
    for name, mode in [("setuid", 0o4755), ("setgid", 0o2711), ("all", 0o7777),
                       ("none", 0o000), ("private", 0o600)]:
        (src / "modes" / name).write_bytes(name.encode())
        os.chown(src / "modes" / name, 1000, 1000)
        os.chmod(src / "modes" / name, mode)
    for name, mode in [("sticky_dir", 0o1777), ("setgid_dir", 0o2770), ("closed_dir", 0o000)]:
        (src / "modes" / name).mkdir()
        (src / "modes" / name / "inside").write_bytes(b"x")
        os.chmod(src / "modes" / name, mode)
    # xattrs and POSIX ACLs
    (src / "xattr").mkdir()
    (src / "xattr" / "file").write_bytes(b"xattrs\n")
    os.setxattr(src / "xattr" / "file", "user.text", b"value")
    os.setxattr(src / "xattr" / "file", "user.binary", bytes(range(256)))
    os.setxattr(src / "xattr" / "file", "user.empty", b"")
    os.setxattr(src / "xattr", "user.on_dir", b"dir value")
    (src / "acl").mkdir()
    (src / "acl" / "file").write_bytes(b"acl\n")
    _setfacl("-m", "u:1234:rw,g:4321:r,m::rw", src / "acl" / "file")
    (src / "acl" / "dir").mkdir()
    _setfacl("-m", "u:1234:rwx,g:4321:rx", src / "acl" / "dir")
    _setfacl("-d", "-m", "u:1234:rwx,g:4321:rx,o::-", src / "acl" / "dir")
    (src / "acl" / "dir" / "inherited").write_bytes(b"inherits the default ACL\n")
    (src / "acl" / "dir" / "subdir").mkdir()
    # names that are not UTF-8, or awkward
    (src / "names").mkdir()
    for n in NAMES:
        with open(b + b"/names/" + n, "wb") as f:
            f.write(n)
    os.mkdir(b + b"/names/dir-\xe9\xff")
    with open(b + b"/names/dir-\xe9\xff/inside \xfe", "wb") as f:
        f.write(b"x")
    # times last, deepest first, so creating children does not move them again
    special = {b"times_old": OLD_NS, b"times_ns": NS_TIME, b"times_future": FUTURE_NS}
    for n in special:
        with open(b + b"/" + n, "wb") as f:
            f.write(n)
    for dirpath, dirnames, filenames in os.walk(b, topdown=False):
        for n in filenames + dirnames:
            p = dirpath + b"/" + n
            t = special.get(n, 1_600_000_000_123_456_789 + len(p) * 1_000_003)
            os.utime(p, ns=(t, t), follow_symlinks=False)
    os.utime(b + b"/emptydir", ns=(OLD_NS, OLD_NS))
    with open(src / "holes-only.img", "wb") as f:
        f.truncate(32 * MiB)
    os.utime(src / "holes-only.img", ns=(NS_TIME, NS_TIME))
    os.utime(b, ns=(NS_TIME, NS_TIME))


@pytest.fixture(scope="module")
def env(shm_module_dir: Path) -> dict:
    src = shm_module_dir / "src"
    build_tree(src)
    cli = make_cli(shm_module_dir)
    created = cli.create(src, "--name", "main", "--tag", "roundtrip")
    restored = shm_module_dir / "restored"
    cli.run("restore", "--special", "main", "--target", restored)  # setuid files, devices
    return {"base": shm_module_dir, "src": src, "cli": cli, "created": created,
            "restored": restored}


def test_a_socket_is_counted_as_skipped_not_warned(env: dict) -> None:
    """A backup of /run or /var meets sockets every night: no restore could bring one
    back, so it is left out and counted, and create exits 0 (the fixture expects 0)."""
    created = env["created"]
    assert created["warnings"] == []
    assert created["skipped"] == {"sockets": 1, "larger_than": 0, "nodump": 0,
                                  "if_present": 0}
    types = {e["path"]: e["type"]
             for e in env["cli"].run("ls", "main", "--json").json_lines()}
    assert f"{env['src']}/sock.sock" not in types
    assert types[f"{env['src']}/dev/fifo"] == "fifo"  # FIFOs and devices are still stored


def test_rsync_sees_no_difference(env: dict) -> None:
    dst = under(env["restored"], env["src"])
    assert rsync_diff(env["src"], dst, "--exclude=/sock.sock") == ""


def test_every_stat_field_xattr_and_link_group_restored(env: dict) -> None:
    dst = under(env["restored"], env["src"])
    assert_same_tree(env["src"], dst, skip=[b"sock.sock"])
    # the absolute path above the source is there too, as directories
    assert (env["restored"] / "dev" / "shm").is_dir()


def test_hardlinks_restored_as_hardlinks(env: dict) -> None:
    dst = under(env["restored"], env["src"])
    a, b, c = (os.stat(dst / p) for p in ("hard/a", "hard/b", "dir/hard_c"))
    assert a.st_ino == b.st_ino == c.st_ino and a.st_nlink == 3
    p1, p2 = os.stat(dst / "pair1"), os.stat(dst / "hard/pair2")
    assert p1.st_ino == p2.st_ino != a.st_ino and p1.st_nlink == 2


def test_sparse_file_keeps_its_holes(env: dict) -> None:
    dst = under(env["restored"], env["src"]) / "sparse.img"
    st = os.stat(dst)
    assert st.st_size == SPARSE_SIZE
    data = sum(n for _, n in SPARSE_DATA)
    assert st.st_blocks * 512 <= data + 256 * 1024, st.st_blocks
    assert file_digest(dst) == file_digest(env["src"] / "sparse.img")
    holes = os.stat(dst.parent / "holes-only.img")
    assert holes.st_size == 32 * MiB and holes.st_blocks == 0


def test_acls_and_special_modes_restored(env: dict) -> None:
    dst = under(env["restored"], env["src"])
    for rel in ("acl/file", "acl/dir", "acl/dir/inherited", "acl/dir/subdir"):
        want = subprocess.run(["getfacl", "-cn", str(env["src"] / rel)], capture_output=True,
                              check=True).stdout
        got = subprocess.run(["getfacl", "-cn", str(dst / rel)], capture_output=True,
                             check=True).stdout
        assert want == got, rel
    default = subprocess.run(["getfacl", "-cdn", str(dst / "acl/dir")], capture_output=True,
                             check=True).stdout
    assert b"user:1234:rwx" in default
    assert stat.S_IMODE(os.lstat(dst / "modes/setuid").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(dst / "modes/all").st_mode) == 0o7777
    assert stat.S_IMODE(os.lstat(dst / "modes/sticky_dir").st_mode) == 0o1777
    assert os.lstat(dst / "times_old").st_mtime_ns == OLD_NS
    assert os.lstat(dst / "owners/nopw").st_uid == 123456


def test_ls_plain_long_and_json(env: dict) -> None:
    cli: Cli = env["cli"]
    src: Path = env["src"]
    plain = cli.run("ls", "main").text.splitlines()
    assert f"{src}/big.bin" in plain and f"{src}/dir/sub/deep/file" in plain
    assert "/dev" in plain  # parents of the source path are in the snapshot
    assert f"{src}/names/caf\\xe9" in plain

    entries = {e["path"]: e for e in cli.run("ls", "main", "--json").json_lines()}
    bsrc = os.fsencode(src)
    expected: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(bsrc):
        for n in dirnames + filenames:
            p = dirpath + b"/" + n
            if n != b"sock.sock":
                expected[os.fsdecode(p)] = p
    in_src = [e["path"] for e in cli.run("ls", "main", "--json").json_lines()
              if e["path"].startswith(f"{src}/")]
    # names that are not UTF-8 are surrogate-escaped: unambiguous, and os.fsencode gives
    # back the bytes (a name with a literal backslash must not look like one that is not)
    assert len(in_src) == len(set(in_src))
    assert set(in_src) == set(expected)
    for shown, raw in expected.items():
        st = os.lstat(raw)
        e = entries[shown]
        assert (e["mode"], e["uid"], e["gid"], e["mtime_ns"]) == (
            stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns), shown
        if stat.S_ISREG(st.st_mode):
            assert e["type"] == "file" and e["size"] == st.st_size, shown
    big = entries[f"{src}/big.bin"]
    assert big["size"] == 12 * MiB + 12345 and big["user"] == "root"
    assert entries[f"{src}/links/abs"]["target"] == "/etc/hostname"
    assert os.fsencode(entries[f"{src}/links/raw-target"]["target"]) == b"caf\xe9-target"
    assert entries[os.fsdecode(os.fsencode(src) + b"/names/caf\xe9")]["name"] == "caf\udce9"
    assert entries[f"{src}/dev/blk"]["type"] == "blockdev"
    assert entries[f"{src}/dev/blk"]["rdev"] == os.makedev(8, 1)
    assert entries[f"{src}/dev/chr"]["type"] == "chardev"
    assert entries[f"{src}/dev/fifo"]["type"] == "fifo"
    assert entries[f"{src}/owners/nobody"]["user"] == "nobody"
    assert entries[f"{src}/owners/nopw"]["user"] is None
    assert entries[f"{src}/times_old"]["mtime_ns"] == OLD_NS
    links = {entries[f"{src}/{p}"]["hardlink"] for p in ("hard/a", "hard/b", "dir/hard_c")}
    assert len(links) == 1 and None not in links
    assert entries[f"{src}/pair1"]["hardlink"] == entries[f"{src}/hard/pair2"]["hardlink"]
    assert entries[f"{src}/pair1"]["hardlink"] not in links

    long_lines = cli.run("ls", "main", "-l").text.splitlines()

    def long(path: str) -> str:
        hits = [ln for ln in long_lines if ln.endswith(" " + path) or f" {path} -> " in ln]
        assert len(hits) == 1, (path, hits)
        return hits[0]

    assert long(f"{src}/modes/setuid").startswith("-rwsr-xr-x")
    assert long(f"{src}/modes/sticky_dir").startswith("drwxrwxrwt")
    assert long(f"{src}/dev/blk").startswith("brw-r-----") and " 8,1 " in long(f"{src}/dev/blk")
    assert long(f"{src}/links/rel").endswith(" -> ../hello.txt")
    assert "123456/654321" in long(f"{src}/owners/nopw")
    assert "nobody/nogroup" in long(f"{src}/owners/nobody")

    # a sub path, without recursion, and a single file
    sub = cli.run("ls", "main", f"{src}/dir", "--no-recursive").text.splitlines()
    assert sub == [f"{src}/dir/hard_c", f"{src}/dir/sub"]
    one = cli.run("ls", "main", f"{src}/hello.txt", "--json").json_lines()
    assert [e["path"] for e in one] == [f"{src}/hello.txt"]
    missing = cli.run("ls", "main", f"{src}/no-such-file", expect=2)
    assert len(missing.err_lines) == 1 and "no-such-file" in missing.err


def test_dump_is_byte_exact(env: dict) -> None:
    cli: Cli = env["cli"]
    src: Path = env["src"]
    for rel in ("big.bin", "empty.txt", "sparse.img", "compressible.txt", "hard/b"):
        out = cli.run("dump", "main", f"{src}/{rel}").out
        assert out == (src / rel).read_bytes(), rel
    raw = cli.run("dump", "main", os.fsencode(src) + b"/names/caf\xe9").out
    assert raw == b"caf\xe9"
    # every file named by ls --json can be dumped by that name (the names with escapes)
    for e in cli.run("ls", "main", f"{src}/names", "--json").json_lines():
        if e["type"] == "file" and (not e["path"].isprintable() or "\\" in e["path"]):
            raw = os.fsencode(e["path"])  # the source tree is still at the stored path
            with open(raw, "rb") as f:
                assert cli.run("dump", "main", raw).out == f.read(), e["path"]
    r = cli.run("dump", "main", f"{src}/dir", expect=2)
    assert len(r.err_lines) == 1 and r.out == b""


def test_dump_tar_extracts_to_the_same_tree(env: dict) -> None:
    """dump --archive tar, extracted by GNU tar with xattrs (ACLs among them), is the
    source again: hardlinks, symlinks, devices, the FIFO, holes (as zeros), empty dirs,
    non-UTF-8 names, nanosecond and pre-1970 mtimes (rsync and the stat signature agree)."""
    cli: Cli = env["cli"]
    src: Path = env["src"]
    out = env["base"] / "dump.tar"
    cli.run("dump", "main", src, "--archive", "tar", "-o", out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert cli.run("dump", "--archive", "tar", "main", src).out == out.read_bytes()
    dst = env["base"] / "untarred"
    dst.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--warning=no-unknown-keyword",
                    "-xpf", out, "-C", dst], check=True)
    assert rsync_diff(src, under(dst, src), "--exclude=/sock.sock") == ""
    assert_same_tree(src, under(dst, src), skip=[b"sock.sock"])
    with tarfile.open(out) as t:
        members = {m.name: m for m in t}
    rel = str(src).lstrip("/")
    assert members[f"{rel}/hard/b"].islnk() and members[f"{rel}/hard/b"].linkname in {
        f"{rel}/hard/a", f"{rel}/dir/hard_c"}
    # a sub-directory alone: a link whose first name is outside it is a file in it
    sub = cli.run("dump", "main", f"{src}/dir", "--archive", "tar").out
    with tarfile.open(fileobj=io.BytesIO(sub)) as t:
        names = {m.name: m for m in t}
    assert set(names) == {f"{rel}/dir", f"{rel}/dir/hard_c", f"{rel}/dir/sub",
                          f"{rel}/dir/sub/deep", f"{rel}/dir/sub/deep/file"}
    assert names[f"{rel}/dir/hard_c"].isfile()
    # the whole snapshot (no PATH): the same members
    whole = cli.run("dump", "--archive", "tar", "main").out
    with tarfile.open(fileobj=io.BytesIO(whole)) as t:
        assert {m.name for m in t} >= set(members)
    r = cli.run("dump", "main", expect=2)
    assert len(r.err_lines) == 1 and r.err_lines[0].startswith(
        "repofs: error: PATH is required (or --archive tar for the whole snapshot)"), r


def test_dump_tar_escapes_xattr_names_and_names_what_it_leaves_out(env: dict) -> None:
    """``%`` and ``=`` in an attribute name are escaped as GNU tar reads them back; a name
    that is not UTF-8 cannot be a PAX record: left out, with a warning (exit 1)."""
    cli = make_cli(env["base"], "tar-xattr-repo")
    src = env["base"] / "tar-xattr"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    os.setxattr(src / "f", "user.a=b%c", b"escaped")
    os.setxattr(src / "f", b"user.raw\xff", b"raw name")
    cli.create(src)
    out = env["base"] / "xattr.tar"
    r = cli.run("dump", "latest", src, "--archive", "tar", "-o", out, expect=1)
    assert r.err_lines == [f"repofs: warning: {src}/f: extended attribute user.raw\\xff "
                           "left out: a tar record name must be UTF-8"], r
    dst = env["base"] / "xattr-untarred"
    dst.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xpf", out, "-C", dst],
                   check=True)
    got = under(dst, src) / "f"
    assert os.listxattr(got) == ["user.a=b%c"]
    assert os.getxattr(got, "user.a=b%c") == b"escaped"


def test_restore_sub_path_and_single_file(env: dict) -> None:
    cli: Cli = env["cli"]
    src: Path = env["src"]
    base: Path = env["base"]
    t = base / "restore-subpath"
    cli.run("restore", f"main:{src}/acl", "--target", t)
    # the directory's contents go into the target; the target keeps its own metadata
    diff = [ln for ln in rsync_diff(src / "acl", t).splitlines() if not ln.endswith(" ./")]
    assert diff == []
    t2 = base / "restore-single"
    cli.run("restore", f"main:{src}/big.bin", "--target", t2)
    assert sorted(os.listdir(t2)) == ["big.bin"]
    assert file_digest(t2 / "big.bin") == file_digest(src / "big.bin")
    # a hardlink whose other names are not restored still gets its content
    t3 = base / "restore-hardlink-part"
    cli.run("restore", f"main:{src}/dir", "--target", t3)
    assert (t3 / "hard_c").read_bytes() == b"three names, one inode\n"
    assert (t3 / "sub" / "deep" / "file").read_bytes() == b"deep file\n"


def test_restore_numeric_ids(env: dict) -> None:
    t = env["base"] / "restore-numeric"
    env["cli"].run("restore", "main", "--target", t, "--numeric-ids", "--special")
    assert rsync_diff(env["src"], under(t, env["src"]), "--exclude=/sock.sock") == ""


def _files_under(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def test_restore_include_and_exclude(env: dict) -> None:
    cli: Cli = env["cli"]
    src: Path = env["src"]
    base: Path = env["base"]
    rel_src = os.path.relpath(src, "/")
    t = base / "restore-include"
    cli.run("restore", "main", "--target", t, "--include", f"{src}/dir")
    got = _files_under(t)
    assert f"{rel_src}/dir/sub/deep/file" in got and f"{rel_src}/dir/hard_c" in got
    assert not any(p.startswith(f"{rel_src}/") and not p.startswith(f"{rel_src}/dir")
                   for p in got), got
    t2 = base / "restore-exclude"
    cli.run("restore", "main", "--target", t2, "--exclude", "*.txt", "--exclude", f"{src}/names",
            "--special")
    got2 = _files_under(t2)
    assert f"{rel_src}/big.bin" in got2 and f"{rel_src}/acl/file" in got2
    assert not any(p.endswith(".txt") for p in got2)
    assert not any(p.startswith(f"{rel_src}/names") for p in got2)
    t3 = base / "restore-include-glob"
    cli.run("restore", "main", "--target", t3, "--include", "*.bin")
    assert {p for p in _files_under(t3) if not os.path.isdir(t3 / p)} == {f"{rel_src}/big.bin"}
    assert file_digest(t3 / rel_src / "big.bin") == file_digest(src / "big.bin")


@pytest.fixture(scope="module")
def filter_tree(shm_module_dir: Path):
    x = shm_module_dir / "filter-src"
    (x / "sub").mkdir(parents=True)
    (x / "keep.txt").write_bytes(b"keep")
    (x / "skip.tmp").write_bytes(b"skip")
    (x / "sub" / "skip.tmp").write_bytes(b"skip")
    (x / "sub" / "keep2").write_bytes(b"keep")
    (x / "build" / "obj").mkdir(parents=True)
    (x / "build" / "obj" / "a.o").write_bytes(b"obj")
    (x / "notes").write_bytes(b"notes")
    (x / "cache").mkdir()
    (x / "cache" / "CACHEDIR.TAG").write_bytes(
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n")
    (x / "cache" / "data").write_bytes(b"cached")
    (x / "fakecache").mkdir()
    (x / "fakecache" / "CACHEDIR.TAG").write_bytes(b"not the signature\n")
    (x / "fakecache" / "data").write_bytes(b"kept")
    (x / "mnt").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "repofs-it", str(x / "mnt")],
                   check=True)
    (x / "mnt" / "inner").write_bytes(b"other file system")
    try:
        yield x
    finally:
        subprocess.run(["umount", str(x / "mnt")], check=True)


def test_create_excludes_caches_and_one_file_system(env: dict, filter_tree: Path) -> None:
    cli: Cli = env["cli"]
    x = filter_tree
    patterns = env["base"] / "patterns"
    patterns.write_text(f"# build output\n\n{x}/build\nnotes\n")
    snap = cli.create(x, "--exclude", "*.tmp", "--exclude-from", patterns, "--exclude-caches",
                      "--one-file-system", "--name", "filtered")
    got = {e["path"][len(str(x)) + 1:] for e in cli.run("ls", snap["snapshot"], x, "--json")
           .json_lines()}
    assert got == {"keep.txt", "sub", "sub/keep2", "cache", "cache/CACHEDIR.TAG", "fakecache",
                   "fakecache/CACHEDIR.TAG", "fakecache/data", "mnt"}
    plain = cli.create(x, "--name", "unfiltered")
    got = {e["path"][len(str(x)) + 1:] for e in cli.run("ls", plain["snapshot"], x, "--json")
           .json_lines()}
    assert {"skip.tmp", "sub/skip.tmp", "build/obj/a.o", "notes", "cache/data",
            "mnt/inner"} <= got


def test_name_is_unique(env: dict) -> None:
    cli: Cli = env["cli"]
    before = cli.snapshots()
    r = cli.run("create", env["src"] / "hello.txt", "--name", "main", expect=2)
    assert len(r.err_lines) == 1 and "main" in r.err
    assert [s["id"] for s in cli.snapshots()] == [s["id"] for s in before]


def test_resolve_by_id_prefix_name_and_latest(env: dict) -> None:
    cli: Cli = env["cli"]
    src: Path = env["src"]
    main_id = env["created"]["snapshot"]
    for ref in (main_id, main_id[:8], main_id[:4], "main"):
        out = cli.run("ls", ref, f"{src}/hello.txt").text
        assert out == f"{src}/hello.txt\n", ref
    assert cli.run("ls", main_id[:3], expect=2).err_lines[0].startswith("repofs: error:")
    assert len(cli.run("ls", "no-such-name", expect=2).err_lines) == 1
    newest = cli.create(src / "empty.txt", "--name", "newest")
    got = cli.run("restore", "latest", "--target", env["base"] / "restore-latest",
                  "--json").json()
    assert got["snapshot"] == newest["snapshot"]
    assert cli.snapshots()[-1]["id"] == newest["snapshot"]


def test_snapshots_json_and_filters(env: dict) -> None:
    base: Path = env["base"]
    cli = make_cli(base, "repo-filters")
    a, b = base / "filter-a", base / "filter-b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_bytes(b"a")
    (b / "f").write_bytes(b"b")
    s1 = cli.create(a, "--host", "h1", "--tag", "daily")
    s2 = cli.create(b, "--host", "h2", "--tag", "daily", "--tag", "weekly", "--name", "two")
    s3 = cli.create(a, b, "--host", "h1", "--tag", "weekly")
    snaps = cli.snapshots()
    assert [s["id"] for s in snaps] == [s1["snapshot"], s2["snapshot"], s3["snapshot"]]
    assert [s["seq"] for s in snaps] == [0, 1, 2]
    assert snaps[0]["prev"] == [] and snaps[1]["prev"] == [s1["snapshot"]]
    assert snaps[2]["prev"] == [s2["snapshot"]]
    assert snaps[1]["name"] == "two" and snaps[0]["name"] is None
    assert snaps[1]["host"] == "h2" and snaps[1]["tags"] == ["daily", "weekly"]
    assert snaps[2]["paths"] == sorted([str(a), str(b)])
    assert all(s["short_id"] == s["id"][:8] for s in snaps)

    def ids(*args: str | Path) -> list[str]:
        return [s["id"] for s in cli.snapshots(*args)]

    assert ids("--host", "h1") == [s1["snapshot"], s3["snapshot"]]
    assert ids("--tag", "daily") == [s1["snapshot"], s2["snapshot"]]
    assert ids("--tag", "weekly", "--host", "h1") == [s3["snapshot"]]
    assert ids("--path", b) == [s2["snapshot"], s3["snapshot"]]
    assert ids("--path", a, "--host", "h2") == []
    assert ids("--host", "nosuch") == []
    text = cli.run("snapshots").text
    assert s2["short_id"] in text and "two" in text and "3 snapshots" in text


def test_stdin_name_and_stdin_from_command(env: dict) -> None:
    cli: Cli = env["cli"]
    data = os.urandom(3 * MiB) + b"-- the end of a dump --\n"
    snap = cli.create("--stdin-name", "db.sql", input=data)
    assert cli.run("dump", snap["snapshot"], "/db.sql").out == data
    assert cli.run("ls", snap["snapshot"]).text == "/db.sql\n"

    cmd = ["sh", "-c", 'printf "%s\\n" "$DB_SECRET"; head -c 100000 /dev/zero']
    snap = cli.create("--stdin-name", "dump.out", "--stdin-from-command", "--", *cmd,
                      env={"DB_SECRET": "s3cret"})
    assert cli.run("dump", snap["snapshot"], "dump.out").out == b"s3cret\n" + bytes(100000)

    before = cli.snapshots()
    for cmd in (["sh", "-c", "head -c 3000000 /dev/urandom; echo partial; exit 3"],
                ["/nonexistent/command"]):
        r = cli.run("create", "--stdin-name", "bad.out", "--stdin-from-command", "--", *cmd,
                    expect=2)
        assert len(r.err_lines) == 1, r
        assert cli.snapshots() == before


def test_compression_none_and_zstd_19(env: dict) -> None:
    cli: Cli = env["cli"]
    base: Path = env["base"]
    size = 4 * MiB
    for codec, limit in (("none", None), ("zstd,19", MiB), ("zstd", MiB)):
        d = base / f"compress-{codec}"
        d.mkdir()
        seed = os.urandom(16).hex().encode()
        content = b"".join(b"%s %d\n" % (seed, i) for i in range(size // 40))
        (d / "text").write_bytes(content)
        before = du_bytes(cli.repo)
        snap = cli.create(d, "--compression", codec)
        added = du_bytes(cli.repo) - before
        if limit is None:
            assert added >= len(content), added
        else:
            assert added < limit, (codec, added)
        assert cli.run("dump", snap["snapshot"], d / "text").out == content
    for bad in ("lz4", "zstd,99", "zstd,x"):
        r = cli.run("create", base / "compress-none", "--compression", bad, expect=2)
        assert "compression" in r.err


def test_file_changed_while_read_is_reported_rest_saved(env: dict) -> None:
    cli: Cli = env["cli"]
    y = env["base"] / "changing-src"
    y.mkdir()
    (y / "stable.txt").write_bytes(b"stable\n")
    write_random(y / "changing.bin", 96 * MiB)
    stop = threading.Event()

    def writer() -> None:
        rnd = random.Random(7)
        fd = os.open(y / "changing.bin", os.O_WRONLY)
        try:
            while not stop.is_set():
                os.pwrite(fd, os.urandom(64), rnd.randrange(96 * MiB - 64))
                time.sleep(0.001)
        finally:
            os.close(fd)

    t = threading.Thread(target=writer)
    t.start()
    try:
        snap = cli.create(y, expect=1)
    finally:
        stop.set()
        t.join()
    assert snap["warnings"] == [f"{y}/changing.bin: changed while being read"]
    got = {e["path"] for e in cli.run("ls", snap["snapshot"], y, "--json").json_lines()}
    assert got == {f"{y}/stable.txt", f"{y}/changing.bin"}
    assert cli.run("dump", snap["snapshot"], y / "stable.txt").out == b"stable\n"


def test_unreadable_files_are_reported_rest_saved(env: dict) -> None:
    """create runs as root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so that
    mode 000 keeps it out of a file and a directory like any unprivileged user."""
    cli: Cli = env["cli"]
    src = env["base"] / "unreadable-src"
    src.mkdir()
    (src / "ok.txt").write_bytes(b"readable\n")
    (src / "secret").write_bytes(b"unreadable\n")
    (src / "locked").mkdir()
    (src / "locked" / "x").write_bytes(b"x")
    os.chmod(src / "secret", 0)
    os.chmod(src / "locked", 0)
    snap = cli.create(src, drop_dac=True, expect=1)
    assert len(snap["warnings"]) == 2, snap["warnings"]
    assert any(w.startswith(f"{src}/secret: ") and "Permission denied" in w
               for w in snap["warnings"])
    assert any(w.startswith(f"{src}/locked: ") and "Permission denied" in w
               for w in snap["warnings"])
    got = {e["path"] for e in cli.run("ls", snap["snapshot"], src, "--json").json_lines()}
    assert f"{src}/ok.txt" in got and f"{src}/secret" not in got
    assert cli.run("dump", snap["snapshot"], src / "ok.txt").out == b"readable\n"
    # as root the same tree is read in full
    assert cli.create(src)["warnings"] == []


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[p] = (st.st_mtime_ns, st.st_size)
    return out


def test_restore_never_overwrites_existing_files(env: dict) -> None:
    cli: Cli = env["cli"]
    src: Path = env["src"]
    t = env["base"] / "restore-existing"
    inside = under(t, src)
    inside.mkdir(parents=True)
    (inside / "hello.txt").write_bytes(b"DIFFERENT\n")
    outside = env["base"] / "outside-victim"
    outside.write_bytes(b"victim\n")
    os.symlink(outside, inside / "big.bin")
    r = cli.run("restore", "main", "--target", t, expect=1)
    assert any("hello.txt" in ln and "exists" in ln for ln in r.err_lines), r
    assert any("big.bin" in ln and "exists" in ln for ln in r.err_lines), r
    assert (inside / "hello.txt").read_bytes() == b"DIFFERENT\n"
    assert outside.read_bytes() == b"victim\n"
    assert os.readlink(inside / "big.bin") == str(outside)
    assert (inside / "dir" / "sub" / "deep" / "file").read_bytes() == b"deep file\n"
    assert file_digest(inside / "sparse.img") == file_digest(src / "sparse.img")


def test_restore_refuses_symlinked_parent_and_writes_nothing_outside(env: dict) -> None:
    cli: Cli = env["cli"]
    src: Path = env["src"]
    base: Path = env["base"]
    victims = base / "victims"
    (victims / "a").mkdir(parents=True)
    (victims / "b").mkdir()
    # a directory of the snapshot is a symlink in the target, deep down ...
    t = base / "restore-symlinked-dir"
    inside = under(t, src)
    inside.mkdir(parents=True)
    os.symlink(victims / "a", inside / "dir")
    # ... and at the very top of the restored path
    t2 = base / "restore-symlinked-top"
    t2.mkdir()
    os.symlink(victims / "b", t2 / "dev")
    before = _listing(base)
    r = cli.run("restore", "main", "--target", t, expect=None)
    assert r.rc == 1, r
    assert any(f"{inside}/dir" in ln for ln in r.err_lines), r
    r2 = cli.run("restore", "main", "--target", t2, expect=None)
    assert r2.rc in (1, 2), r2
    assert any(f"{t2}/dev" in ln for ln in r2.err_lines), r2
    assert os.listdir(victims / "a") == [] and os.listdir(victims / "b") == []
    assert os.readlink(inside / "dir") == str(victims / "a")
    # nothing changed anywhere outside the two targets
    after = _listing(base)
    for p in set(before) | set(after):
        if not (p.startswith(f"{t}/") or p.startswith(f"{t2}/")):
            assert before.get(p) == after.get(p), p
    # and everything that was not behind the symlink was restored
    assert file_digest(inside / "big.bin") == file_digest(src / "big.bin")


def test_interrupt_exits_130_and_saves_nothing(env: dict) -> None:
    cli: Cli = env["cli"]
    before = cli.snapshots()
    started = env["base"] / "interrupt-started"
    argv = [REPOFS, "create", "-r", str(cli.repo), "--stdin-name", "never",
            "--stdin-from-command", "--", "sh", "-c", f"echo started > {started}; exec sleep 60"]
    p = subprocess.Popen(argv, env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    text = err.decode()
    no_traceback(text)
    assert p.returncode == 130, (p.returncode, text)
    assert text.strip() == "repofs: interrupted", text
    assert cli.snapshots() == before


def test_passphrase_sources(env: dict) -> None:
    base: Path = env["base"]
    secret = base / "passphrase-file"
    secret.write_text(PASSPHRASE + "\n")
    cli = Cli(env["cli"].repo, env["cli"].cache, passphrase=None)
    main_id = env["created"]["snapshot"]
    for extra in ({"REPOFS_PASSPHRASE_FILE": str(secret)},
                  {"REPOFS_PASSCOMMAND": f"cat {secret}"}):
        assert main_id in [s["id"] for s in cli.run("snapshots", "--json", env=extra).json()]
    for extra, word in (({}, "REPOFS_PASSPHRASE"), ({"REPOFS_PASSCOMMAND": "false"}, "PASSCOMMAND"),
                        ({"REPOFS_PASSPHRASE_FILE": str(base / "missing")}, "PASSPHRASE_FILE")):
        r = cli.run("snapshots", env=extra, expect=2)
        assert len(r.err_lines) == 1 and word in r.err, r


def test_errors_are_one_line_without_traceback(env: dict) -> None:
    cli: Cli = env["cli"]
    base: Path = env["base"]
    before = cli.snapshots()
    r = cli.run("create", base / "no-such-path", expect=2)
    assert len(r.err_lines) == 1 and "no-such-path" in r.err, r
    assert cli.snapshots() == before
    empty = base / "not-a-repository"
    empty.mkdir()
    r = cli.run("snapshots", repo=empty, expect=2)
    assert len(r.err_lines) == 1 and str(empty) in r.err, r
    r = cli.run("ls", "main", "relative/no/such", expect=2)
    assert len(r.err_lines) == 1, r
    # a reader that goes away: dump into a pipe closed after a few bytes
    argv = [REPOFS, "dump", "-r", str(cli.repo), "main", str(env["src"] / "big.bin")]
    p = subprocess.Popen(argv, env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    head = p.stdout.read(1000)
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert head == (env["src"] / "big.bin").read_bytes()[:1000]
    no_traceback(err)
    assert p.returncode != 0


def _deep_tree(root: bytes, levels: int) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(levels):
            name = b"d%02d" % i + b"x" * 250
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf = os.open(b"leaf", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
        os.write(leaf, b"at the bottom\n")
        os.close(leaf)
    finally:
        os.close(fd)


def _fwalk_signature(root: bytes) -> list[tuple]:
    """Names, modes and contents below ``root``, read with dir fds (paths exceed PATH_MAX)."""
    out = []
    for dirpath, dirnames, filenames, dfd in os.fwalk(root):
        rel = os.path.relpath(dirpath, root)
        for n in sorted(dirnames + filenames):
            st = os.stat(n, dir_fd=dfd, follow_symlinks=False)
            data = None
            if stat.S_ISREG(st.st_mode):
                fd = os.open(n, os.O_RDONLY, dir_fd=dfd)
                data = os.read(fd, 1 << 20)
                os.close(fd)
            out.append((len(rel), rel[-40:], n, st.st_mode, st.st_mtime_ns, data))
    return sorted(out)


def test_paths_longer_than_path_max(env: dict) -> None:
    cli: Cli = env["cli"]
    src = os.fsencode(env["base"] / "deep-src")
    os.mkdir(src)
    _deep_tree(src, 30)  # 30 names of 253 bytes: about 7,600 bytes of path
    snap = cli.create(src)
    deepest = max(len(e["path"]) for e in cli.run("ls", snap["snapshot"], src, "--json")
                  .json_lines())
    assert deepest > 4096
    t = os.fsencode(env["base"] / "deep-restored")
    cli.run("restore", snap["snapshot"], "--target", t)
    assert _fwalk_signature(src) == _fwalk_signature(t + src)


def test_files_cache_sees_a_change_that_keeps_size_and_mtime(env: dict) -> None:
    cli: Cli = env["cli"]
    d = env["base"] / "cache-src"
    d.mkdir()
    f = d / "same-size"
    f.write_bytes(b"version one\n")
    cli.create(d)
    again = cli.create(d)
    assert again["files_unchanged"] == 1 and again["bytes_read"] == 0
    st = os.stat(f)
    f.write_bytes(b"version two\n")  # same size, and the old mtime put back
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = cli.create(d)
    assert changed["files_read"] == 1 and changed["files_unchanged"] == 0, changed
    assert cli.run("dump", changed["snapshot"], f).out == b"version two\n"
    # a damaged files cache costs time, never correctness
    damaged = [p for p in cli.cache.rglob("files") if p.is_file()]  # not the heads record
    assert damaged
    for p in damaged:
        p.write_bytes(b"\x93garbage")
    f.write_bytes(b"version 3!!\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = cli.create(d)
    assert third["files_read"] == 1
    assert cli.run("dump", third["snapshot"], f).out == b"version 3!!\n"


def test_a_name_never_redirects_an_id_prefix(env: dict) -> None:
    """A writer may name a snapshot after another's short id (or 'latest'): resolving that
    reference must then fail as ambiguous, or still mean the id; never the impostor."""
    cli: Cli = env["cli"]
    src: Path = env["src"]
    main_id = env["created"]["snapshot"]
    impostor_src = env["base"] / "impostor"
    impostor_src.mkdir()
    (impostor_src / "hello.txt").write_bytes(b"not the file you backed up\n")
    for name in (main_id[:8], main_id):
        r = cli.run("create", "--json", impostor_src, "--name", name, expect=None)
        assert r.rc in (0, 2), r
        got = cli.run("ls", name, "--json", expect=None)
        if got.rc == 0:
            paths = {e["path"] for e in got.json_lines()}
            assert f"{src}/hello.txt" in paths and f"{impostor_src}/hello.txt" not in paths
        else:
            assert got.rc == 2 and len(got.err_lines) == 1, got
    r = cli.run("create", "--json", impostor_src, "--name", "latest", expect=None)
    if r.rc == 0:
        newest = cli.create(src / "hello.txt")
        got = cli.run("restore", "latest", "--target", env["base"] / "t-latest", "--json",
                      expect=None)
        assert got.rc == 2 or got.json()["snapshot"] == newest["snapshot"], got


def test_file_capabilities_survive_restore(env: dict) -> None:
    """security.capability is dropped by every chown: restore must set it after the owner."""
    cli: Cli = env["cli"]
    d = env["base"] / "caps-src"
    d.mkdir()
    f = d / "ping-like"
    f.write_bytes(b"#!/bin/true\n")
    os.chown(f, 1000, 1000)
    subprocess.run(["setcap", "cap_net_raw+ep", str(f)], check=True)
    os.chmod(f, 0o4755)
    snap = cli.create(d)
    t = env["base"] / "caps-restored"
    cli.run("restore", "--special", snap["snapshot"], "--target", t)
    assert rsync_diff(d, under(t, d)) == ""
    caps = subprocess.run(["getcap", str(under(t, d) / "ping-like")], capture_output=True,
                          text=True, check=True).stdout
    assert "cap_net_raw=ep" in caps


def test_every_error_has_the_one_documented_form(env: dict, tmp_path: Path) -> None:
    """repofs(1), DIAGNOSTICS: 'repofs: error: ...', one line, for click's own errors too."""
    cli = env["cli"]
    bad_option = cli.run("create", "--no-such-option", expect=2)
    bad_value = cli.run("create", "--compression", "lz9", str(tmp_path), expect=2)
    usage = cli.run("create", expect=2)
    library = cli.run("ls", "no-such-snapshot", expect=2)
    for r in (bad_option, bad_value, usage, library):
        assert len(r.err_lines) == 1, str(r)
        assert r.err_lines[0].startswith("repofs: error: "), str(r)
    assert "--help" in usage.err_lines[0] and "repofs create" in usage.err_lines[0]
