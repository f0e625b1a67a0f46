#!/usr/bin/env python3
"""The blob index at scale: memory and open time of a repository indexing N blobs.

Builds two real repositories with the same one-file snapshot: ``one`` holds only it,
``big`` also has index segments naming N synthetic blobs (written with
``write_index_segment``; the packs they name do not exist: only the index is measured,
nothing reads those blobs). Then, for the old index (the dict of packed rows,
``tests/unit/blobindex_reference.py``, loaded into the CLI in place of the table, no
cache) and the new one (``repofs.blobtable`` + ``repofs.blobcache``; "cold": no cache
yet, it is built and written; "warm": mapped from the cache), it measures:

- ``snapshots s``     wall time of ``repofs snapshots`` on ``big``;
- ``B/blob``          (peak RSS of ``repofs snapshots`` on ``big`` minus that on ``one``)
                      / N: what the index costs a command, per blob;
- ``mount s``         until ``repofs mount`` returns (the mount is ready);
- ``daemon MiB``      RSS of the mount daemon plus the private memory of its decoders,
                      after ``ls -lR`` of the snapshot;
- ``cache MiB``       the size of the cache file (mapped, read only where touched).

Usage::

    bench/bench_index.py [--blobs 1000000] [--segments 20] [--work /dev/shm/repofs-bench-index]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_core  # noqa: E402
import bench_mount  # noqa: E402

from repofs import crypto, spec  # noqa: E402
from repofs.envelope import HEADER_LEN  # noqa: E402
from repofs.pack import BlobEntry  # noqa: E402
from repofs.repository import Repository  # noqa: E402

PASS = b"bench-index-passphrase"
KDF = {"t": 3, "m": 64 * 1024, "p": 1}  # cheap: the passphrase is not what is measured

# The CLI with the index of before (a dict, no cache), for the side-by-side columns.
OLD = f"""
import sys
sys.path.insert(0, {str(HERE.parent)!r})
from tests.unit.blobindex_reference import BlobIndex
import repofs.repository as r
r.BlobTable = BlobIndex
r.BlobCache.of = classmethod(lambda cls, *a: None)
from repofs_cli.main import main
sys.argv = ["repofs", *sys.argv[1:]]
main()
"""


def build(work: Path, blobs: int, segments: int) -> tuple[Path, Path]:
    src = work / "src"
    src.mkdir(parents=True)
    (src / "file").write_bytes(b"one file\n" * 100)
    repos = []
    for name, n in (("one", 0), ("big", blobs)):
        path = work / name
        repo = Repository.init(path, PASS, KDF)
        repo.index_cache = None
        per = -(-n // segments) if n else 0
        done = 0
        key = crypto.random_bytes(32)
        while done < n:
            k = min(per, n - done)
            entries = [BlobEntry(crypto.keyed_id(key, b"%d" % i), spec.BLOB_DATA, i % 65536,
                                 HEADER_LEN + 1000 * (i % 16000), 1000, 900)
                       for i in range(done, done + k)]
            packs = [(crypto.object_name(b"pack %d" % j), entries[j:j + 4096])
                     for j in range(0, k, 4096)]
            repo.write_index_segment(packs)
            done += k
        repos.append(path)
    return repos[0], repos[1]


def env_for(work: Path, repo: Path) -> dict[str, str]:
    env = dict(os.environ, REPOFS_PASSPHRASE=PASS.decode(), REPOFS_REPO=str(repo),
               REPOFS_NO_PROGRESS="1", XDG_CACHE_HOME=str(work / "cache"),
               XDG_STATE_HOME=str(work / "state"))
    env.pop("REPOFS_ADMIN_PASSPHRASE", None)
    return env


def command(kind: str, *args: str) -> list[str]:
    py = str(HERE.parent / ".venv" / "bin" / "python")
    if kind == "old":
        return [py, "-c", OLD, *args]
    return [py, "-m", "repofs_cli.main", *args]


def snapshots(kind: str, work: Path, repo: Path, log: Path) -> tuple[float, int]:
    rc, wall, _, rss = bench_core.measure(command(kind, "snapshots"), env_for(work, repo), log)
    if rc != 0:
        raise SystemExit(f"snapshots failed ({kind}, {repo}): see {log}")
    return wall, rss


def mount(kind: str, work: Path, repo: Path, log: Path) -> tuple[float, float]:
    mp = work / "mnt"
    mp.mkdir(exist_ok=True)
    env = env_for(work, repo)
    t0 = time.monotonic()
    with open(log, "ab") as out:
        subprocess.run(command(kind, "mount", str(mp)), env=env, stdout=out, stderr=out,
                       stdin=subprocess.DEVNULL, check=True)
    took = time.monotonic() - t0
    try:
        subprocess.run(["ls", "-lR", str(mp)], stdout=subprocess.DEVNULL, check=True)
        rss_kib, _ = bench_mount.serving_memory_kib(bench_mount.daemon_pids(mp))
    finally:
        subprocess.run(["fusermount3", "-u", str(mp)], check=False)
        t1 = time.monotonic()
        while bench_mount.daemon_pids(mp) and time.monotonic() - t1 < 30:
            time.sleep(0.1)
    return took, rss_kib / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blobs", type=int, default=1_000_000)
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--work", type=Path, default=Path("/dev/shm/repofs-bench-index"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    log = a.work / "log"
    t0 = time.monotonic()
    one, big = build(a.work, a.blobs, a.segments)
    print(f"built: {a.blobs} blobs in {a.segments} segments, "
          f"{sum(f.stat().st_size for f in (big / 'index').rglob('*') if f.is_file()) >> 20} "
          f"MiB of segments, {time.monotonic() - t0:.1f} s", flush=True)
    for repo in (one, big):  # a snapshot in each: what snapshots lists and mount shows
        src = a.work / "src"
        rc = subprocess.run(command("new", "create", str(src)), env=env_for(a.work, repo),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            check=False).returncode
        if rc != 0:
            raise SystemExit(f"create failed in {repo}")
    cache = a.work / "cache"
    rows = []
    for kind, label in (("old", "old (dict)"), ("new", "new, cold cache"),
                        ("new", "new, warm cache")):
        cold = label.endswith("cold cache")
        base_wall, base_rss = snapshots(kind, a.work, one, log)
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
        wall, rss = snapshots(kind, a.work, big, log)
        per_blob = (rss - base_rss) * 1024 / a.blobs
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
        took, daemon = mount(kind, a.work, big, log)
        size = sum(f.stat().st_size for f in cache.rglob("blobtable")) if cache.exists() else 0
        rows.append((label, wall, base_wall, per_blob, rss / 1024, took, daemon,
                     size / 2**20))
        print(f"{label:16} snapshots {wall:6.2f} s (one-file repo {base_wall:4.2f} s)  "
              f"{per_blob:6.1f} B/blob  "
              f"(peak RSS {rss / 1024:6.0f} MiB)  mount {took:5.2f} s  "
              f"daemon {daemon:6.0f} MiB  cache {size / 2**20:5.0f} MiB", flush=True)
    print(f"\n| index ({a.blobs:,} blobs) | snapshots s | same, one-file repo s | B/blob "
          "| snapshots peak RSS MiB | mount s | daemon MiB after ls -lR | cache file MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for label, wall, base_wall, per_blob, rss, took, daemon, size in rows:
        print(f"| {label} | {wall:.2f} | {base_wall:.2f} | {per_blob:.0f} | {rss:.0f} | "
              f"{took:.2f} | {daemon:.0f} | {size:.0f} |")
    if not a.keep:
        shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
