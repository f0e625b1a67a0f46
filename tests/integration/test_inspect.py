"""repofs diff, find, stats and key export/import through the real CLI, on a small
repository of two snapshots: what they print (text and --json), what a write-only key
may see, and a damaged tree named in one warning with exit 1 while the rest is shown."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from repofs import spec
from repofs.repository import Repository
from tests.integration.harness import PASSPHRASE, Cli, assert_same_tree, make_cli


@pytest.fixture(scope="module")
def two(shm_module_dir: Path) -> tuple[Cli, Path, str, str]:
    src = shm_module_dir / "src"
    (src / "docs").mkdir(parents=True)
    (src / "keep").mkdir()
    (src / "docs" / "a.txt").write_text("one\n")
    (src / "docs" / "b.txt").write_text("gone soon\n")
    (src / "keep" / "big.bin").write_bytes(os.urandom(300_000))
    (src / "mode.txt").write_text("same\n")
    cli = make_cli(shm_module_dir)
    first = cli.create(src)["snapshot"]
    (src / "docs" / "a.txt").write_text("two\n")
    (src / "docs" / "b.txt").unlink()
    (src / "docs" / "c.txt").write_text("new\n")
    (src / "mode.txt").chmod(0o600)
    second = cli.create(src)["snapshot"]
    return cli, src, first, second


def _copy(two: tuple[Cli, Path, str, str], base: Path) -> Cli:
    cli = two[0]
    shutil.copytree(cli.repo, base / "repo", symlinks=True)
    return Cli(base / "repo", base / "cache")


def test_diff(two: tuple[Cli, Path, str, str]) -> None:
    cli, src, first, second = two
    r = cli.run("diff", first, second)
    s = str(src)
    assert r.text.splitlines() == [
        f"M    {s}/docs/a.txt", f"-    {s}/docs/b.txt", f"+    {s}/docs/c.txt",
        f"U    {s}/mode.txt",
        "1 added, 1 removed, 1 changed content, 1 changed metadata, 0 changed type"]
    j = cli.run("diff", "--json", first, second, s.lstrip("/") + "/docs").json()
    assert [(c["change"], c["path"]) for c in j["changes"]] == [
        ("content", f"{s}/docs/a.txt"), ("removed", f"{s}/docs/b.txt"),
        ("added", f"{s}/docs/c.txt")]
    assert j["counts"]["added"] == 1 and j["snapshot1"] == first
    assert cli.run("diff", second, second).text.splitlines()[-1].startswith("0 added")


def test_find(two: tuple[Cli, Path, str, str]) -> None:
    cli, src, first, second = two
    found = cli.run("find", "--json", "*.txt").json()
    assert [[m["path"].rsplit("/", 1)[1] for m in f["matches"]] for f in found] == [
        ["a.txt", "b.txt", "mode.txt"], ["a.txt", "c.txt", "mode.txt"]]
    assert found[1]["matches"][1]["size"] == 4 and found[1]["snapshot"] == second
    only = cli.run("find", "--json", "-s", first, f"{src}/docs/c.txt").json()
    assert only == []
    assert "no matches" in cli.run("find", "nothing-like-this").text
    text = cli.run("find", "big.bin").text
    assert text.count("300000") == 2 and f"{src}/keep/big.bin" in text


def test_stats(two: tuple[Cli, Path, str, str]) -> None:
    cli, _src, first, second = two
    j = cli.run("stats", "--json", first, second).json()
    repo = j["repository"]
    assert repo["snapshots"] == 2 and repo["blobs"]["chunk"] >= 5 and repo["packs"] >= 2
    assert 0 < repo["stored_bytes"] <= repo["pack_bytes"]
    a, b = j["snapshots"]
    assert a["restore_bytes"] == 300_000 + 4 + 10 + 5 and a["files"] == 4
    assert b["restore_bytes"] == 300_000 + 4 + 4 + 5
    # big.bin is in both: neither holds it alone
    assert a["unique_stored_bytes"] < 300_000 and b["unique_stored_bytes"] < 300_000
    assert a["unique_blobs"] >= 2 and b["raw_bytes"] > 300_000
    assert "deduplicated size" in cli.run("stats").text


def test_a_write_only_key_sees_the_totals_only(two: tuple[Cli, Path, str, str],
                                               shm_dir: Path) -> None:
    cli = _copy(two, shm_dir)
    cli.run("key", "add", "--write-only", env={"REPOFS_NEW_PASSPHRASE": "writer only"})
    writer = {"REPOFS_PASSPHRASE": "writer only"}
    assert cli.run("stats", "--json", env=writer).json()["repository"]["snapshots"] == 2
    r = cli.run("stats", "latest", env=writer, expect=2)
    assert "write-only" in r.err_lines[-1]
    assert "write-only" in cli.run("diff", two[2], two[3], env=writer, expect=2).err


def _damage_tree(cli: Cli, snapshot: str, path: bytes) -> None:
    """Flip a byte of the tree at ``path`` in ``snapshot``, inside its pack."""
    r = Repository.open(cli.repo, PASSPHRASE.encode())
    snap = r.snapshots.resolve(snapshot)
    assert snap.body is not None
    tree = r.lookup_path(snap.body.tree, path).subtree
    assert tree is not None
    loc = r.index.lookup(tree, spec.BLOB_TREE)
    pack = cli.repo / "data" / loc.pack[:2] / loc.pack
    data = bytearray(pack.read_bytes())
    data[loc.entry.offset + 20] ^= 1
    pack.chmod(0o640)
    pack.write_bytes(bytes(data))


def test_a_damaged_tree_is_named_and_left_out(two: tuple[Cli, Path, str, str],
                                              shm_dir: Path) -> None:
    _, src, first, second = two
    cli = _copy(two, shm_dir)
    _damage_tree(cli, second, os.fsencode(src / "docs"))
    r = cli.run("diff", first, second, expect=1)
    assert r.text.splitlines()[:1] == [f"U    {src}/mode.txt"]
    assert [line for line in r.err_lines if "corrupt or tampered" in line
            and f"left out: {src}/docs and everything below it" in line], r.err
    found = cli.run("find", "--json", "*.txt", expect=1).json()
    assert [len(f["matches"]) for f in found] == [3, 1]
    j = cli.run("stats", "--json", second, expect=1).json()
    assert j["snapshots"][0]["files"] == 2  # big.bin and mode.txt; docs/ left out


def test_key_export_and_import_bring_back_a_repository_without_key_files(
        two: tuple[Cli, Path, str, str], shm_dir: Path) -> None:
    _, src, _first, second = two
    cli = _copy(two, shm_dir)
    paper = cli.run("key", "export", "--paper").text
    cli.run("key", "export", "-o", shm_dir / "key.txt")
    assert (shm_dir / "key.txt").stat().st_mode & 0o777 == 0o600
    assert "exists" in cli.run("key", "export", "-o", shm_dir / "key.txt", expect=2).err
    for f in (cli.repo / "keys").iterdir():
        f.unlink()
    mistyped = paper.replace("002: ", "002: 1", 1)
    assert "line 2" in cli.run("key", "import", input=mistyped.encode(), expect=2).err
    assert "does not open" in cli.run("key", "import", input=paper.encode(), expect=2,
                                      env={"REPOFS_PASSPHRASE": "not it"}).err
    assert cli.run("key", "import", "--json", input=paper.encode()).json()["added"] is True
    assert cli.run("key", "import", "--json", shm_dir / "key.txt").json()["added"] is False
    cli.run("restore", second, "--target", shm_dir / "out")
    assert_same_tree(src, shm_dir / "out" / str(src).lstrip("/"))


def test_a_key_of_another_repository_is_refused(two: tuple[Cli, Path, str, str],
                                                shm_dir: Path) -> None:
    other = make_cli(shm_dir, "other")
    text = other.run("key", "export").text
    r = two[0].run("key", "import", input=text.encode(), expect=2)
    assert "belongs to repository" in r.err
