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

from repofs.spec import NAMESPACES, NS_DATA
from tests.compat.make_fixture import describe

HERE = Path(__file__).parent
FIXTURES = sorted(p for p in HERE.iterdir() if (p / "manifest.json").is_file())


def test_there_is_a_fixture_for_the_current_version() -> None:
    from repofs.spec import FORMAT_VERSION

    assert (HERE / f"v{FORMAT_VERSION}" / "manifest.json").is_file()


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_fixture_restores_exactly(fixture: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    manifest = json.loads((fixture / "manifest.json").read_text())
    work = tmp_path_factory.mktemp("compat")
    repo = work / "repo"
    shutil.copytree(fixture / "repo", repo)  # git does not keep 0440; work on a copy
    # nor empty directories: lay out the ones a repository always has
    for ns in (*NAMESPACES, "tmp"):
        (repo / ns).mkdir(exist_ok=True)
    for i in range(256):
        (repo / NS_DATA / f"{i:02x}").mkdir(exist_ok=True)
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
