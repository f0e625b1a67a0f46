"""End to end through the real CLI: a write-only key backs up a host and can read nothing
back; the full key restores everything exactly; forget and prune with the admin key keep
exactly what the policy says; check --read-data (and --storage-only) pass afterwards; a
passphrase change and a key removal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .harness import Cli, assert_same_tree, under

FULL, WRITER, ADMIN = "the full key", "the writer key", "the admin key"


def as_key(cli: Cli, secret: str) -> dict[str, str]:
    return {"REPOFS_PASSPHRASE": secret}


def admin_env() -> dict[str, str]:
    return {"REPOFS_ADMIN_PASSPHRASE": ADMIN}


def generation(src: Path, i: int) -> None:
    (src / "docs").mkdir(parents=True, exist_ok=True)
    (src / "docs" / f"note{i}.txt").write_text(f"note {i}\n" * (i + 1))
    (src / f"blob{i % 3}.bin").write_bytes(os.urandom(200_000 + i))
    (src / "scratch.bin").write_bytes(os.urandom(300_000))  # only in this generation
    (src / "link").unlink(missing_ok=True)
    (src / "link").symlink_to(f"docs/note{i}.txt")


@pytest.fixture
def setup(shm_dir: Path) -> tuple[Cli, Path]:
    cli = Cli(shm_dir / "repo", shm_dir / "cache", passphrase=FULL)
    r = cli.run("init", "--json", env=admin_env()).json()
    assert isinstance(r, dict) and r["admin_key"]
    return cli, shm_dir


def test_write_only_forget_prune_check_end_to_end(setup: tuple[Cli, Path]) -> None:
    cli, base = setup
    src, copies = base / "src", base / "copies"
    added = cli.run("key", "add", "--write-only", "--json",
                    env={"REPOFS_NEW_PASSPHRASE": WRITER}).json()
    assert isinstance(added, dict) and added["capability"] == "write-only"
    keys = {k["capability"] for k in cli.run("key", "list", "--json").json()}  # type: ignore[union-attr]
    assert keys == {"full", "write-only", "admin"}

    snaps: dict[str, Path] = {}
    for i in range(5):  # the first with the full key, the rest by the write-only host
        generation(src, i)
        tags = ("--tag", "keep") if i == 1 else ()
        env = as_key(cli, FULL if i == 0 else WRITER)
        sid = cli.create(src, "--host", "web1", *tags, env=env)["snapshot"]
        snaps[sid] = copies / sid
        shutil.copytree(src, snaps[sid], symlinks=True)
    ids = list(snaps)

    # the write-only key lists the history but cannot read any of it
    wo = as_key(cli, WRITER)
    listed = cli.run("snapshots", "--json", env=wo).json()
    assert [s["id"] for s in listed] == ids and all("paths" not in s for s in listed)  # type: ignore[index, union-attr]
    earlier = ids[0]
    for command, args in [("ls", (earlier,)), ("restore", (earlier, "-t", base / "x")),
                          ("dump", (earlier, f"{src}/blob0.bin")),
                          ("mount", ("--snapshot", earlier, base / "mnt"))]:
        if command == "mount":
            (base / "mnt").mkdir(exist_ok=True)
        r = cli.run(command, *args, env=wo, expect=2)
        assert len(r.err_lines) == 1 and "this key cannot read" in r.err, r
        assert r.out == b""
    assert not (base / "x").exists()
    for command, args in [("forget", ("--keep-last", "1")), ("prune", ())]:
        r = cli.run(command, *args, env=wo, expect=2)
        assert "this key cannot" in r.err and len(r.err_lines) == 1, r
    r = cli.run("forget", "--keep-last", "1", expect=2)  # the full key cannot either
    assert "this key cannot sign removal records" in r.err

    # the full key restores every snapshot exactly
    for sid, copy in snaps.items():
        target = base / f"restore-{sid[:8]}"
        cli.run("restore", sid, "-t", target)
        assert_same_tree(copy, under(target, src))
        shutil.rmtree(target)

    # forget: keep the 2 newest and the tagged one, nothing else
    want = {ids[-1], ids[-2], ids[1]}
    dry = cli.run("forget", "--keep-last", "2", "--keep-tag", "keep", "--dry-run", "--json",
                  env=admin_env()).json()
    assert isinstance(dry, dict) and set(dry["removed"]) == set(ids) - want
    assert [s["id"] for s in cli.snapshots()] == ids  # a dry run changes nothing
    out = cli.run("forget", "--keep-last", "2", "--keep-tag", "keep", env=admin_env()).text
    assert "removed 2 snapshots" in out
    assert {s["id"] for s in cli.snapshots()} == want
    assert {s["id"] for s in cli.run("snapshots", "--json", env=wo).json()  # type: ignore[union-attr]
            } == want  # the writer verifies the removal record too

    # prune on the storage host frees the space; the kept snapshots restore exactly
    before = _du(cli.repo)
    cli.run("prune", "--grace", "0", env=admin_env())
    assert _du(cli.repo) < before - 500_000  # the scratch files of the two removed ones
    assert {p.name for p in (cli.repo / "snapshots").iterdir()} == want
    for sid in want:
        target = base / f"after-{sid[:8]}"
        cli.run("restore", sid, "-t", target)
        assert_same_tree(snaps[sid], under(target, src))
    cli.run("check", "--read-data")
    cli.run("check", "--read-data-subset", "50%")
    cli.run("check", "--storage-only", env={"REPOFS_PASSPHRASE": ""})
    # the write-only host backs up on top of the pruned history
    generation(src, 9)
    cli.create(src, "--host", "web1", env=wo)
    cli.run("check", "--read-data")


def test_passwd_then_remove_the_old_key_file(setup: tuple[Cli, Path]) -> None:
    cli, base = setup
    (base / "src").mkdir()
    (base / "src" / "f").write_text("x")
    cli.create(base / "src")
    old = next(k["name"] for k in cli.run("key", "list", "--json").json()  # type: ignore[union-attr]
               if k["current"])
    new = cli.run("key", "passwd", "--json",
                  env={"REPOFS_NEW_PASSPHRASE": "a new passphrase"}).json()
    assert isinstance(new, dict) and new["capability"] == "full"
    cli.run("snapshots", env={"REPOFS_PASSPHRASE": "a new passphrase"})
    cli.run("snapshots")  # the old passphrase still opens, until an admin removes its file
    r = cli.run("key", "remove", old[:8], expect=2)  # a full key cannot remove key files
    assert "this key cannot remove key files" in r.err
    r = cli.run("key", "remove", old[:8], env=admin_env())
    assert "removed key file" in r.text
    r = cli.run("snapshots", expect=2)
    assert "wrong passphrase" in r.err
    cli.run("check", env={"REPOFS_PASSPHRASE": "a new passphrase"})
    r = cli.run("key", "add", env={"REPOFS_PASSPHRASE": "a new passphrase",
                                   "REPOFS_NEW_PASSPHRASE": ADMIN}, expect=2)
    assert "already opens key file" in r.err


def test_init_without_an_admin_passphrase_warns(shm_dir: Path) -> None:
    cli = Cli(shm_dir / "repo", shm_dir / "cache")
    r = cli.run("init", "--json")
    assert r.json()["admin_key"] is None  # type: ignore[index]
    assert "can never be forgotten or pruned" in r.err
    r = cli.run("forget", "--keep-last", "1", expect=2)
    assert "this key cannot sign removal records" in r.err


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
