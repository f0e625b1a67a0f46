"""The damage matrix's mount leg: damage stays local in a real FUSE mount too.

For each namespace (keys, index, snapshots, removals, condemned, data) and each damage (a
flipped bit, truncation, garbage stored under its own BLAKE3 name, a well-formed object of
another repository, deletion), a copy of one small victim repository is damaged and
mounted through the real CLI (``repofs mount``, then ``fusermount3 -u``). The mount must
come up; ``snapshots/`` lists every intact snapshot; every intact file reads back equal to
the source byte for byte (the newest snapshot compared as a whole tree: modes, times,
sizes); a file whose data is damaged gives EIO, never other bytes; and the damaged object
is named: once on the mount command's standard error when met while opening (exit 1), and
in the mount's log whenever it was met (while opening too: the log is what an admin reads
later). By default one case runs for each way a namespace's damage behaves differently in
a mount (``DISTINCT``); ``REPOFS_DAMAGE_MATRIX=full`` runs all 30.

The victim is the one of test_damage_history (two key files, three listed snapshots, a
removal record, a condemn record) plus its index segments and packs; the other repository
is made once with the CLI so it has a real index segment and pack too.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from repofs import crypto, spec
from repofs.model import FILE
from repofs.repository import Repository
from tests.integration.harness import PASSPHRASE, Cli, Result, assert_same_tree

from .test_damage_history import DAMAGES, Built, _build, _other, naming
from .test_damage_history import damage as damage_history
from .wire import Wire

pytestmark = pytest.mark.skipif(
    not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None,
    reason="needs /dev/fuse and fusermount3")

NAMESPACES = (spec.NS_KEYS, spec.NS_INDEX, spec.NS_SNAPSHOTS, spec.NS_REMOVALS,
              spec.NS_CONDEMNED, spec.NS_DATA)
DAMAGED_FILE = "sub/data.bin"  # the file whose blob sits in the damaged pack


def _where(repo: Path, ns: str, name: str) -> Path:
    return repo / ns / name[:2] / name if ns == spec.NS_DATA else repo / ns / name


def _blob_of(repo_path: Path, src: Path) -> tuple[str, str, int, int]:
    """(index segment, pack, offset, length) of the one blob of ``src/sub/data.bin`` in
    the newest snapshot."""
    repo = Repository.open(repo_path, PASSPHRASE.encode())
    newest = repo.snapshots.list()[-1]
    body = repo.snapshots.read(newest.id).body
    assert body is not None
    entry = repo.lookup_path(body.tree, os.fsencode(src / DAMAGED_FILE))
    assert entry.type == FILE and len(entry.parts) == 1
    chunk = entry.parts[0].chunk_id
    assert chunk is not None
    loc = repo.index.lookup(chunk, spec.BLOB_DATA)
    seg, = (s.name for s in repo.segments() if any(p == loc.pack for p, _ in s.packs))
    return seg, loc.pack, loc.entry.offset, loc.entry.length


def _other_with_data(base: Path) -> Built:
    """Another repository made with the CLI: a real index segment and pack of its own, plus
    the in-process history objects of test_damage_history."""
    other = _other(base)
    cli = Cli(base / "other-cli", base / "other-cli-cache")
    cli.run("init")
    src = base / "other-src"
    src.mkdir()
    (src / "x.bin").write_bytes(os.urandom(5000))
    cli.create(src)
    seg, = os.listdir(cli.repo / spec.NS_INDEX)
    pack = next(p.name for p in (cli.repo / spec.NS_DATA).glob("*/*"))
    return Built(other.path, base, base, base, [], "", {
        **other.objects, spec.NS_INDEX: str(cli.repo / spec.NS_INDEX / seg),
        spec.NS_DATA: pack, "data-repo": str(cli.repo)})


@pytest.fixture(scope="module")
def built(attack_dir: Path) -> tuple[Built, Built, tuple[str, int, int]]:
    victim = _build(attack_dir, "victim")
    seg, *blob = _blob_of(victim.path, victim.src)
    victim.objects[spec.NS_INDEX], victim.objects[spec.NS_DATA] = seg, blob[0]
    return victim, _other_with_data(attack_dir), (blob[0], blob[1], blob[2])


@pytest.fixture
def copy(built: tuple[Built, Built, tuple[str, int, int]], tmp_path: Path) -> Iterator[Built]:
    victim = built[0]
    mine = Built(tmp_path / "repo", tmp_path / "cache", victim.src, victim.expected,
                 victim.snaps, victim.first, victim.objects)
    shutil.copytree(victim.path, mine.path, symlinks=True)
    shutil.copytree(victim.cache, mine.cache, symlinks=True)
    yield mine


def damage(victim: Built, other: Built, blob: tuple[str, int, int], ns: str, how: str) -> str:
    """Damage ``ns`` as test_damage_history does; in data/ the bit flipped and the cut made
    are inside the blob of ``sub/data.bin``, so exactly that file is lost."""
    if ns not in (spec.NS_INDEX, spec.NS_DATA):
        return damage_history(victim, other, ns, how)
    if how == "garbage":
        data = b"garbage garbage"
        name = crypto.object_name(data)
        _where(victim.path, ns, name).write_bytes(data)
        return name
    if how == "foreign":
        if ns == spec.NS_INDEX:
            src = Path(other.objects[ns])
        else:
            src = _where(Path(other.objects["data-repo"]), ns, other.objects[ns])
        name = src.name
        shutil.copyfile(src, _where(victim.path, ns, name))
        return name
    name = victim.objects[ns]
    path = _where(victim.path, ns, name)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    middle = blob[1] + blob[2] // 2 if ns == spec.NS_DATA else len(data) // 2
    if how == "flip":
        data[middle] ^= 0x04
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[:middle]))
    else:
        path.unlink()
    return name


LOST = ("flip", "truncate", "delete")  # damages that cost what the object held


def _expect(ns: str, how: str, victim: Built, hit: str) -> tuple[int, str | None, bool]:
    """(exit code of ``repofs mount``, what its log names or None, whether ``sub/data.bin``
    gives EIO): damage met while opening exits 1 and is named on standard error and in the
    log; damage met while serving (a pack) only in the log; a damaged index segment or
    pack that costs nothing (garbage, another repository's: it lists or holds nothing of
    this one) and namespaces the mount does not read (condemned/) are not met at all, as
    for every other reader (test_damage_history, test_recovery)."""
    if ns == spec.NS_KEYS:
        return (0, None, False) if how in ("foreign", "delete") else (1, hit, False)
    if ns == spec.NS_INDEX:
        if how == "delete":  # nothing names a deleted segment: the packs it listed are named
            return 0, "listed by no index segment", False
        return (1, hit, False) if how in LOST else (0, None, False)
    if ns == spec.NS_SNAPSHOTS:
        return 1, hit, False
    if ns == spec.NS_REMOVALS:  # deleted: the forgotten, pruned first snapshot is a gap again
        return 1, victim.first if how == "delete" else hit, False
    if ns == spec.NS_CONDEMNED:
        return 0, None, False
    return (0, hit, True) if how in LOST else (0, None, False)


def mount(cli: Cli, mnt: Path, log: Path, expect: int) -> Result:
    mnt.mkdir()
    r = cli.run("mount", "--log-file", log, mnt, expect=expect)
    assert os.path.ismount(mnt), r
    return r


# A mount costs a process, a key derivation and a FUSE session (~1.5 s on an idle 2-core
# machine; all 30 cases take ~75 s): by default one case for each way a namespace's damage
# behaves differently in a mount; REPOFS_DAMAGE_MATRIX=full runs every namespace x damage.
DISTINCT = {
    spec.NS_KEYS: ("flip", "foreign"),  # skipped and named / not met
    spec.NS_INDEX: ("flip", "garbage", "delete"),  # recovered at open / costs nothing /
    # recovered lazily, the packs named in the log
    spec.NS_SNAPSHOTS: ("flip", "garbage"),  # left out / the rest all listed
    spec.NS_REMOVALS: ("flip", "delete"),  # ignored / a gap named
    spec.NS_CONDEMNED: ("garbage",),  # not read by a mount
    spec.NS_DATA: ("flip", "delete", "foreign"),  # EIO, the pack named / costs nothing
}
CASES = [(ns, how) for ns in NAMESPACES for how in DAMAGES
         if os.environ.get("REPOFS_DAMAGE_MATRIX") == "full" or how in DISTINCT[ns]]


@pytest.mark.parametrize(("ns", "how"), CASES)
def test_a_mount_serves_every_intact_byte(copy: Built, built: tuple[Built, Built,
                                          tuple[str, int, int]], tmp_path: Path,
                                          ns: str, how: str) -> None:
    hit = damage(copy, built[1], built[2], ns, how)
    rc, named, eio = _expect(ns, how, copy, hit)
    gone = {hit} if ns == spec.NS_SNAPSHOTS and how in LOST else set()
    intact = [s for s in copy.snaps if s not in gone]
    generation = {s: b"generation %d\n" % (i + 1) for i, s in enumerate(copy.snaps)}
    data = (copy.expected / DAMAGED_FILE).read_bytes()
    rel = os.path.relpath(copy.src, "/")
    mnt, log = tmp_path / "mnt", tmp_path / "mount.log"
    try:
        r = mount(Cli(copy.path, copy.cache), mnt, log, rc)
        if rc:
            assert len(naming(r, named or hit)) == 1, r
            assert all(ln.startswith("repofs: warning: ") for ln in r.err_lines), r
        else:
            assert r.err_lines == [], r
        assert sorted(os.listdir(mnt / "ids")) == sorted(intact)
        dirs = [n for n in os.listdir(mnt / "snapshots") if n != "latest"]
        assert len(dirs) == len(intact)
        newest = mnt / "snapshots" / os.readlink(mnt / "snapshots" / "latest") / rel
        assert (newest / "a.txt").read_bytes() == generation[copy.snaps[-1]]
        for snap in intact:
            inside = mnt / "ids" / snap / rel
            assert (inside / "a.txt").read_bytes() == generation[snap], snap
            if eio:  # never other bytes: the whole file, and a read past the damage
                with pytest.raises(OSError) as e:
                    (inside / DAMAGED_FILE).read_bytes()
                assert e.value.errno == errno.EIO
            else:
                assert (inside / DAMAGED_FILE).read_bytes() == data, snap
        assert_same_tree(copy.expected, mnt / "ids" / copy.snaps[-1] / rel,
                         skip=[os.fsencode(DAMAGED_FILE)] if eio else [])
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, check=False)
    text = log.read_text()
    if named is None:
        assert "WARNING" not in text and "ERROR" not in text, text
    else:
        assert named in text, text
    assert "Traceback" not in text, text


def test_a_plant_through_serve_blocks_no_mount(copy: Built, tmp_path: Path) -> None:
    """The issue's attack: a client of ``repofs serve`` puts 15 bytes under their own name
    in snapshots/ and in index/, as a client sends them. A mount comes up, names the
    snapshot object (the segment costs nothing: no pack of this repository is in it) and
    serves every snapshot byte for byte."""
    data = b"fifteen bytes!!"
    name = crypto.object_name(data)
    w = Wire(copy.path)
    w.hello()
    for ns in (spec.NS_SNAPSHOTS, spec.NS_INDEX):
        answer = w.ask({"op": "put", "ns": ns, "name": name, "size": len(data), "data": data})
        assert answer == {"ok": True, "created": True}, answer
    assert w.finish()[0] == 0
    mnt, log = tmp_path / "mnt", tmp_path / "mount.log"
    rel = os.path.relpath(copy.src, "/")
    try:
        r = mount(Cli(copy.path, copy.cache), mnt, log, 1)
        assert len(r.err_lines) == 1 and name in r.err_lines[0], r
        assert sorted(os.listdir(mnt / "ids")) == sorted(copy.snaps)
        assert_same_tree(copy.expected, mnt / "snapshots" / "latest" / rel)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, check=False)
    assert f"snapshot {name} is corrupt or tampered: truncated header" in log.read_text()
