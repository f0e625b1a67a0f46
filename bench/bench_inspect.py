#!/usr/bin/env python3
"""``repofs diff`` vs ``borg diff`` vs ``restic diff``, and ``repofs find`` across 30
snapshots, on a 200k-file tree (issue 14, point 7).

Steps:

1. the tree of bench_mount's ``big`` case (200k tiny files, 100 a directory, three
   levels of directories) on tmpfs, backed up by every tool (``base``);
2. 1% of its files changed: content of some (a new inode, as editors do), mtime only of
   others, a few added and removed, spread at random over the tree; backed up again
   (``changed``);
3. ``diff base changed`` for each tool, the whole command timed (start, open, diff,
   print), median of ``--rounds``; one untimed run first, so every tool has its index
   and caches warm as a user would;
4. 28 more repofs backups, each with a few files changed, then ``repofs find`` of one
   file name across all 30 snapshots, timed the same way.

Targets: repofs diff under 1 s and at least 3x faster than borg and restic (median of
the per-round ratios: each round runs the tools back to back under the same load);
repofs find under 2 s.

Usage::

    bench/bench_inspect.py [--work /dev/shm/repofs-bench-inspect] [--files 200000]
                           [--rounds 3] [--tools repofs,borg,restic] [--nice -10] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_core  # noqa: E402
import bench_mount  # noqa: E402

FIND_SNAPSHOTS = 30


def files_of(root: Path) -> list[Path]:
    return sorted(Path(d) / f for d, _s, fs in os.walk(root) for f in fs)


def change_tree(root: Path, seed: str, n: int) -> dict[str, int]:
    """Change n files: 45% content, 45% mtime only, 5% added, 5% removed."""
    rng = random.Random(seed)
    files = files_of(root)
    picked = rng.sample(files, n)
    n_content = n_mtime = n * 45 // 100
    n_add = (n - n_content - n_mtime) // 2
    t = time.time_ns()
    counts = {"content": 0, "mtime": 0, "added": 0, "removed": 0}
    for i, p in enumerate(picked):
        if i < n_content:
            data = p.read_bytes() + f"edit {seed} {i}\n".encode()
            tmp = p.with_name(p.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
            os.utime(p, ns=(t, t))
            counts["content"] += 1
        elif i < n_content + n_mtime:
            os.utime(p, ns=(t - i, t - i))
            counts["mtime"] += 1
        elif i < n_content + n_mtime + n_add:
            q = p.with_name(f"new_{seed}_{i}.txt")
            q.write_bytes(f"added {seed} {i}\n".encode())
            counts["added"] += 1
        else:
            p.unlink()
            counts["removed"] += 1
    return counts


class Tools:
    """Repositories, environments and the command lines of each tool."""

    def __init__(self, work: Path, tools: list[str], log: Path) -> None:
        self.work, self.tools, self.log = work, tools, log
        self.env = {t: bench_core.tool_env(t, work / t / "cache") for t in tools}
        self.repo = {t: work / t / "repo" for t in tools}
        self.restic_ids: dict[str, str] = {}

    def run(self, tool: str, cmd: list[str]) -> float:
        rc, wall, _cpu, _rss = bench_core.measure(cmd, self.env[tool], self.log)
        if rc not in (0, 1):
            raise RuntimeError(f"{tool}: {' '.join(cmd)} exited {rc} (see {self.log})")
        return wall

    def init(self, tool: str) -> None:
        repo = self.repo[tool]
        if repo.parent.exists():
            shutil.rmtree(repo.parent)
        (repo.parent / "cache").mkdir(parents=True)
        cmd = {"repofs": bench_core.repofs("init", "-r", str(repo)),
               "borg": ["borg", "init", "-e", "repokey-blake2", str(repo)],
               "restic": ["restic", "-r", str(repo), "init", "--repository-version", "2"]}
        self.run(tool, cmd[tool])

    def create(self, tool: str, src: Path, label: str) -> float:
        repo = str(self.repo[tool])
        if tool == "repofs":
            cmd = bench_core.repofs("create", "-r", repo, "--compression", "zstd,3",
                                    "--name", label, str(src))
        elif tool == "borg":
            cmd = ["borg", "create", "--compression", "zstd,3", f"{repo}::{label}", str(src)]
        else:
            cmd = ["restic", "-r", repo, "backup", "--compression", "auto", "--tag", label,
                   str(src)]
        wall = self.run(tool, cmd)
        if tool == "restic":
            out = subprocess.run(["restic", "-r", repo, "snapshots", "--json", "--tag", label],
                                 env=self.env[tool], capture_output=True, check=True).stdout
            self.restic_ids[label] = json.loads(out)[-1]["id"]
        return wall

    def diff_cmd(self, tool: str, a: str, b: str) -> list[str]:
        repo = str(self.repo[tool])
        if tool == "repofs":
            return bench_core.repofs("diff", "-r", repo, a, b)
        if tool == "borg":
            return ["borg", "diff", f"{repo}::{a}", b]
        return ["restic", "-r", repo, "diff", self.restic_ids[a], self.restic_ids[b]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/dev/shm/repofs-bench-inspect"))
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tools", default="repofs,borg,restic")
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--repofs-rev", help="run repofs from `git archive REV`")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    bench_core.NICE = args.nice
    args.work.mkdir(parents=True, exist_ok=True)
    if args.repofs_rev:
        print("repofs from", bench_core.use_repofs_rev(args.repofs_rev, args.work))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    log = results / f"inspect-{stamp}.log"
    out: dict[str, object] = {"stamp": stamp, "files": args.files, "rounds": args.rounds,
                              "versions": {t: bench_core.tool_version(t) for t in tools}}
    print(json.dumps(out["versions"]))

    src = args.work / "tree"
    if src.exists():
        shutil.rmtree(src)
    bench_mount.make_tiny_tree(src, args.files, seed=1)
    (src.with_name(src.name + ".state.json")).unlink()  # changed below: never reused
    t = Tools(args.work, tools, log)
    creates: dict[str, dict[str, float]] = {x: {} for x in tools}
    for tool in tools:
        t.init(tool)
        creates[tool]["base"] = t.create(tool, src, "base")
        print(f"{tool}: create base {creates[tool]['base']:.1f} s", flush=True)
    changed = change_tree(src, "changed", args.files // 100)
    print("changed:", changed, flush=True)
    for tool in tools:
        creates[tool]["changed"] = t.create(tool, src, "changed")
        print(f"{tool}: create changed {creates[tool]['changed']:.1f} s", flush=True)
    out["changes"], out["creates"] = changed, creates

    for tool in tools:  # warm: indexes and caches as a user has them
        t.run(tool, t.diff_cmd(tool, "base", "changed"))
    rounds: list[dict[str, float]] = []
    for rnd in range(args.rounds):
        r = {tool: t.run(tool, t.diff_cmd(tool, "base", "changed")) for tool in tools}
        rounds.append(r)
        print(f"diff round {rnd + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in r.items()),
              flush=True)
    diff_med = {tool: statistics.median(r[tool] for r in rounds) for tool in tools}
    ratios = {o: statistics.median(r[o] / r["repofs"] for r in rounds)
              for o in tools if o != "repofs"} if "repofs" in tools else {}
    out["diff_rounds"], out["diff_median"], out["diff_ratios"] = rounds, diff_med, ratios

    find: dict[str, object] = {}
    if "repofs" in tools:
        t0 = time.monotonic()
        for i in range(2, FIND_SNAPSHOTS):
            change_tree(src, f"find{i}", 20)
            t.create("repofs", src, f"s{i:02d}")
        find["creates_s"] = round(time.monotonic() - t0, 1)
        name = files_of(src)[len(files_of(src)) // 2].name  # one file name, in every one
        cmd = bench_core.repofs("find", "-r", str(t.repo["repofs"]), name)
        t.run("repofs", cmd)  # warm
        walls = [t.run("repofs", cmd) for _ in range(args.rounds)]
        find.update(pattern=name, snapshots=FIND_SNAPSHOTS, rounds=walls,
                    median=statistics.median(walls))
        out["find"] = find

    print(f"\n{args.files} files, {sum(changed.values())} changed "
          f"({changed}); medians of {args.rounds} rounds, whole commands:")
    for tool in tools:
        print(f"  {tool:<7} diff {diff_med[tool]:6.2f} s")
    for o, x in ratios.items():
        print(f"  {o}/repofs diff: {x:.1f}x (target >= 3x)")
    if "repofs" in tools:
        print(f"  repofs diff {'meets' if diff_med['repofs'] < 1 else 'MISSES'} < 1 s")
    if find:
        m = float(find["median"])  # type: ignore[arg-type]
        print(f"  repofs find across {FIND_SNAPSHOTS} snapshots: {m:.2f} s "
              f"({'meets' if m < 2 else 'MISSES'} < 2 s)")
    (results / f"inspect-{stamp}.json").write_text(json.dumps(out, indent=1))
    print(f"results: {results / f'inspect-{stamp}.json'}, log: {log}")
    if not args.keep:
        shutil.rmtree(args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
