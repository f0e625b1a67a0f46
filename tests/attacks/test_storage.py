"""Raw write access to the storage.

With ``repofs serve --immutable`` (on ext4: tmpfs is not what deployments use), every
object is ``chattr +i`` once complete, so even a process with the repository owner's full
file access, root without CAP_LINUX_IMMUTABLE included, cannot overwrite, append to,
truncate, delete or rename anything, and every snapshot still restores. Without the
flag (a plain directory, or the server's own account taken over), every such change is
named by ``repofs check --read-data``. Planted lock and temp files block nobody.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from repofs import immutable, spec
from repofs.envelope import HEADER_LEN
from repofs.index import decode_segment

from .victim import Client, Victim

DROP_CAP = "setpriv --bounding-set -linux_immutable --inh-caps=-linux_immutable"

ATTEMPTS = r"""
import json, os, sys
out = {}
for path in sys.argv[1:]:
    r = {}
    for how in ("overwrite", "append", "truncate", "delete", "rename", "chmod", "link-over"):
        try:
            if how == "overwrite":
                os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
            elif how == "append":
                fd = os.open(path, os.O_WRONLY | os.O_APPEND); os.write(fd, b"x"); os.close(fd)
            elif how == "truncate":
                os.truncate(path, 1)
            elif how == "delete":
                os.unlink(path)
            elif how == "rename":
                os.rename(path, path + ".moved")
            elif how == "chmod":
                os.chmod(path, 0o666)
            elif how == "link-over":
                open(path + ".new", "wb").close(); os.rename(path + ".new", path)
            r[how] = "done"
        except OSError as e:
            r[how] = e.errno
    out[path] = r
print(json.dumps(out))
"""


@pytest.fixture
def disk_victim(victim_factory: Callable[..., Victim]) -> Iterator[Victim]:
    base = Path(tempfile.mkdtemp(prefix="repofs-attack-immutable-", dir="/var/tmp"))
    try:
        yield victim_factory(serve_flags="--immutable", base=base)
    finally:
        subprocess.run(["chattr", "-R", "-i", str(base)], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_immutable_objects_resist_the_owner(disk_victim: Victim, fake_ssh: Path) -> None:
    v = disk_victim
    fresh = Client(v.base / "srv" / "fresh", v.base / "fresh-cache", fake_ssh, "--immutable")
    fresh.restrict.mkdir()
    fresh.init()
    snap = fresh.create(v.expected[1])["snapshot"]
    objects = sorted(p for p in fresh.restrict.rglob("*") if p.is_file())
    kinds = {p.relative_to(fresh.restrict).parts[0] for p in objects}
    assert kinds >= {"config", spec.NS_KEYS, spec.NS_DATA, spec.NS_INDEX, spec.NS_SNAPSHOTS}
    assert all(immutable.is_immutable(p) for p in objects), objects
    r = subprocess.run([*DROP_CAP.split(), sys.executable, "-c", ATTEMPTS, *map(str, objects)],
                       capture_output=True, text=True, check=True)
    results = json.loads(r.stdout)
    for path, outcome in results.items():
        assert all(v == 1 for v in outcome.values()), (path, outcome)  # EPERM, every time
    chattr = subprocess.run([*DROP_CAP.split(), "chattr", "-i", str(objects[0])],
                            capture_output=True, text=True)
    assert chattr.returncode != 0 and "Operation not permitted" in chattr.stderr
    target = v.base / "restore"
    fresh.restore_exact(snap, v.expected[1], v.expected[1], target)


def test_immutable_needs_the_capability(disk_victim: Victim) -> None:
    v = disk_victim
    r = v.client.run("snapshots", env={"FAKE_SSH_PREFIX": DROP_CAP}, expect=2)
    assert len(r.err_lines) == 1 and "refused by the server: --immutable: the immutable " \
        "flag needs CAP_LINUX_IMMUTABLE" in r.err_lines[0], r


def tamper(victim: Victim, how: str) -> list[str]:
    """Change one pack, one index segment and the first snapshot ``how``; their names."""
    r = victim.restrict
    repo = victim.client.attacker()
    seg = sorted((r / spec.NS_INDEX).iterdir())[0]
    data = repo.get_verified(spec.NS_INDEX, seg.name, "index segment")
    listed = {p for p, _ in decode_segment(
        repo.open_cipher(data[:HEADER_LEN], spec.KIND_INDEX, seg.name), data)}
    # a data pack the tampered segment does not list, so each change is seen on its own
    data_packs = {pk for pk, e in repo.index.entries() if e.blob_type == spec.BLOB_DATA}
    pack = next(p for p in sorted((r / spec.NS_DATA).glob("*/*"))
                if p.name not in listed and p.name in data_packs)
    snap = r / spec.NS_SNAPSHOTS / victim.snaps[0]
    names = []
    for p in (pack, seg, snap):
        data = p.read_bytes()
        names.append(p.name)
        if how == "overwrite":
            p.write_bytes(os.urandom(len(data)))
        elif how == "append":
            p.write_bytes(data + b"\0")
        elif how == "truncate":
            p.write_bytes(data[:-1])
        elif how == "delete":
            p.unlink()
        elif how == "rename":
            other = p.with_name(("f" if p.name[0] != "f" else "0") + p.name[1:])
            p.rename(other)
            names.append(other.name)
    return names


@pytest.mark.parametrize("how", ["overwrite", "append", "truncate", "delete", "rename"])
def test_raw_changes_are_named_by_check(victim: Victim, how: str) -> None:
    victim.client.snapshots()
    names = tamper(victim, how)
    r = victim.client.run("check", "--read-data", expect=2)
    problems = [ln for ln in r.text.splitlines()[:-1] if not ln.startswith(("note:", "lost:"))]
    if how in ("delete", "rename"):  # nothing names an index segment: its loss shows as
        gone = names.pop(2 if how == "rename" else 1)  # packs no segment lists, recovered
        assert any(ln.startswith("note:") and "listed by no index segment" in ln
                   for ln in r.text.splitlines()), (gone, r)
    for name in names:
        assert any(name in ln for ln in problems), (name, r.text)
    assert r.text.splitlines()[-1].startswith(f"{len(problems)} problems found"), r.text
    # every reader leaves the damaged snapshot out, names it, and lists the rest (DAMAGE)
    r = victim.client.run("snapshots", expect=1)
    assert r.err_lines and all(ln.startswith("repofs: warning: ") for ln in r.err_lines), r
    assert victim.snaps[0] in r.err and victim.snaps[1][:8] in r.text, r


def test_planted_lock_and_temp_files_block_nobody(victim: Victim) -> None:
    r = victim.restrict
    for p in (r / "lock", r / "lock.exclusive", r / spec.NS_SNAPSHOTS / "lock",
              r / "tmp" / ".0123456789abcdef0123456789abcdef", r / spec.NS_DATA / "00" / "lock",
              r / spec.NS_INDEX / ("0" * 64 + ".tmp")):
        p.write_bytes(b"I hold the lock")
    (r / spec.NS_KEYS / ("f" * 64)).mkdir()  # a directory where a key file could be
    victim.client.create(victim.src)
    victim.restores_exactly()
    lines = victim.client.run("check").text.splitlines()
    assert lines[-1].startswith("no problems found"), lines
