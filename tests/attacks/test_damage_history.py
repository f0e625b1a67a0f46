"""Damage in the history's namespaces (snapshots/, removals/, condemned/, keys/) stays local.

For each namespace and each damage (a flipped bit, truncation, garbage stored under its own
BLAKE3 name as any writer can store it, a well-formed object of another repository,
deletion), the real CLI runs ``snapshots``, ``ls``, ``dump``, ``restore latest``,
``create`` and ``check``: every command finishes, one warning names the object
(repofs-format(5), DAMAGE), the exit code is the documented one (1 when something was
left out, 0 when the command does not read that namespace, 2 for ``check`` with a
problem), and the newest snapshot still restores (and dumps) byte for byte. One plant
arrives through ``repofs serve`` as a client sends it. The mount leg of the matrix is
test_damage_mount.

One small victim repository (an admin key, a second key file, four snapshots, a removal
record and a condemn record) is built per module and copied for each case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from repofs import crypto, keys, signed, spec
from repofs.model import SnapshotBody
from repofs.repository import Repository, _encode_config
from repofs.store import LocalStore
from tests.integration.harness import Cli, Result, assert_same_tree

from .wire import Wire

ADMIN = "damage test admin passphrase"
SECOND = "damage test second passphrase"
NAMESPACES = (spec.NS_SNAPSHOTS, spec.NS_REMOVALS, spec.NS_CONDEMNED, spec.NS_KEYS)
DAMAGES = ("flip", "truncate", "garbage", "foreign", "delete")


@dataclass
class Built:
    """A repository with every kind of history object, and what its newest snapshot holds."""

    path: Path
    cache: Path
    src: Path
    expected: Path
    snaps: list[str]  # listed: the first one was forgotten and pruned
    first: str
    objects: dict[str, str]  # namespace -> the object damaged there

    def cli(self) -> Cli:
        return Cli(self.path, self.cache)


def _build(base: Path, name: str) -> Built:
    cli = Cli(base / name, base / f"{name}-cache")
    admin = {"REPOFS_ADMIN_PASSPHRASE": ADMIN}
    cli.run("init", env=admin)
    mine = set(os.listdir(cli.repo / spec.NS_KEYS))
    cli.run("key", "add", env={"REPOFS_NEW_PASSPHRASE": SECOND})
    second = sorted(set(os.listdir(cli.repo / spec.NS_KEYS)) - mine)
    src = base / f"{name}-src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.bin").write_bytes(os.urandom(40_000))
    (src / "only-first.bin").write_bytes(os.urandom(300_000))  # makes prune condemn a pack
    snaps = []
    for gen in range(4):
        (src / "a.txt").write_bytes(b"generation %d\n" % gen)
        snaps.append(cli.create(src)["snapshot"])
        if gen == 0:
            (src / "only-first.bin").unlink()
    expected = base / f"{name}-expected"
    subprocess.run(["cp", "-a", str(src), str(expected)], check=True)
    cli.run("forget", snaps[0], env=admin)
    cli.run("prune", "--grace", "0", env=admin)
    removal, = os.listdir(cli.repo / spec.NS_REMOVALS)
    condemn, = os.listdir(cli.repo / spec.NS_CONDEMNED)
    return Built(cli.repo, cli.cache, src, expected, snaps[1:], snaps[0], {
        spec.NS_SNAPSHOTS: snaps[2], spec.NS_REMOVALS: removal,
        spec.NS_CONDEMNED: condemn, spec.NS_KEYS: second[0]})


def _other(base: Path) -> Built:
    """Another repository, made in-process (fast): one well-formed object per namespace,
    authenticated with its own keys and signed with its own admin key."""
    master = keys.generate(crypto.random_bytes(32))
    repo = Repository(LocalStore.create(base / "other", _encode_config(master.repo_id)),
                      master)
    assert master.admin is not None
    snap = repo.snapshots.commit(SnapshotBody(
        tree=b"\x01" * 32, paths=(b"/x",), host="h", user="u", tags=(), name=None,
        hardlinks={}, stats={}), time.time_ns())
    objects = {
        spec.NS_SNAPSHOTS: snap.id,
        spec.NS_REMOVALS: repo.put_object(spec.NS_REMOVALS, signed.sign_removal(
            master.admin, master.repo_id, {snap.id: snap.head}, time.time_ns(), True)),
        spec.NS_CONDEMNED: repo.put_object(spec.NS_CONDEMNED, signed.sign_condemn(
            master.admin, master.repo_id, [crypto.object_name(b"p")], [], time.time_ns())),
        spec.NS_KEYS: repo.put_object(spec.NS_KEYS, keys.wrap(master, SECOND.encode())),
    }
    return Built(base / "other", base, base, base, [], "", objects)


@pytest.fixture(scope="module")
def built(attack_dir: Path) -> tuple[Built, Built]:
    """The victim, and another repository whose objects are well formed but not its own."""
    return _build(attack_dir, "victim"), _other(attack_dir)


@pytest.fixture
def copy(built: tuple[Built, Built], tmp_path: Path) -> Iterator[Built]:
    victim = built[0]
    mine = Built(tmp_path / "repo", tmp_path / "cache", victim.src, victim.expected,
                 victim.snaps, victim.first, victim.objects)
    shutil.copytree(victim.path, mine.path, symlinks=True)
    shutil.copytree(victim.cache, mine.cache, symlinks=True)  # the heads this client saw
    yield mine


def _path(repo: Path, ns: str, name: str) -> Path:
    return repo / ns / name


def damage(victim: Built, other: Built, ns: str, how: str) -> str:
    """Damage ``ns`` of ``victim`` the way ``how`` says; the name of the object it hit."""
    if how == "garbage":  # what a writer can store anywhere: the name is the hash
        data = b"garbage garbage"
        name = crypto.object_name(data)
        _path(victim.path, ns, name).write_bytes(data)
        return name
    if how == "foreign":
        name = other.objects[ns]
        shutil.copyfile(_path(other.path, ns, name), _path(victim.path, ns, name))
        return name
    name = victim.objects[ns]
    path = _path(victim.path, ns, name)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x04
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.unlink()
    return name


def _expect(ns: str, how: str, victim: Built, hit: str) -> tuple[str, int, int, int]:
    """(what the one warning names, exit code of snapshots and restore, of create, of
    check); no warning where the exit code is 0."""
    if ns == spec.NS_SNAPSHOTS:  # every listing reads them: left out, or a gap named
        return hit, 1, 1, 2
    if ns == spec.NS_REMOVALS:
        if how == "delete":  # the forgotten, pruned first snapshot is a gap again
            return victim.first, 1, 1, 2
        return hit, 1, 1, 2
    if ns == spec.NS_CONDEMNED:  # only writers (create) and prune read them
        return (hit, 0, 0, 0) if how == "delete" else (hit, 0, 1, 2)
    # keys: the others open around it; one of another repository, or one that is gone, is
    # no damage (it would open with some other passphrase)
    return (hit, 0, 0, 0) if how in ("foreign", "delete") else (hit, 1, 1, 2)


def naming(r: Result, name: str) -> list[str]:
    return [ln for ln in r.err_lines if name in ln]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("ns", NAMESPACES)
def test_damage_in_the_history_stays_local(copy: Built, built: tuple[Built, Built],
                                           tmp_path: Path, ns: str, how: str) -> None:
    hit = damage(copy, built[1], ns, how)
    named, rc_read, rc_create, rc_check = _expect(ns, how, copy, hit)
    cli = copy.cli()
    r = cli.run("snapshots", "--json", expect=rc_read)
    listed = [s["id"] for s in r.json()]  # type: ignore[union-attr]
    gone = {hit} if ns == spec.NS_SNAPSHOTS and how in ("flip", "truncate", "delete") else set()
    assert listed == [s for s in copy.snaps if s not in gone], r
    if rc_read:
        assert len(naming(r, named)) == 1, r
        assert all(ln.startswith("repofs: warning: ") for ln in r.err_lines), r
    else:
        assert r.err_lines == [], r
    for r in (cli.run("ls", "latest", expect=rc_read),
              cli.run("dump", "latest", copy.src / "sub" / "data.bin", expect=rc_read)):
        assert len(naming(r, named)) == rc_read, r
        assert all(ln.startswith("repofs: warning: ") for ln in r.err_lines), r
    assert os.fsencode(copy.src / "sub" / "data.bin") in r.args and \
        r.out == (copy.expected / "sub" / "data.bin").read_bytes()
    r = cli.run("create", "--json", copy.src, expect=rc_create)
    assert len(naming(r, named)) == rc_create, r
    new = r.json()["snapshot"]  # type: ignore[index]
    r = cli.run("check", expect=rc_check)
    assert any(named in ln for ln in r.text.splitlines()) == bool(rc_check), r
    if rc_read:  # (a command that does not read the namespace has nothing to go past)
        r = cli.run("restore", "--json", "latest", "--target", tmp_path / "t",
                    expect=rc_read)
        assert len(naming(r, named)) == rc_read and r.json()["snapshot"] == new, r
        assert_same_tree(copy.expected, tmp_path / "t" / os.path.relpath(copy.src, "/"))


def test_the_only_key_file_that_opens_damaged_is_an_error(copy: Built) -> None:
    """What the user asked for is itself unusable: exit 2, the key file named."""
    r = copy.cli().run("key", "list", "--json")
    mine = next(k["name"] for k in r.json() if k["current"])  # type: ignore[union-attr]
    path = _path(copy.path, spec.NS_KEYS, mine)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1])
    r = copy.cli().run("snapshots", expect=2)
    assert r.err_lines == [f"repofs: error: key file {mine} is corrupt or tampered: content "
                           "does not match its name"], r


def test_a_damaged_snapshot_asked_for_by_id_is_an_error(copy: Built, tmp_path: Path) -> None:
    bad = damage(copy, copy, spec.NS_SNAPSHOTS, "flip")
    r = copy.cli().run("restore", bad, "--target", tmp_path / "t", expect=2)
    assert r.err_lines[-1] == (f"repofs: error: snapshot {bad} is corrupt or tampered: "
                               "content does not match its name"), r
    assert not (tmp_path / "t").exists()


def test_garbage_planted_through_serve_blocks_no_one(copy: Built, tmp_path: Path) -> None:
    """A client of ``repofs serve`` (which may only add objects) puts 15 bytes under their
    own name in snapshots/; the admin then forgets the object by the name check reports,
    and no command names it any more; prune deletes it."""
    data = b"fifteen bytes!!"
    name = crypto.object_name(data)
    w = Wire(copy.path)
    w.hello()
    answer = w.ask({"op": "put", "ns": spec.NS_SNAPSHOTS, "name": name, "size": len(data),
                    "data": data})
    assert answer == {"ok": True, "created": True}, answer
    assert w.finish()[0] == 0
    cli = copy.cli()
    for cmd in (("snapshots",), ("ls", "latest"), ("create", copy.src)):
        r = cli.run(*cmd, expect=1)
        assert len(r.err_lines) == 1 and name in r.err_lines[0], r
        assert "truncated header" in r.err, r
    r = cli.run("check", expect=2)
    assert [ln for ln in r.text.splitlines() if name in ln] == [
        f"snapshot {name}: truncated header; affects snapshot {name[:8]}"], r
    admin = {"REPOFS_ADMIN_PASSPHRASE": ADMIN}
    r = cli.run("forget", name[:12], env=admin)
    assert name[:8] in r.text and "unknown" in r.text, r
    for cmd in (("snapshots",), ("check",)):
        r = cli.run(*cmd)
        assert r.err_lines == [], r
    r = cli.run("prune", "--grace", "0", env=admin)
    assert not _path(copy.path, spec.NS_SNAPSHOTS, name).exists()
    cli.run("check")
