"""One flipped byte in one pack costs exactly the files that use the blob it sits in.

Through the real CLI: ``restore`` restores every other file byte for byte, does not
create the damaged ones (or, with ``--partial``, keeps what verified with holes where
the damage is, and lists the ranges), and exits 1; ``check --read-data`` names exactly
the files the restore lost (the two are cross-checked); ``dump`` of a damaged file
exits 2 having written nothing, of a healthy one 0.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from repofs import spec
from repofs.model import DIR, FILE
from repofs.repository import Repository

from .harness import PASSPHRASE, Cli, under, write_random

MiB = 1 << 20


@dataclass
class Damaged:
    cli: Cli
    src: Path
    snap: str
    lost: dict[str, list[tuple[int, int]]]  # source path -> damaged (offset, length) ranges
    files: list[str]  # every file of the snapshot (source paths)


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x04
    os.chmod(path, 0o640)
    path.write_bytes(bytes(data))
    os.chmod(path, 0o440)


@pytest.fixture(scope="module")
def damaged(shm_module_dir: Path) -> Damaged:
    src = shm_module_dir / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(40):
        (src / f"small{i:02}.txt").write_bytes(f"file {i}\n".encode() * (50 + i * 30))
    write_random(src / "sub" / "big.bin", 6 * MiB)
    (src / "sub" / "copy.txt").write_bytes((src / "small07.txt").read_bytes())  # shares a blob
    cli = Cli(shm_module_dir / "repo", shm_module_dir / "cache")
    cli.init()
    snap = cli.create(src)["snapshot"]
    repo = Repository.open(cli.repo, PASSPHRASE.encode())
    body = repo.snapshots.read(snap).body
    assert body is not None
    files: dict[str, list[tuple[bytes, int, int]]] = {}  # path -> (chunk, offset, size)
    for path, e in repo.walk(repo.root_entry(body.tree), b"/"):
        if e.type == FILE:
            offs, parts = 0, []
            for p in e.parts:
                assert p.chunk_id is not None
                parts.append((p.chunk_id, offs, p.size))
                offs += p.size
            files[os.fsdecode(path)] = parts
        assert e.type in (FILE, DIR)
    small = files[str(src / "small07.txt")][0][0]
    big = files[str(src / "sub" / "big.bin")][1][0]  # the big file's second chunk
    for chunk in (small, big):  # one byte inside each blob
        loc = repo.index.lookup(chunk, spec.BLOB_DATA)
        _flip(repo.store.path(spec.NS_DATA, loc.pack), loc.entry.offset + loc.entry.length // 2)
    lost = {path: [(o, n) for c, o, n in parts if c in (small, big)]
            for path, parts in files.items() if any(c in (small, big) for c, _, _ in parts)}
    assert set(lost) == {str(src / "small07.txt"), str(src / "sub" / "copy.txt"),
                         str(src / "sub" / "big.bin")}
    return Damaged(cli, src, snap, lost, sorted(files))


def test_restore_goes_past_the_damage(damaged: Damaged) -> None:
    target = damaged.cli.repo.parent / "restore-default"
    r = damaged.cli.run("restore", "--json", "latest", "--target", target, expect=1)
    report = r.json()
    assert isinstance(report, dict)
    root = under(target, Path("/"))
    assert {d["path"] for d in report["damaged"]} == {str(under(root, Path(p)))
                                                       for p in damaged.lost}
    assert all(not d["kept"] for d in report["damaged"])
    assert report["files"] == len(damaged.files) - len(damaged.lost)
    for path in damaged.files:
        out = under(target, Path(path))
        if path in damaged.lost:
            assert not out.exists(), path
        else:
            assert out.read_bytes() == Path(path).read_bytes(), path
    # one warning per damaged object (two blobs), one per file it cost, nothing else
    assert sum("corrupt or tampered" in ln for ln in r.err_lines) == 2, r
    assert sum("not restored: its content is damaged" in ln for ln in r.err_lines) == 3, r
    assert len(r.err_lines) == 5, r
    r = damaged.cli.run("restore", "latest", "--target", target.with_name("restore-text"),
                        expect=1)
    assert "; 3 damaged files not restored" in r.text, r


def test_partial_keeps_what_verified_with_holes(damaged: Damaged) -> None:
    target = damaged.cli.repo.parent / "restore-partial"
    r = damaged.cli.run("restore", "--json", "--partial", "latest", "--target", target,
                        expect=1)
    report = r.json()
    assert isinstance(report, dict)
    got = {d["path"]: [tuple(x) for x in d["ranges"]] for d in report["damaged"]}
    assert got == {str(under(target, Path(p))): ranges for p, ranges in damaged.lost.items()}
    assert report["files"] == len(damaged.files)
    for path in damaged.files:
        data = under(target, Path(path)).read_bytes()
        truth = bytearray(Path(path).read_bytes())
        for off, n in damaged.lost.get(path, []):
            truth[off:off + n] = bytes(n)  # a hole reads as zeros
        assert data == truth, path
    for path in damaged.lost:
        for off, n in damaged.lost[path]:
            assert f"{off}+{n}" in r.err, r


def test_check_names_exactly_what_restore_lost(damaged: Damaged) -> None:
    for flag in ("--read-data", "--read-data-subset=100%"):
        r = damaged.cli.run("check", flag, "--json", expect=2)
        report = r.json()
        assert isinstance(report, dict)
        lost = report["lost"][damaged.snap]
        assert {x["path"] for x in lost} == set(damaged.lost)
        assert all(x["type"] == "file" for x in lost)
        assert len(report["lost_blobs"]) == 2
        named = [p for p in report["problems"] if p["kind"] == "chunk"]
        assert len(named) == 2 and all(p["snapshots"] == [damaged.snap] for p in named)
    text = damaged.cli.run("check", "--read-data", expect=2).text
    lost = sorted(ln for ln in text.splitlines() if ln.startswith("lost: "))
    assert lost == sorted(f"lost: snapshot {damaged.snap[:8]}: {p}" for p in damaged.lost)


def test_dump_writes_nothing_wrong(damaged: Damaged) -> None:
    for path in damaged.lost:
        r = damaged.cli.run("dump", "latest", path, expect=2)
        assert r.out == b"", path
        assert len(r.err_lines) == 1, r
        assert r.err_lines[0].startswith(f"repofs: error: {path}: not written: chunk "), r
        assert r.err_lines[0].endswith("(nothing was written)"), r
    healthy = str(damaged.src / "small08.txt")
    assert damaged.cli.run("dump", "latest", healthy).out == Path(healthy).read_bytes()


def test_dump_tar_leaves_out_exactly_the_damaged_files(damaged: Damaged) -> None:
    """In an archive a damaged file has no member (its header would already have promised
    its size): every other file is whole, the archive well formed, each loss one warning."""
    r = damaged.cli.run("dump", "latest", damaged.src, "--archive", "tar", expect=1)
    with tarfile.open(fileobj=io.BytesIO(r.out), mode="r:") as t:
        members = {"/" + m.name: m for m in t if m.isfile()}
        assert set(members) == set(damaged.files) - set(damaged.lost)
        for path, m in members.items():
            f = t.extractfile(m)
            assert f is not None and f.read() == Path(path).read_bytes(), path
    for path in damaged.lost:
        assert f"repofs: warning: {path}: left out of the archive: damaged" in r.err_lines, r
    assert sum("corrupt or tampered" in ln for ln in r.err_lines) == 2, r


def test_dump_to_a_file_replaces_it_only_when_complete(damaged: Damaged) -> None:
    """-o FILE: a dump that fails leaves FILE as it was, and no temporary file beside it;
    one that completes replaces it, mode 0600."""
    out = damaged.cli.repo.parent / "dumped"
    out.write_bytes(b"what was there before")
    for path in damaged.lost:
        damaged.cli.run("dump", "latest", path, "-o", out, expect=2)
        assert out.read_bytes() == b"what was there before"
    assert sorted(p.name for p in out.parent.iterdir() if "dumped" in p.name) == ["dumped"]
    healthy = str(damaged.src / "small08.txt")
    damaged.cli.run("dump", "latest", healthy, "-o", out)
    assert out.read_bytes() == Path(healthy).read_bytes()
    assert out.stat().st_mode & 0o777 == 0o600


def test_a_damaged_tree_costs_only_its_directory(shm_dir: Path) -> None:
    """One flipped byte in the tree of one directory: its contents are lost (the directory
    is made, empty, and named), everything else restores exactly, check names just it."""
    src = shm_dir / "src"
    (src / "lost" / "below").mkdir(parents=True)
    (src / "kept").mkdir()
    for d in ("lost", "lost/below", "kept", "."):
        (src / d / "file.txt").write_bytes(f"in {d}\n".encode() * 100)
    cli = Cli(shm_dir / "repo", shm_dir / "cache")
    cli.init()
    snap = cli.create(src)["snapshot"]
    repo = Repository.open(cli.repo, PASSPHRASE.encode())
    body = repo.snapshots.read(snap).body
    assert body is not None
    tree = repo.lookup_path(body.tree, os.fsencode(src / "lost")).subtree
    assert tree is not None
    loc = repo.index.lookup(tree, spec.BLOB_TREE)
    _flip(repo.store.path(spec.NS_DATA, loc.pack), loc.entry.offset + loc.entry.length // 2)
    for flags in ((), ("--partial",)):
        target = shm_dir / f"target{len(flags)}"
        r = cli.run("restore", *flags, "latest", "--target", target, expect=1)
        assert f"repofs: warning: tree {tree.hex()} " in r.err, r
        assert f"repofs: warning: {under(target, src)}/lost: contents not restored: its " \
               "tree is damaged" in r.err_lines, r
        assert "1 directory with a damaged tree" in r.text, r
        assert os.listdir(under(target, src) / "lost") == []
        for d in ("kept", "."):
            assert (under(target, src) / d / "file.txt").read_bytes() == \
                (src / d / "file.txt").read_bytes()
    report = cli.run("check", "--read-data", "--json", expect=2).json()
    assert isinstance(report, dict)
    assert report["lost"] == {snap: [{"path": str(src / "lost"), "type": "dir",
                                      "problems": report["lost"][snap][0]["problems"]}]}
    assert report["lost_blobs"][0]["id"] == tree.hex()
