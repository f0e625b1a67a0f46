"""Hostile trees planted by a writer with the keys, restored by the victim (threat model A4):
names with '..', '/', NUL; a symlinked parent; hardlinks aimed at paths outside; trees as
deep as the format allows; sizes no file can have; set-user-ID files, capabilities and
devices. Restore refuses or skips each with a precise message, writes nothing outside its
target, and recreates no planted privilege unless asked."""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from repofs import spec
from repofs.model import SnapshotHead
from repofs.repository import Repository

from .victim import Victim, body_for, file_entry, put_blobs, put_snapshot, raw_tree

CONTENT = b"planted by the attacker\n"


def plant(repo: Repository, victim: Victim, trees: list[list[dict]], seq: int = 2,
          prev: str | None = None) -> tuple[str, list[bytes]]:
    """Store trees (the last is the root; an entry's "sub" may name an earlier one by
    index) and a valid snapshot of the root on top of the history."""
    chunk = repo.blob_id(CONTENT, spec.BLOB_DATA)
    blobs: list[tuple[bytes, int, bytes]] = [(chunk, spec.BLOB_DATA, CONTENT)]
    ids: list[bytes] = []
    for entries in trees:
        for e in entries:
            if isinstance(e.get("sub"), int):
                e["sub"] = ids[e["sub"]]
            if e.get("c") == "CHUNK":
                e["c"] = [[chunk, len(CONTENT)]]
        data = raw_tree(entries)
        ids.append(repo.blob_id(data, spec.BLOB_TREE))
        blobs.append((ids[-1], spec.BLOB_TREE, data))
    put_blobs(repo, blobs)
    head = SnapshotHead(seq, (bytes.fromhex(prev or victim.snaps[-1]),), time.time_ns())
    return put_snapshot(repo, head, body_for(ids[-1])), ids


def f(name: bytes, **extra: object) -> dict:
    return {**file_entry(name, b"", len(CONTENT), **extra), "c": "CHUNK"}


def d(name: bytes, sub: int) -> dict:
    return {"n": name, "t": "d", "m": 0o755, "u": 0, "g": 0, "mt": 0, "ct": 0, "sub": sub}


def symlink(name: bytes, target: bytes) -> dict:
    return {"n": name, "t": "l", "m": 0o777, "u": 0, "g": 0, "mt": 0, "ct": 0, "tg": target}


@pytest.fixture
def outside(victim: Victim) -> Path:
    """A directory next to every restore target that nothing may write into."""
    p = victim.base / "outside"
    p.mkdir()
    (p / "secret").write_bytes(b"keep me\n")
    return p


def untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"keep me\n"
    assert os.stat(outside / "secret").st_nlink == 1


UNSAFE = [b"..", b".", b"../../outside/x", b"/etc/passwd", b"a/../../x", b"nul\0byte", b""]


def test_unsafe_names_are_refused(victim: Victim, outside: Path) -> None:
    repo = victim.client.attacker()
    prev, seq = victim.snaps[-1], 2
    for i, name in enumerate(UNSAFE):
        snap, ids = plant(repo, victim, [[f(name)]], seq=seq, prev=prev)
        prev, seq = snap, seq + 1
        target = victim.base / f"target{i}"
        r = victim.client.run("restore", snap, "--target", target, expect=2)
        assert r.err_lines == [f"repofs: error: tree {ids[-1].hex()} is corrupt or tampered: "
                               f"entry name {name!r} is unsafe"], r
        untouched(outside)
        assert not target.exists() or os.listdir(target) == []
    assert "is unsafe" in victim.client.run("ls", prev, expect=2).err
    victim.restores_exactly(newest_only=True)


def test_a_symlinked_parent_is_not_followed(victim: Victim, outside: Path) -> None:
    """Snapshot one plants d -> outside; snapshot two has a directory d with a file.
    Restored into one target, the second stops at the symlink."""
    repo = victim.client.attacker()
    first, _ = plant(repo, victim, [[symlink(b"d", os.fsencode(outside))]])
    second, _ = plant(repo, victim, [[f(b"f")], [d(b"d", 0)]], seq=3, prev=first)
    target = victim.base / "target"
    victim.client.run("restore", first, "--target", target)
    assert os.readlink(target / "d") == str(outside)
    r = victim.client.run("restore", second, "--target", target, expect=1)
    assert r.err_lines == [f"repofs: warning: {target}/d exists and is not a directory; "
                           "not restoring into it"], r
    untouched(outside)
    victim.restores_exactly(newest_only=True)


