#!/usr/bin/env python3
"""repofs on S3 (a local Ceph RGW) vs restic's s3 backend on the same server, and vs
repofs' own local store, in the same run: create, then restore.

The gateway is the one the tests start (tests/s3/ceph.py: a one-node Ceph cluster with
a memstore OSD under ``--work``), so everything is on this machine and on tmpfs: what is
measured is each tool's own work plus the S3 round trips, not a network. Each round
runs every variant back to back on a fresh bucket (load from elsewhere on the machine
hits them alike); the table shows medians over the rounds, and the ratios are the
medians of the per-round ratios.

Variants: ``repofs-s3`` (this tree, s3+http://), ``repofs-local`` (this tree, a
directory), ``restic-s3`` (restic's s3 backend, repository format 2, compression auto);
``--rev REV`` runs repofs from ``git archive REV``, and ``--base-rev REV`` adds
``base-s3``: repofs from that commit on S3 (an A/B of a change in the same run).

Usage::

    .venv/bin/python bench/bench_s3.py [--work /dev/shm/repofs-bench-s3] [--size-mib 200]
                                       [--rounds 3] [--rev REV] [--base-rev REV]
                                       [--no-restic] [--latency-ms MS]
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import shutil
import statistics
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import bench_core  # noqa: E402
from bench_core import PASSPHRASE, measure, verify  # noqa: E402

from tests.s3.ceph import Ceph  # noqa: E402
from tests.s3.faultproxy import FaultProxy  # noqa: E402

MiB = 1 << 20
STEPS = ("create", "restore")


def make_corpus(root: Path, size_mib: int, seed: int = 7) -> int:
    """A tree of ``size_mib``: 60% incompressible files of 1-8 MiB, 40% text-like files of
    4-64 KiB in nested directories (zstd shrinks those). Reused if already there."""
    stamp = root / ".corpus"
    if stamp.exists() and stamp.read_text() == f"{size_mib} {seed}":
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) - \
            stamp.stat().st_size
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9)))
             for _ in range(2000)]
    total, big_goal = 0, size_mib * MiB * 6 // 10
    i = 0
    while total < big_goal:
        d = root / "media" / f"{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        n = rng.randint(1, 8) * MiB
        (d / f"blob{i}.bin").write_bytes(rng.randbytes(n))
        total, i = total + n, i + 1
    while total < size_mib * MiB:
        d = root / "src" / f"p{i % 11}" / f"m{i % 37}"
        d.mkdir(parents=True, exist_ok=True)
        n = rng.randint(4, 64) * 1024
        text = b" ".join(rng.choices(words, k=n // 5))[:n]
        (d / f"f{i}.txt").write_bytes(text)
        total, i = total + len(text), i + 1
    stamp.write_text(f"{size_mib} {seed}")
    return total


def repofs_cmd(pythonpath: str, *args: str) -> list[str]:
    python = HERE.parent / ".venv" / "bin" / "python"
    if pythonpath:
        return [str(python), "-m", "repofs_cli.main", *args]
    return [str(HERE.parent / ".venv" / "bin" / "repofs"), *args]


def env_for(tool: str, cache: Path, creds: dict[str, str], pythonpath: str = ""
            ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RESTIC_", "REPOFS_", "AWS_"))}
    env.update(HOME=str(cache / "home"), XDG_CACHE_HOME=str(cache / "xdg-cache"),
               XDG_CONFIG_HOME=str(cache / "xdg-config"), **creds)
    if tool == "restic":
        env.update(RESTIC_PASSWORD=PASSPHRASE, RESTIC_CACHE_DIR=str(cache / "restic-cache"))
    else:
        env.update(REPOFS_PASSPHRASE=PASSPHRASE, REPOFS_NO_PROGRESS="1")
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
    return env


def commands(variant: str, where: str, src: Path, target: Path, pythonpath: str
             ) -> dict[str, list[str]]:
    if variant.startswith("restic"):
        r = ["restic", "-r", where]
        return {"init": [*r, "init", "--repository-version", "2"],
                "create": [*r, "backup", "--compression", "auto", str(src)],
                "restore": [*r, "restore", "latest", "--target", str(target)]}
    return {"init": repofs_cmd(pythonpath, "init", "-r", where),
            "create": repofs_cmd(pythonpath, "create", "-r", where, "--compression", "zstd,3",
                                 str(src)),
            "restore": repofs_cmd(pythonpath, "restore", "-r", where, "latest", "--target",
                                  str(target))}


def empty_bucket(s3: object, bucket: str) -> None:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)  # type: ignore[attr-defined]
    for page in pages:
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})  # type: ignore[attr-defined]
    s3.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]


def one_round(ceph: Ceph, s3: object, variants: dict[str, str], src: Path, work: Path,
              log: Path, port: int) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    creds = ceph.admin().env()
    for variant, pythonpath in variants.items():
        tag = uuid.uuid4().hex[:8]
        scratch = work / "runs" / f"{variant}-{tag}"
        scratch.mkdir(parents=True)
        if variant.endswith("-local"):
            where = str(scratch / "repo")
        else:
            bucket = f"bench-{variant}-{tag}"
            s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
            scheme = "s3:http://" if variant.startswith("restic") else "s3+http://"
            where = f"{scheme}127.0.0.1:{port}/{bucket}/repo"
        tool = "restic" if variant.startswith("restic") else "repofs"
        env = env_for(tool, scratch / "cache", creds, pythonpath)
        cmds = commands(variant, where, src, scratch / "out", pythonpath)
        for step in ("init", *STEPS):
            rc, wall, _cpu, _rss = measure(cmds[step], env, log)
            if rc != 0:
                raise SystemExit(f"{variant} {step} failed ({rc}): see {log}")
            out[(variant, step)] = wall
        problem = verify(src, scratch / "out" / str(src).lstrip("/"))
        if problem:
            raise SystemExit(f"{variant}: the restore differs: {problem}")
        shutil.rmtree(scratch, ignore_errors=True)
        if not variant.endswith("-local"):  # memstore keeps objects in RAM: free them
            empty_bucket(s3, bucket)
        print(f"  {variant}: create {out[(variant, 'create')]:.1f} s, restore "
              f"{out[(variant, 'restore')]:.1f} s", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/dev/shm/repofs-bench-s3"))
    ap.add_argument("--size-mib", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rev", help="run repofs from this commit (default: the working tree, "
                    "which others may change during a run)")
    ap.add_argument("--base-rev", help="also run repofs from this commit on S3 (A/B)")
    ap.add_argument("--no-restic", action="store_true")
    ap.add_argument("--latency-ms", type=float, default=0,
                    help="delay every S3 answer this long (a proxy: a network's round trip)")
    args = ap.parse_args()
    import boto3
    import botocore.config

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    variants = {"repofs-s3": "", "repofs-local": ""}
    if args.rev:
        commit = bench_core.use_repofs_rev(args.rev, work)
        variants = dict.fromkeys(variants, bench_core.REPOFS_PYTHONPATH)
        bench_core.REPOFS_PYTHONPATH = ""
        print(f"repofs: {commit[:12]}")
    if args.base_rev:
        commit = bench_core.use_repofs_rev(args.base_rev, work)
        variants["base-s3"] = bench_core.REPOFS_PYTHONPATH
        bench_core.REPOFS_PYTHONPATH = ""
        print(f"base: {commit[:12]}")
    if not args.no_restic:
        if shutil.which("restic") is None:
            raise SystemExit("restic is not installed (apt-get install restic)")
        variants["restic-s3"] = ""
    src = work / "corpus"
    size = make_corpus(src, args.size_mib)
    print(f"corpus: {size / MiB:.0f} MiB at {src}")
    log = work / "bench-s3.log"
    ceph = Ceph(Path(work / "ceph"))
    shutil.rmtree(ceph.base, ignore_errors=True)
    ceph.base.mkdir(parents=True)
    rounds: list[dict[tuple[str, str], float]] = []
    proxy = None
    try:
        ceph.start()
        port = ceph.port
        if args.latency_ms:
            proxy = FaultProxy(ceph.port)
            proxy.faults.kinds, proxy.faults.every = ("stall",), 1
            proxy.faults.stall = args.latency_ms / 1000
            port = proxy.port
        s3 = boto3.client("s3", endpoint_url=ceph.endpoint, region_name="us-east-1",
                          aws_access_key_id=ceph.admin().access_key,
                          aws_secret_access_key=ceph.admin().secret_key,
                          config=botocore.config.Config(
                              s3={"addressing_style": "path"},
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"))
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", flush=True)
            rounds.append(one_round(ceph, s3, variants, src, work, log, port))
    finally:
        if proxy is not None:
            proxy.stop()
        ceph.stop()
        shutil.rmtree(ceph.base, ignore_errors=True)
    print(f"\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
          f"{size / MiB:.0f} MiB, {args.rounds} rounds (medians), "
          f"{args.latency_ms:g} ms added per S3 request")
    print(f"{'variant':14} {'create s':>9} {'MiB/s':>7} {'restore s':>10} {'MiB/s':>7}")
    for v in variants:
        c = statistics.median(r[(v, "create")] for r in rounds)
        t = statistics.median(r[(v, "restore")] for r in rounds)
        print(f"{v:14} {c:9.1f} {size / MiB / c:7.1f} {t:10.1f} {size / MiB / t:7.1f}")
    pairs = [("repofs-s3", "repofs-local", "S3 speed as a share of local (target >= 0.60)"),
             ("repofs-s3", "restic-s3", "repofs-s3 speed / restic-s3 (target >= 1.5)"),
             ("repofs-s3", "base-s3", "this tree / base on S3 (speed)")]
    for a, b, what in pairs:
        if b not in variants:
            continue
        for step in STEPS:
            ratio = statistics.median(r[(b, step)] / r[(a, step)] for r in rounds)
            print(f"{what}, {step}: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
