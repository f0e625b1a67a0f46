"""Restore is safe to interrupt and to repeat (issue 14, point 2), through the real CLI.

A restore killed with SIGKILL in the middle of a large file leaves no file under its
real name that is not complete; the next restore removes its temporary names,
skips what is there and identical, and finishes the tree. ``--overwrite``,
``--delete``, ``--dry-run`` and ``--verify`` bring a changed tree back to the
snapshot, or say what differs, without ever touching anything outside the target.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import (
    REPOFS,
    Cli,
    assert_same_tree,
    tree_signature,
    under,
    write_random,
)

TEMP = re.compile(r"\.repofs-restore\.[0-9a-f]{16}")


@pytest.fixture(scope="module")
def env(shm_module_dir: Path) -> dict:
    src = shm_module_dir / "src"
    (src / "d" / "sub").mkdir(parents=True)
    for i in range(6):
        (src / "d" / f"f{i}").write_bytes(os.urandom(1000 + i))
    (src / "d" / "sub" / "note").write_text("note\n")
    os.link(src / "d" / "f0", src / "d" / "sub" / "f0-link")
    os.symlink("f1", src / "d" / "ln")
    (src / "d" / "sub").chmod(0o750)
    cli = Cli(shm_module_dir / "repo", shm_module_dir / "cache")
    cli.init()
    cli.create(src)
    return {"cli": cli, "src": src, "base": shm_module_dir}


def restore(env: dict, target: Path, *args: str, expect: int | None = 0) -> dict:
    r = env["cli"].run("restore", "--json", "latest", "-t", target, *args, expect=expect)
    out = r.json()
    assert isinstance(out, dict)
    out["rc"] = r.rc
    return out


def temps(root: Path) -> list[Path]:
    return [Path(d) / n for d, dirs, files in os.walk(root) for n in files + dirs
            if TEMP.fullmatch(n)]


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place meanwhile
        return 0


def test_killed_restore_leaves_no_partial_file_and_resume_completes_it(
        shm_dir: Path, env: dict) -> None:
    src = shm_dir / "src"
    src.mkdir()
    (src / "a-small").write_text("first\n")
    write_random(src / "big", 64 << 20)
    (src / "z-after").write_text("last\n")
    cli = Cli(shm_dir / "repo", shm_dir / "cache")
    cli.init()
    cli.create(src)
    target = shm_dir / "t"
    dst = under(target, src)
    argv = [REPOFS, "restore", "-r", str(cli.repo), "latest", "-t", str(target)]
    p = subprocess.Popen(argv, env=cli.env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    caught: list[Path] = []
    while time.monotonic() < deadline and p.poll() is None:
        caught = [t for t in temps(target) if size_of(t) > (1 << 20)]
        if caught:
            break
        time.sleep(0.002)
    assert caught, "the restore finished before a temporary file was seen"
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL
    # the file being written exists only under its temporary name, never truncated
    assert not (dst / "big").exists()
    assert caught[0].stat().st_size < (64 << 20)
    assert (dst / "a-small").read_text() == "first\n"
    assert not (dst / "z-after").exists()
    assert (dst.stat().st_mode & 0o777) == 0o700  # directory metadata is set last
    out = cli.run("restore", "--json", "latest", "-t", target).json()
    assert isinstance(out, dict)
    assert out["unchanged"] == 1 and out["temps_removed"] == 1, out
    assert temps(target) == []
    assert_same_tree(src, dst)


def test_resume_into_a_complete_restore_changes_nothing(shm_dir: Path, env: dict) -> None:
    target = shm_dir / "t"
    first = restore(env, target)
    assert first["created"] > 0 and first["unchanged"] == 0
    before = tree_signature(target)
    again = restore(env, target)
    assert again["created"] == 0 and again["overwritten"] == 0 and again["warnings"] == []
    assert again["unchanged"] == first["files"] + first["others"]  # directories: merged
    assert tree_signature(target) == before
    assert_same_tree(env["src"], under(target, env["src"]))


def changed_target(shm_dir: Path, env: dict) -> tuple[Path, Path]:
    target = shm_dir / "t"
    restore(env, target)
    dst = under(target, env["src"])
    (dst / "d" / "f2").write_bytes(b"changed content")  # content differs
    (dst / "d" / "f3").chmod(0o600)  # only metadata differs
    os.utime(dst / "d" / "f4", ns=(1, 1))
    (dst / "d" / "f5").unlink()  # missing
    return target, dst


def test_overwrite_never_keeps_and_warns(shm_dir: Path, env: dict) -> None:
    target, dst = changed_target(shm_dir, env)
    out = restore(env, target, expect=1)
    assert out["created"] == 1 and out["overwritten"] == 0
    assert sum("exists, not overwritten" in w for w in out["warnings"]) == 3
    assert (dst / "d" / "f2").read_bytes() == b"changed content"
    assert (dst / "d" / "f5").read_bytes() == (env["src"] / "d" / "f5").read_bytes()


def test_overwrite_if_changed_brings_the_tree_back(shm_dir: Path, env: dict) -> None:
    target, dst = changed_target(shm_dir, env)
    ino = (dst / "d" / "f3").stat().st_ino
    out = restore(env, target, "--overwrite", "if-changed")
    assert (out["created"], out["overwritten"], out["updated"]) == (1, 1, 2), out
    assert (dst / "d" / "f3").stat().st_ino == ino  # same content: metadata set in place
    assert_same_tree(env["src"], dst)


def test_overwrite_always_rewrites_every_file(shm_dir: Path, env: dict) -> None:
    target = shm_dir / "t"
    restore(env, target)
    dst = under(target, env["src"])
    ino = (dst / "d" / "f1").stat().st_ino
    out = restore(env, target, "--overwrite", "always")
    assert out["overwritten"] == out["files"] + out["others"] and out["unchanged"] == 0
    assert (dst / "d" / "f1").stat().st_ino != ino
    assert_same_tree(env["src"], dst)


def test_delete_removes_only_below_the_target_and_never_follows(shm_dir: Path,
                                                                env: dict) -> None:
    target = shm_dir / "t"
    restore(env, target)
    dst = under(target, env["src"])
    outside = shm_dir / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious").write_text("mine\n")
    os.symlink(outside, dst / "d" / "to-outside")  # a link the snapshot does not hold
    os.symlink(outside / "keep", dst / "d" / "sub-x")
    (dst / "d" / "junk" / "deeper").mkdir(parents=True)
    (dst / "d" / "junk" / "deeper" / "x").write_text("x")
    (dst / "d" / "stray").write_text("stray")
    # above the backed-up path (/dev/shm/.../src) the snapshot holds only the way down:
    # what else is there is not the snapshot's to delete
    (target / "beside").write_text("not in any backed-up path")
    (dst.parent / "beside-src").mkdir()
    before = tree_signature(target)
    plan = restore(env, target, "--delete", "--dry-run")
    assert plan["deleted"] == 4 and tree_signature(target) == before
    assert sorted(Path(a["path"]).name for a in plan["actions"] if a["action"] == "delete") \
        == ["junk", "stray", "sub-x", "to-outside"]
    out = restore(env, target, "--delete")
    assert out["deleted"] == 4
    assert (outside / "keep" / "precious").read_text() == "mine\n"
    assert (target / "beside").exists() and (dst.parent / "beside-src").is_dir()
    assert_same_tree(env["src"], dst)


def test_symlink_in_place_of_a_directory_is_not_followed(shm_dir: Path, env: dict) -> None:
    target = shm_dir / "t"
    restore(env, target)
    dst = under(target, env["src"])
    outside = shm_dir / "outside"
    outside.mkdir()
    (outside / "note").write_text("outside\n")
    subprocess.run(["rm", "-r", str(dst / "d" / "sub")], check=True)
    os.symlink(outside, dst / "d" / "sub")
    out = restore(env, target, "--delete", expect=1)  # never: the link stays, warned
    assert any("is not a directory" in w or "symlink" in w for w in out["warnings"]), out
    restore(env, target, "--delete", "--overwrite", "if-changed")
    assert sorted(os.listdir(outside)) == ["note"]
    assert (outside / "note").read_text() == "outside\n"
    assert_same_tree(env["src"], dst)


def test_dry_run_writes_nothing(shm_dir: Path, env: dict) -> None:
    target, dst = changed_target(shm_dir, env)
    (dst / "d" / "extra").write_text("extra")
    before = tree_signature(target)
    r = env["cli"].run("restore", "latest", "-t", target, "--dry-run", "-v", "--delete",
                       "--overwrite", "if-changed")
    assert tree_signature(target) == before
    lines = r.text.splitlines()
    assert f"create {dst / 'd' / 'f5'}" in lines
    assert f"overwrite {dst / 'd' / 'f2'}" in lines
    assert f"update {dst / 'd' / 'f3'}" in lines
    assert f"delete {dst / 'd' / 'extra'}" in lines
    assert lines[-1].startswith("would create 1, overwrite 1, update 2, delete 1;"), lines
    fresh = shm_dir / "nothing-here"
    out = restore(env, fresh, "--dry-run")
    assert not fresh.exists() and out["created"] > 0 and out["files"] == 8


def test_verify_catches_a_file_changed_after_restore(shm_dir: Path, env: dict) -> None:
    target = shm_dir / "t"
    out = restore(env, target, "--verify")
    assert out["verified"] == 8 and out["mismatches"] == []
    f = under(target, env["src"]) / "d" / "f1"
    st = f.stat()
    data = bytearray(f.read_bytes())
    data[500] ^= 1
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # the quick check cannot see it
    before = tree_signature(target)
    out = restore(env, target, "--verify", "--dry-run", expect=1)
    assert [m["path"] for m in out["mismatches"]] == [str(f)], out
    assert tree_signature(target) == before
    restore(env, target, "--verify", "--overwrite", "always")
    assert f.read_bytes() == (env["src"] / "d" / "f1").read_bytes()


def test_overwrite_replaces_a_planted_link_never_writes_through_it(shm_dir: Path,
                                                                  env: dict) -> None:
    target = shm_dir / "t"
    restore(env, target)
    dst = under(target, env["src"])
    victim = shm_dir / "victim"
    victim.write_text("outside the target\n")
    (dst / "d" / "f1").unlink()
    os.symlink(victim, dst / "d" / "f1")
    restore(env, target, "--overwrite", "if-changed")
    assert victim.read_text() == "outside the target\n"
    assert not (dst / "d" / "f1").is_symlink()
    assert_same_tree(env["src"], dst)
