"""SIGKILL a real ``repofs create`` at random moments, many times.

After every batch of kills the repository must open, list its snapshots, and
every snapshot whose create exited 0 must still hold exactly the files it was
acknowledged with. A killed create may or may not have committed its snapshot;
if it did, that snapshot must be complete too.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import time
from pathlib import Path

from repofs.model import FILE
from repofs.repository import Repository

KILLS = int(os.environ.get("REPOFS_SIGKILL_COUNT", "200"))
PASS = "sigkill"


def write_generation(src: Path, gen: int, rng: random.Random) -> dict[str, str]:
    """Mutate the tree a little; return path -> sha256 of every file."""
    src.mkdir(exist_ok=True)
    if gen == 0:
        for i in range(4):
            (src / f"large{i}.bin").write_bytes(rng.randbytes(3 * 1024 * 1024))
    i = rng.randrange(4)
    data = bytearray((src / f"large{i}.bin").read_bytes())
    pos = rng.randrange(len(data))
    data[pos : pos + 64] = rng.randbytes(64)
    (src / f"large{i}.bin").write_bytes(bytes(data))
    (src / f"note{gen % 7}.txt").write_text(f"generation {gen}\n" * rng.randrange(1, 500))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}


def snapshot_files(repo: Repository, snap_id: str, src: Path) -> dict[str, str]:
    snap = next(s for s in repo.snapshots.list() if s.id == snap_id)
    assert snap.body is not None
    entry = repo.lookup_path(snap.body.tree, os.fsencode(src).lstrip(b"/"))
    out = {}
    for path, e in repo.walk(entry, b"/"):
        if e.type == FILE:
            h = hashlib.sha256()
            for _off, data, size in repo.iter_chunks(e):
                h.update(data if data is not None else bytes(size))
            out[os.fsdecode(path.rsplit(b"/", 1)[1])] = h.hexdigest()
    return out


def verify(repo_dir: Path, acked: dict[str, dict[str, str]], src: Path) -> set[str]:
    repo = Repository.open(repo_dir, PASS.encode())
    ids = {s.id for s in repo.snapshots.list()}  # raises if the chain is broken
    for snap_id, files in acked.items():
        assert snap_id in ids, f"acknowledged snapshot {snap_id} is gone"
        assert snapshot_files(repo, snap_id, src) == files
    return ids


def test_sigkill_create_at_random_moments(shm_dir: Path) -> None:
    rng = random.Random(20261123)
    src, repo_dir = shm_dir / "src", shm_dir / "repo"
    env = {**os.environ, "REPOFS_PASSPHRASE": PASS, "REPOFS_NO_PROGRESS": "1",
           "XDG_CACHE_HOME": str(shm_dir / "cache")}
    subprocess.run(["repofs", "init", "-r", str(repo_dir)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    acked: dict[str, dict[str, str]] = {}
    kills = gen = 0
    started = time.monotonic()
    duration = 1.0  # replaced by the measured length of a whole create
    while kills < KILLS:
        files = write_generation(src, gen, rng)
        gen += 1
        proc = subprocess.Popen(["repofs", "create", "--json", "-r", str(repo_dir), str(src)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # most runs are killed somewhere between start-up and commit; every eighth is
        # left to finish, so there are acknowledged snapshots to protect
        timeout = None if gen % 8 == 1 else rng.uniform(0.05, duration)
        t0 = time.monotonic()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            kills += 1
            if kills % 50 == 0:
                verify(repo_dir, acked, src)
            continue
        assert proc.returncode == 0, err.decode()
        acked[json.loads(out)["snapshot"]] = files
        if timeout is None:
            duration = time.monotonic() - t0
    ids = verify(repo_dir, acked, src)
    # snapshots committed by killed creates are complete as well: each restores to
    # *some* generation's files without an integrity error
    repo = Repository.open(repo_dir, PASS.encode())
    for snap_id in ids - set(acked):
        snapshot_files(repo, snap_id, src)
    print(f"\nsigkill: {kills} kills, {len(acked)} creates finished, {len(ids)} snapshots, "
          f"{time.monotonic() - started:.0f}s")
    assert acked, "no create ever finished: the kill window is too short to prove anything"