def test_hardlinks_never_reach_outside(victim: Victim, outside: Path) -> None:
    """A hardlink group whose first member is a symlink to a file outside in the target
    already: the first is not overwritten, the second is restored as a file of its own."""
    repo = victim.client.attacker()
    snap, _ = plant(repo, victim, [[f(b"a", hl=1), f(b"b", hl=1), f(b"c", hl=2)]])
    target = victim.base / "target"
    target.mkdir()
    os.symlink(outside / "secret", target / "a")
    r = victim.client.run("restore", snap, "--target", target, "--exclude", "/c", expect=1)
    assert r.err_lines == [f"repofs: warning: {target}/a: exists, not overwritten"], r
    assert (target / "b").read_bytes() == CONTENT and os.stat(target / "b").st_nlink == 1
    assert not (target / "c").exists()
    untouched(outside)
    victim.restores_exactly(newest_only=True)


def test_a_stored_tree_1200_deep_is_listed(victim: Victim) -> None:
    """Inside the format's MAX_TREE_DEPTH, far past Python's recursion limit: ls walks it
    iteratively, and lists every level."""
    depth = 1200
    trees: list[list[dict]] = [[f(b"f")]]
    for level in range(depth):
        trees.append([d(b"d", level)])
    snap, _ = plant(victim.client.attacker(), victim, trees)
    r = victim.client.run("ls", snap)
    lines = r.text.splitlines()
    assert lines == ["/d" * n for n in range(1, depth + 1)] + ["/d" * depth + "/f"]
    r = victim.client.run("ls", "--json", snap, "/".join(["d"] * 1000))
    assert len(r.json_lines()) == 201


def test_a_tree_as_deep_as_the_format_allows_restores(victim: Victim) -> None:
    """1,200 nested directories (inside spec.MAX_TREE_DEPTH): restore and check walk them
    without recursion, and restore keeps few descriptors open however deep it goes."""
    repo = victim.client.attacker()
    depth = 1200
    trees: list[list[dict]] = [[f(b"leaf")]]
    for i in range(depth):
        trees.append([d(b"d", i)])
    snap, _ = plant(repo, victim, trees)
    target = victim.base / "deep"
    try:
        victim.client.run("restore", snap, "--target", target)
        leaf = target.joinpath(*["d"] * depth, "leaf")
        assert leaf.read_bytes() == CONTENT
    finally:  # shutil.rmtree recurses: it cannot remove what restore made
        subprocess.run(["rm", "-rf", "--", str(target)], check=True)
    r = victim.client.run("check", "--json", expect=None)
    assert r.rc in (0, 2) and snap not in r.json()["lost"], r  # type: ignore[index]
    victim.restores_exactly(newest_only=True)


def hole(name: bytes, size: int, parts: list | None = None) -> dict:
    return {"n": name, "t": "f", "m": 0o644, "u": 0, "g": 0, "mt": 0, "ct": 0, "s": size,
            "c": [[None, size]] if parts is None else parts}


def test_a_size_no_file_can_have_is_damage_not_a_crash(victim: Victim) -> None:
    """An entry claiming 2^63 bytes (more than off_t holds) is named and left out before any
    file is made; so is an entry whose parts do not add up: each costs only itself."""
    repo = victim.client.attacker()
    snap, ids = plant(repo, victim, [
        [hole(b"short", 10, [[b"\x01" * 32, 4]])],  # parts do not add up: left out
        [f(b"a"), hole(b"huge", 2**63), d(b"sub", 0), f(b"z")],
    ])
    target = victim.base / "target"
    r = victim.client.run("restore", snap, "--target", target, expect=1)
    assert (target / "a").read_bytes() == CONTENT and (target / "z").read_bytes() == CONTENT
    assert not (target / "huge").exists()
    assert os.listdir(target / "sub") == []
    assert r.err_lines == [
        f"repofs: warning: tree {ids[1].hex()} is corrupt or tampered: entry huge: field 's' "
        "out of range (entry left out)",
        f"repofs: warning: tree {ids[0].hex()} is corrupt or tampered: entry short: file size "
        "does not match its content list (entry left out)",
    ], r
    r = victim.client.run("check", "--json", expect=2)
    lost = r.json()["lost"][snap]  # type: ignore[index]
    assert sorted((x["path"], x["type"]) for x in lost) == [("/huge", "file"),
                                                                ("/sub/short", "file")]
    r = victim.client.run("dump", snap, "huge", expect=2)
    assert r.out == b"" and "entry huge: field 's' out of range" in r.err, r


CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)  # cap_net_bind_service+ep


def test_planted_privileges_are_not_recreated_unless_asked(victim: Victim) -> None:
    """A writer key plants a set-user-ID root file, a set-group-ID one, a file with
    capabilities and a world-writable block device: restore (as root) recreates none of
    their powers, names each, and restores the rest; --special restores them as stored."""
    repo = victim.client.attacker()
    snap, _ = plant(repo, victim, [[
        f(b"cap", x=[[b"security.capability", CAPABILITY]]),
        f(b"plain"),
        {"n": b"sda", "t": "b", "m": 0o666, "u": 0, "g": 0, "mt": 0, "ct": 0,
         "rd": os.makedev(8, 0)},
        f(b"sgid", m=0o2755),
        f(b"suid", m=0o4755),
    ]])
    target = victim.base / "target"
    r = victim.client.run("restore", snap, "--target", target, expect=1)
    assert r.err_lines == [
        f"repofs: warning: {target}/cap: file capabilities not restored (--special restores "
        "them)",
        f"repofs: warning: {target}/sda: device node not created (--special creates it)",
        f"repofs: warning: {target}/sgid: set-group-ID bit not restored (--special restores "
        "them)",
        f"repofs: warning: {target}/suid: set-user-ID bit not restored (--special restores "
        "them)",
    ], r
    assert stat.S_IMODE(os.stat(target / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(target / "sgid").st_mode) == 0o755
    assert not (target / "sda").exists()
    assert "security.capability" not in os.listxattr(target / "cap")
    assert (target / "plain").read_bytes() == CONTENT

    special = victim.base / "special"
    victim.client.run("restore", "--special", snap, "--target", special)
    assert stat.S_IMODE(os.stat(special / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(special / "sgid").st_mode) == 0o2755
    st = os.lstat(special / "sda")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(8, 0)
    assert os.getxattr(special / "cap", "security.capability") == CAPABILITY


def test_a_hostile_tree_as_a_tar_archive_is_named_not_a_crash(victim: Victim) -> None:
    """dump --archive tar of a planted tree: what no file system or tar header can hold
    (2^63 bytes, a device number past ustar's fields, two contents in one hardlink group)
    is named and left out or written unlinked; the archive is well formed (exit 1) and
    holds exactly the rest."""
    repo = victim.client.attacker()
    other = repo.blob_id(b"other content", spec.BLOB_DATA)
    put_blobs(repo, [(other, spec.BLOB_DATA, b"other content")])
    snap, ids = plant(repo, victim, [[
        f(b"a", hl=7),
        file_entry(b"b", other, 13, hl=7),  # the same group, another content
        {"n": b"dev", "t": "c", "m": 0o666, "u": 0, "g": 0, "mt": 0, "ct": 0,
         "rd": os.makedev(2**30, 1)},
        hole(b"huge", 2**63),
        symlink(b"up", b"../../etc/passwd"),
        f(b"z"),
    ]])
    r = victim.client.run("dump", snap, "--archive", "tar", expect=1)
    assert r.err_lines == [
        f"repofs: warning: tree {ids[0].hex()} is corrupt or tampered: entry huge: field 's' "
        "out of range (entry left out)",
        "repofs: warning: /b: hardlink group members differ in content; archived unlinked",
        f"repofs: warning: /dev: device node left out: its number {2**30}:1 does not fit a "
        "tar header",
    ], r
    with tarfile.open(fileobj=io.BytesIO(r.out), mode="r:") as t:
        got = {m.name: (m.type, m.linkname) for m in t}
        assert t.extractfile("b").read() == b"other content"  # type: ignore[union-attr]
    assert got == {"a": (tarfile.REGTYPE, ""), "b": (tarfile.REGTYPE, ""),
                   "up": (tarfile.SYMTYPE, "../../etc/passwd"), "z": (tarfile.REGTYPE, "")}
