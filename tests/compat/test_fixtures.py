"""Every frozen fixture repository (tests/compat/v*/) must stay readable, byte for byte.

Fixtures are made once per released format version by make_fixture.py and never
regenerated; a failure here means a change broke reading an existing repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from repofs.spec import NAMESPACES, NS_DATA, NS_INDEX, unpack
from tests.compat.make_fixture import describe

HERE = Path(__file__).parent
FIXTURES = sorted(p for p in HERE.iterdir() if (p / "manifest.json").is_file())


def test_there_is_a_fixture_for_the_current_version() -> None:
    from repofs.spec import REPO_VERSION

    assert (HERE / f"v{REPO_VERSION}" / "manifest.json").is_file()


def copy_fixture(fixture: Path, work: Path) -> Path:
    repo = work / "repo"
    shutil.copytree(fixture / "repo", repo)  # git does not keep 0440; work on a copy
    # nor empty directories: lay out the ones a repository always has
    for ns in (*NAMESPACES, "tmp"):
        (repo / ns).mkdir(exist_ok=True)
    for i in range(256):
        (repo / NS_DATA / f"{i:02x}").mkdir(exist_ok=True)
    return repo


def version_of(repo: Path) -> int:
    v = unpack((repo / "config").read_bytes(), "config", "config")["v"]
    assert isinstance(v, int)
    return v


def trailer_forms(repo: Path) -> set[int]:
    """Header byte 7 of every pack: 0 (format 1 trailer) or 1 (format 2)."""
    return {p.read_bytes()[7] for p in (repo / NS_DATA).rglob("*") if p.is_file()}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_fixture_is_of_its_version(fixture: Path) -> None:
    version = int(fixture.name.removeprefix("v"))
    assert version_of(fixture / "repo") == version
    assert trailer_forms(fixture / "repo") == {0 if version == 1 else 1}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_fixture_restores_exactly(fixture: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    manifest = json.loads((fixture / "manifest.json").read_text())
    work = tmp_path_factory.mktemp("compat")
    repo = copy_fixture(fixture, work)
    env = {**os.environ, "REPOFS_PASSPHRASE": manifest["passphrase"], "REPOFS_NO_PROGRESS": "1",
           "XDG_STATE_HOME": str(work / "state"), "XDG_CACHE_HOME": str(work / "cache")}

    def run(*args: str) -> bytes:
        return subprocess.run(["repofs", *args, "-r", str(repo)], env=env, check=True,
                              stdout=subprocess.PIPE).stdout

    listed = {s["id"]: s for s in json.loads(run("snapshots", "--json"))}
    assert set(listed) == {s["id"] for s in manifest["snapshots"]}
    assert not set(manifest.get("removed", [])) & set(listed)  # hidden by a removal record
    if "writer_passphrase" in manifest:  # the write-only key still opens, and reads nothing
        writer = {**env, "REPOFS_PASSPHRASE": manifest["writer_passphrase"]}
        snaps = subprocess.run(["repofs", "snapshots", "--json", "-r", str(repo)], env=writer,
                               check=True, stdout=subprocess.PIPE).stdout
        assert {s["id"] for s in json.loads(snaps)} == set(listed)
        denied = subprocess.run(["repofs", "ls", "-r", str(repo), "latest"], env=writer,
                                capture_output=True)
        assert denied.returncode == 2 and b"cannot read" in denied.stderr
    for snap in manifest["snapshots"]:
        if "stdin" in snap:
            data = run("dump", snap["id"], snap["stdin"])
            assert hashlib.sha256(data).hexdigest() == snap["sha256"]
            continue
        assert listed[snap["id"]]["name"] == snap["name"]
        target = work / f"restore-{snap['id'][:8]}"
        run("restore", f"{snap['name']}:{snap['root']}", "--target", str(target))
        assert describe(target) == snap["tree"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_write_only_repair_and_create_keep_the_format(
        fixture: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every index segment lost: the write-only key repairs a format 2 repository (its
    trailers open with the shared key) and is told to use a full key on a format 1 one;
    a create never changes a repository's format (old builds still read a format 1)."""
    manifest = json.loads((fixture / "manifest.json").read_text())
    work = tmp_path_factory.mktemp("compat-repair")
    repo = copy_fixture(fixture, work)
    version = version_of(repo)
    env = {**os.environ, "REPOFS_PASSPHRASE": manifest["writer_passphrase"],
           "REPOFS_NO_PROGRESS": "1", "XDG_STATE_HOME": str(work / "state"),
           "XDG_CACHE_HOME": str(work / "cache")}
    for seg in (repo / NS_INDEX).iterdir():
        seg.unlink()
    r = subprocess.run(["repofs", "repair", "-r", str(repo)], env=env, capture_output=True)
    if version == 1:
        assert r.returncode == 2 and b"full or admin key" in r.stderr
        assert not list((repo / NS_INDEX).iterdir())
    else:
        assert r.returncode == 0, r.stderr
        assert len(list((repo / NS_INDEX).iterdir())) == 1
    src = work / "src"
    src.mkdir()
    (src / "new").write_bytes(os.urandom(5000))
    subprocess.run(["repofs", "create", "-r", str(repo), str(src)], env=env, check=True,
                   capture_output=True)
    assert version_of(repo) == version
    assert trailer_forms(repo) == {0 if version == 1 else 1}
