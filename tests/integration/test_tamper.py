"""Tampering with stored bytes is detected, named, and never turns into wrong output.

A pristine repository with two snapshots (and two key files) is built once; every case
works on a fresh copy of it. For each object kind the case flips one bit, truncates,
appends, or swaps the contents of two objects of that kind, then runs the commands
that read that kind of object:

- config, key files, index segments and snapshots are read by every command, so
  ``snapshots``, ``ls``, ``restore`` and ``dump`` all fail;
- a tree pack is read by ``ls``, ``restore`` and ``dump`` (``snapshots`` does not
  read trees and rightly succeeds);
- a data pack is read by ``restore`` and ``dump`` (``ls`` and ``snapshots`` succeed);
  restore goes past it (exit 1): only the files using its damaged blobs are lost.

A failing command exits 2 with one line on stderr that says "corrupt or tampered"
(key files: a key file / passphrase error) and names the object; no traceback ever.
A failed restore leaves only exact files; a failed dump wrote a prefix of the truth.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from repofs import crypto, keys, spec
from repofs.repository import Repository

from .harness import PASSPHRASE, Cli, Result, under, write_random

OTHER_PASSPHRASE = "the passphrase of the second key file"
MiB = 1 << 20


@dataclass
class Obj:
    """One stored object: where it is, the name errors must show, and a byte range of interest."""

    path: Path
    name: str
    focus: tuple[int, int] | None = None  # (offset, length) of a blob inside a pack


@dataclass
class Pristine:
    base: Path
    repo: Path
    src: Path
    snaps: list[str]  # oldest first
    files: dict[str, list[str]]  # snapshot id -> files (relative to src) in it
    objects: dict[str, list[Obj]]  # kind -> [object of snapshot 1, object of snapshot 2]
    second_key: bytes  # a key file for OTHER_PASSPHRASE, added to the copies that need it


def _locate(base: Path, repo_path: Path, src: Path, snaps: list[str]) -> dict[str, list[Obj]]:
    """Find, with the library, the objects each snapshot depends on."""
    repo = Repository.open(repo_path, PASSPHRASE.encode())
    store = repo.store
    objects: dict[str, list[Obj]] = {"config": [Obj(repo_path / spec.CONFIG_NAME, "config")]}
    mine = repo.keys.key_name
    assert list(store.list(spec.NS_KEYS)) == [mine]
    objects["key file"] = [Obj(store.path(spec.NS_KEYS, mine), mine)]
    objects["snapshot"] = [Obj(store.path(spec.NS_SNAPSHOTS, s), s) for s in snaps]
    segments = sorted(store.list(spec.NS_INDEX))
    assert len(segments) == 2
    objects["index segment"] = [Obj(store.path(spec.NS_INDEX, n), n) for n in segments]
    data, trees = [], []
    for snap_id, big in zip(snaps, ("big1.bin", "big2.bin"), strict=True):
        snap = repo.snapshots.read(snap_id)
        assert snap.body is not None
        entry = repo.lookup_path(snap.body.tree, os.fsencode(src / big))
        chunk = entry.parts[len(entry.parts) // 2].chunk_id
        assert chunk is not None
        loc = repo.index.lookup(chunk, spec.BLOB_DATA)
        data.append(Obj(store.path(spec.NS_DATA, loc.pack), loc.pack,
                        (loc.entry.offset, loc.entry.length)))
        tloc = repo.index.lookup(snap.body.tree, spec.BLOB_TREE)
        trees.append(Obj(store.path(spec.NS_DATA, tloc.pack), tloc.pack,
                         (tloc.entry.offset, tloc.entry.length)))
    assert data[0].name != data[1].name and trees[0].name != trees[1].name
    assert {d.name for d in data}.isdisjoint(t.name for t in trees)
    objects["data pack"] = data
    objects["tree pack"] = trees
    return objects


@pytest.fixture(scope="module")
def pristine(shm_module_dir: Path) -> Pristine:
    src = shm_module_dir / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n" * 1000)
    (src / "sub" / "b.txt").write_bytes(b"beta\n")
    write_random(src / "big1.bin", 5 * MiB)
    cli = Cli(shm_module_dir / "repo", shm_module_dir / "cache")
    cli.init()
    # a second key file (other passphrase, same master keys), so that key files can be swapped
    second_key = keys.wrap(Repository.open(cli.repo, PASSPHRASE.encode()).keys,
                           OTHER_PASSPHRASE.encode())
    s1 = cli.create(src)["snapshot"]
    files1 = ["a.txt", "sub/b.txt", "big1.bin"]
    write_random(src / "big2.bin", 5 * MiB)
    (src / "sub" / "c.txt").write_bytes(b"gamma\n")
    s2 = cli.create(src)["snapshot"]
    files2 = [*files1, "big2.bin", "sub/c.txt"]
    objects = _locate(shm_module_dir, cli.repo, src, [s1, s2])
    return Pristine(shm_module_dir, cli.repo, src, [s1, s2], {s1: files1, s2: files2}, objects,
                    second_key)


# -- mutations --------------------------------------------------------------------------
def _rewrite(path: Path, data: bytes) -> None:
    os.chmod(path, 0o640)
    path.write_bytes(data)
    os.chmod(path, 0o440)


def flip(obj: Obj, at: int | None = None) -> None:
    data = bytearray(obj.path.read_bytes())
    if at is None:
        at = obj.focus[0] + obj.focus[1] // 2 if obj.focus else len(data) // 2
    data[at] ^= 0x10
    _rewrite(obj.path, bytes(data))


def truncate(obj: Obj) -> None:
    data = obj.path.read_bytes()
    keep = obj.focus[0] + obj.focus[1] // 2 if obj.focus else len(data) // 2
    _rewrite(obj.path, data[:keep])


def append(obj: Obj) -> None:
    _rewrite(obj.path, obj.path.read_bytes() + b"\x00appended")


def swap(a: Obj, b: Obj) -> None:
    da, db = a.path.read_bytes(), b.path.read_bytes()
    _rewrite(a.path, db)
    _rewrite(b.path, da)


CONFIG_PARTS = {  # where in {"format": "repofs", "v": 2, "id": bin32} a bit is flipped
    "id": lambda c: len(c) - 5,
    "map-header": lambda c: 0,
    "id-key": lambda c: c.index(b"\xa2id") + 1,
    "version": lambda c: c.index(b"\xa1v") + 2,
    "format": lambda c: c.index(b"repofs") + 2,
}


# -- commands and checks ------------------------------------------------------------------
def _copy(p: Pristine, case: str, second_key: bool = False) -> tuple[Cli, dict[str, list[Obj]]]:
    dst = p.base / f"case-{case}"
    shutil.copytree(p.repo, dst / "repo", symlinks=True)
    objects = {kind: [Obj(dst / "repo" / o.path.relative_to(p.repo), o.name, o.focus)
                      for o in objs] for kind, objs in p.objects.items()}
    if second_key:
        name = crypto.object_name(p.second_key)
        path = dst / "repo" / spec.NS_KEYS / name
        path.write_bytes(p.second_key)
        os.chmod(path, 0o440)
        objects["key file"].append(Obj(path, name))
    return Cli(dst / "repo", dst / "cache"), objects


def assert_failure(r: Result, names: list[str], key_file: bool = False) -> None:
    assert r.rc == 2, str(r)
    *warned, line = r.err_lines  # another damaged object may be named on the way
    assert all(w.startswith("repofs: warning: ") and any(n in w for n in names)
               for w in warned), str(r)
    assert line.startswith("repofs: error: "), line
    if key_file:
        assert "corrupt or tampered" in line or "key file" in line, line
    else:
        assert "corrupt or tampered" in line, line
    assert any(n in line for n in names), (names, line)


def assert_restored_files_exact(p: Pristine, target: Path) -> None:
    """Every file restore left behind is a file of the source with exactly its bytes."""
    root = target / os.path.relpath(p.src, "/")
    for dirpath, _dirs, files in os.walk(target):
        for f in files:
            path = Path(dirpath) / f
            rel = path.relative_to(root)  # raises if anything landed elsewhere
            assert path.read_bytes() == (p.src / rel).read_bytes(), rel


def assert_goes_on(r: Result, names: list[str]) -> None:
    """restore past a damaged data pack: exit 1, the damaged object named in a warning,
    the files it cost listed."""
    assert r.rc == 1, str(r)
    assert any(ln.startswith("repofs: warning: ") and any(n in ln for n in names)
               for ln in r.err_lines), str(r)
    assert any("not restored: its content is damaged" in ln for ln in r.err_lines), str(r)


def run_all(p: Pristine, cli: Cli, snap: str, big: str, must_fail: set[str],
            names: list[str], key_file: bool = False, heals: bool = False,
            goes_on: bool = False, warns: frozenset[str] = frozenset()) -> None:
    """``heals``: the damage is left out and what it carried recovered (exit 1, every byte
    there); ``goes_on``: the damage is in data, which restore goes past (exit 1);
    ``warns``: commands that leave the damaged object out and name it (exit 1)."""
    target = cli.repo.parent / f"restore-{snap[:8]}"
    commands = {
        "snapshots": ("snapshots", "--json"),
        "ls": ("ls", snap),
        "restore": ("restore", snap, "--target", target),
        "dump": ("dump", snap, p.src / big),
    }
    with ThreadPoolExecutor(len(commands)) as pool:  # independent reads: run them at once
        futures = {k: pool.submit(cli.run, *c, expect=None) for k, c in commands.items()}
        results = {k: f.result() for k, f in futures.items()}
    for cmd, r in results.items():
        if cmd == "restore" and goes_on and cmd in must_fail:
            assert_goes_on(r, names)
        elif cmd in must_fail:
            assert_failure(r, names, key_file)
        elif heals:  # left out, named, and what it carried recovered: every byte is there
            assert r.rc == 1 and all(any(n in ln and "warning" in ln for ln in r.err_lines)
                                     for n in names), str(r)
        elif cmd in warns:  # left out and named; the rest listed (repofs-format(5), DAMAGE)
            assert r.rc == 1 and r.err_lines, str(r)
            assert all(ln.startswith("repofs: warning: ") and any(n in ln for n in names)
                       for ln in r.err_lines), str(r)
        else:
            assert r.rc == 0, str(r)
    if target.exists():
        assert_restored_files_exact(p, target)
    truth = (p.src / big).read_bytes()
    assert truth.startswith(results["dump"].out), "dump wrote bytes that are not the file's"
    if heals:
        assert results["dump"].out == truth
        assert (target / os.path.relpath(p.src / big, "/")).read_bytes() == truth


ALL = {"snapshots", "ls", "restore", "dump"}
READERS = {
    "config": ALL,
    "key file": ALL,
    "snapshot": {"ls", "restore", "dump"},  # the damaged snapshot itself is asked for
    "index segment": set(),  # left out; blob locations recovered from the packs (HEALS)
    "tree pack": {"ls", "restore", "dump"},
    "data pack": {"restore", "dump"},
}
WARNS = {"snapshot": frozenset({"snapshots"})}  # every other snapshot is still listed
MUTATIONS = ["flip", "truncate", "append", "swap"]
CASES = [(kind, m) for kind in READERS for m in MUTATIONS if (kind, m) != ("config", "swap")]


@pytest.mark.parametrize(("kind", "mutation"), CASES, ids=[f"{k}-{m}" for k, m in CASES])
def test_tamper_is_detected_and_named(pristine: Pristine, kind: str, mutation: str) -> None:
    cli, objects = _copy(pristine, f"{kind}-{mutation}".replace(" ", "_"),
                         second_key=kind == "key file")
    first, second = objects[kind][0], objects[kind][-1]
    {"flip": flip, "truncate": truncate, "append": append}.get(mutation, lambda o: None)(first)
    if mutation == "swap":
        swap(first, second)
    names = [first.name, second.name] if mutation == "swap" else [first.name]
    snap, big = pristine.snaps[0], "big1.bin"
    run_all(pristine, cli, snap, big, READERS[kind], names, key_file=kind == "key file",
            heals=kind == "index segment", goes_on=kind == "data pack",
            warns=WARNS.get(kind, frozenset()))
    if mutation == "swap" and kind in ("data pack", "tree pack"):  # both packs are damaged
        run_all(pristine, cli, pristine.snaps[1], "big2.bin", READERS[kind],
                [first.name, second.name], goes_on=kind == "data pack")


@pytest.mark.parametrize("part", ["id", "map-header", "id-key"])
def test_config_bit_flips_are_detected(pristine: Pristine, part: str) -> None:
    cli, objects = _copy(pristine, f"config-{part}")
    config = objects["config"][0]
    flip(config, CONFIG_PARTS[part](config.path.read_bytes()))
    run_all(pristine, cli, pristine.snaps[0], "big1.bin", ALL, ["config"])


@pytest.mark.parametrize(("part", "message"), [
    ("version", "repository format version 18 is not supported"),
    ("format", "not a repofs repository (config)"),
])
def test_config_version_and_format_flips_are_refused(pristine: Pristine, part: str,
                                                     message: str) -> None:
    """repofs-format(5): config is not authenticated; its format and version fields are
    checked as such (a newer version cannot be told from a changed one), so these are
    refused with the documented message rather than "corrupt or tampered"."""
    cli, objects = _copy(pristine, f"config-{part}")
    config = objects["config"][0]
    flip(config, CONFIG_PARTS[part](config.path.read_bytes()))
    for cmd in (("snapshots",), ("ls", "latest"), ("dump", "latest", pristine.src / "a.txt"),
                ("restore", "latest", "--target", cli.repo.parent / "t")):
        r = cli.run(*cmd, expect=2)
        assert r.err_lines == [f"repofs: error: {message}" + (" by this repofs" if part ==
                                                               "version" else "")], r
        assert r.out == b""


@pytest.mark.parametrize("kind", ["data pack", "tree pack"])
@pytest.mark.parametrize("where", ["trailer", "trailer-length"])
def test_pack_tail_flip_is_detected(pristine: Pristine, kind: str, where: str) -> None:
    """The trailer is no blob: a flip there must still fail every read of the pack."""
    cli, objects = _copy(pristine, f"{kind}-{where}".replace(" ", "_"))
    pack = objects[kind][0]
    size = pack.path.stat().st_size
    flip(pack, size - 9 if where == "trailer" else size - 3)
    run_all(pristine, cli, pristine.snaps[0], "big1.bin", READERS[kind], [pack.name],
            goes_on=kind == "data pack")


def test_pack_header_flip_fails_every_blob(pristine: Pristine) -> None:
    cli, objects = _copy(pristine, "pack-header")
    pack = objects["data pack"][1]
    flip(pack, 20)  # inside the key material of the header
    run_all(pristine, cli, pristine.snaps[1], "big2.bin", {"restore", "dump"}, [pack.name],
            goes_on=True)
    # snapshot 1 does not use that pack and still restores in full
    run_all(pristine, cli, pristine.snaps[0], "big1.bin", set(), [])


def test_deleted_objects_are_reported_missing(pristine: Pristine) -> None:
    cli, objects = _copy(pristine, "deleted")
    first = objects["snapshot"][0]
    first.path.unlink()
    r = cli.run("snapshots", expect=1)  # a gap: named once, the rest listed
    assert len(r.err_lines) == 1 and first.name in r.err and "missing" in r.err, r
    assert "corrupt or tampered" in r.err and r.err_lines[0].startswith("repofs: warning:")
    for cmd in (("ls", "latest"), ("restore", "latest", "--target", cli.repo.parent / "t"),
                ("dump", "latest", pristine.src / "a.txt")):
        r = cli.run(*cmd, expect=1)
        assert len(r.err_lines) == 1 and first.name in r.err, r
    assert_restored_files_exact(pristine, cli.repo.parent / "t")
    assert cli.run("dump", pristine.snaps[1], pristine.src / "a.txt", expect=1).out == \
        (pristine.src / "a.txt").read_bytes()
    assert_failure(cli.run("ls", first.name, expect=None), [first.name])

    cli, objects = _copy(pristine, "deleted-pack")
    pack = objects["data pack"][0]
    pack.path.unlink()
    run_all(pristine, cli, pristine.snaps[0], "big1.bin", {"restore", "dump"}, [pack.name],
            goes_on=True)


def test_wrong_passphrase_is_one_clear_line(pristine: Pristine) -> None:
    plain, _ = _copy(pristine, "wrong-passphrase", second_key=True)
    cli = Cli(plain.repo, pristine.base / "wrong-cache", passphrase="not the passphrase")
    for cmd in (("snapshots",), ("ls", "latest"), ("dump", "latest", pristine.src / "a.txt"),
                ("restore", "latest", "--target", pristine.base / "wrong-target"),
                ("create", pristine.src)):
        r = cli.run(*cmd, expect=2)
        assert len(r.err_lines) == 1, r
        assert "passphrase" in r.err_lines[0], r
        assert r.out == b""
    assert not (pristine.base / "wrong-target").exists() or not any(
        (pristine.base / "wrong-target").iterdir())
    # the second key file opens with its own passphrase
    other = Cli(plain.repo, pristine.base / "other-cache", passphrase=OTHER_PASSPHRASE)
    assert [s["id"] for s in other.snapshots()] == pristine.snaps


def test_a_damaged_small_chunk_fails_only_its_own_file(shm_dir: Path) -> None:
    """Small chunks are fetched in batches: a damaged one must fail the file that needs it,
    named, while the files around it (fetched in the same batch) are restored exactly."""
    src = shm_dir / "src"
    src.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (src / name).write_bytes(name.encode() * 500 + os.urandom(100))
    cli = Cli(shm_dir / "repo", shm_dir / "cache")
    cli.init()
    snap = cli.create(src)["snapshot"]
    repo = Repository.open(cli.repo, PASSPHRASE.encode())
    body = repo.snapshots.read(snap).body
    assert body is not None
    entry = repo.lookup_path(body.tree, os.fsencode(src / "b.txt"))
    chunk = entry.parts[0].chunk_id
    assert chunk is not None
    loc = repo.index.lookup(chunk, spec.BLOB_DATA)
    flip(Obj(repo.store.path(spec.NS_DATA, loc.pack), loc.pack,
             (loc.entry.offset, loc.entry.length)))
    target = shm_dir / "target"
    r = cli.run("restore", snap, "--target", target, expect=1)
    assert loc.pack in r.err and "corrupt or tampered" in r.err, r
    restored = under(target, src)
    assert (restored / "a.txt").read_bytes() == (src / "a.txt").read_bytes()
    assert (restored / "c.txt").read_bytes() == (src / "c.txt").read_bytes()
    assert not (restored / "b.txt").exists()
