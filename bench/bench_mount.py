#!/usr/bin/env python3
"""`repofs mount` vs `borg mount` vs `restic mount` on the same repository contents.

Every tool gets one repository holding three snapshots:

- ``small``:  a tree of 10k tiny files,
- ``big``:    a tree of 200k tiny files (``--big-files 1000000`` for the 1M case),
- ``corpus``: the ~1.2 GiB benchmark corpus of ``corpus.py`` (whichever generation
  is on disk; it is generated as gen1 if missing).

Measurements, each on a fresh mount (so nothing is cached in the daemon or the kernel):

- ``mount s``        from starting the mount command until the mountpoint is mounted
                     (``repofs mount`` and ``borg mount`` return then; ``restic mount``
                     stays in the foreground, so it is polled);
- ``ls small/big s`` from the mount being ready until a listing with ``lstat`` of every
                     entry of the snapshot's top directory (the backed-up directory
                     itself, reached through ``ids/<id>/...`` or ``<archive>/...``)
                     has finished: what a user waits for after ``mount``;
- ``tar small s``    ``tar -cf - . | cat >/dev/null`` of the whole 10k-file snapshot;
- ``tar corpus``     the same over the corpus snapshot (every byte read), as MiB/s;
                     the top directory is listed first, untimed (borg loads the whole
                     archive there; that cost is the ``ls`` rows);
- ``dd large``       ``dd bs=1M`` of the largest corpus file to /dev/null, MiB/s, after
                     an untimed ``stat`` of it;
- ``daemon RSS``     VmRSS of the serving process after the corpus tar (and VmHWM, its
                     peak), plus the private memory of its child processes (repofs
                     decodes chunks in two).

The ``floor`` column (``--tools ...,floor``, on by default) is ``floor_fs.py``: a
pyfuse3 + trio file system that serves the corpus directory from memory and does
nothing else. Only ``tar corpus`` and ``dd`` are measured for it: the fastest any
mount built on pyfuse3 + trio can be here, so ``floor/borg`` bounds what repofs can
reach.

``repofs mount [-r REPO] MOUNTPOINT`` is expected to return once ready, with the
layout ``ids/<full id>/...``, and ``repofs umount MOUNTPOINT`` to unmount. If this
repofs has no ``mount`` command yet, repofs is skipped with a message.

Usage::

    bench/bench_mount.py [--work /dev/shm/repofs-bench] [--big-files 200000]
                         [--tools repofs,borg,restic,floor] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import stat
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_core  # noqa: E402
import corpus  # noqa: E402

MiB = 1 << 20
READY_TIMEOUT = 600.0


def make_tiny_tree(root: Path, n_files: int, seed: int) -> None:
    """n_files tiny files, 100 a directory, directories nested three deep."""
    stamp = root.with_name(root.name + ".state.json")
    want = {"files": n_files, "seed": seed, "version": 1}
    if root.is_dir() and stamp.exists():
        try:
            if json.loads(stamp.read_text()) == want:
                print(f"tiny tree: reusing {root}")
                return
        except ValueError:
            pass
    if root.exists():
        shutil.rmtree(root)
    t0 = time.monotonic()
    rng = random.Random(f"tiny:{seed}:{n_files}")
    words = [f"{rng.choice('bcdfghklmnprstvz')}{rng.choice('aeiou')}{i}" for i in range(500)]
    per_dir = 100
    n_dirs = max(1, n_files // per_dir)
    fan = max(2, round(n_dirs ** (1 / 3)) + 1)
    made = 0
    t = corpus.T1_NS
    for d in range(n_dirs):
        a, b, c = d // (fan * fan), (d // fan) % fan, d % fan
        dpath = root / f"a{a:03d}" / f"b{b:03d}" / f"c{c:03d}"
        dpath.mkdir(parents=True)
        for i in range(min(per_dir, n_files - made)):
            data = f"{rng.choice(words)} {i} {d}\n".encode() * rng.randint(0, 3)
            p = dpath / f"{rng.choice(words)}_{i}.txt"
            with open(p, "wb") as fh:
                fh.write(data)
            os.utime(p, ns=(t, t))
            made += 1
    stamp.write_text(json.dumps(want))
    print(f"tiny tree: {made} files at {root} in {time.monotonic() - t0:.1f} s")


def tool_has_mount(tool: str, work: Path) -> str:
    """'' if the tool has a mount command, else why not."""
    if tool == "repofs":
        p = subprocess.run(bench_core.repofs("mount", "--help"), capture_output=True,
                           env=bench_core.tool_env("repofs", work / "mount" / "x" / "cache"),
                           check=False)
        if p.returncode != 0:
            return "this repofs has no 'mount' command yet: skipping repofs"
    elif tool == "floor":
        p = subprocess.run([floor_python(), "-c", "import pyfuse3, trio"], capture_output=True,
                           check=False)
        if p.returncode != 0:
            return "pyfuse3 and trio are not importable for floor_fs.py"
    elif shutil.which(tool) is None:
        return f"{tool} is not installed"
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing"
    return ""


def floor_python() -> str:
    venv = HERE.parent / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


FLOOR_MEASUREMENTS = {"tar corpus", "dd"}  # what the floor file system is measured for


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == target for line in fh)


def daemon_pids(mountpoint: Path) -> list[int]:
    """Processes whose command line names the mountpoint (the mount daemon)."""
    target = str(mountpoint)
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if target.encode() in args and b"mount" in args:
            out.append(int(entry))
    return out


def proc_mem_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def private_kib(pid: int) -> int:
    """Memory only this process holds (not shared with its parent by fork), in KiB."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    except OSError:
        pass
    return total


def serving_memory_kib(pids: list[int]) -> tuple[int, int]:
    """(RSS, peak RSS) of the serving process (the one whose parent is not among
    ``pids``), plus the private memory of the others (its children, forked from it)."""
    parents = {}
    for pid in pids:
        try:
            parents[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    mains = [p for p in parents if parents[p] not in parents]
    children = sum(private_kib(p) for p in parents if p not in mains)
    mem = [proc_mem_kib(p) for p in mains]
    return (max((r for r, _ in mem), default=0) + children,
            max((h for _, h in mem), default=0) + children)


class Mounter:
    def __init__(self, tool: str, repo: Path, env: dict[str, str], log: Path) -> None:
        self.tool, self.repo, self.env, self.log = tool, repo, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def _run(self, cmd: list[str], check: bool = True, cwd: Path | None = None,
             capture: bool = False) -> subprocess.CompletedProcess[bytes]:
        if bench_core.NICE:
            cmd = ["nice", "-n", str(bench_core.NICE), *cmd]
        with open(self.log, "ab") as out:
            out.write(f"\n$ {' '.join(cmd)}\n".encode())
            out.flush()
            p = subprocess.run(cmd, env=self.env, cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE if capture else out, stderr=out,
                               check=False)
        if check and p.returncode != 0:
            raise RuntimeError(f"{cmd[0]} {cmd[1]} failed with exit {p.returncode}; "
                               f"see {self.log}")
        return p

    def mount(self, mp: Path) -> float:
        """Mount; return seconds until the mountpoint is mounted."""
        mp.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        if self.tool == "repofs":
            self._run(bench_core.repofs("mount", "-r", str(self.repo), str(mp)))
        elif self.tool == "borg":
            self._run(["borg", "mount", str(self.repo), str(mp)])
        else:
            nice = ["nice", "-n", str(bench_core.NICE)] if bench_core.NICE else []
            cmd = ([floor_python(), str(HERE / "floor_fs.py"), str(mp), str(self.repo)]
                   if self.tool == "floor" else ["restic", "-r", str(self.repo), "mount", str(mp)])
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen([*nice, *cmd], env=self.env,
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        while not is_mounted(mp):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"restic mount exited with {self.proc.returncode}")
            if time.monotonic() - t0 > READY_TIMEOUT:
                raise RuntimeError(f"{self.tool} mount not ready after {READY_TIMEOUT} s")
            time.sleep(0.005)
        return time.monotonic() - t0

    def umount(self, mp: Path) -> None:
        if self.tool == "repofs":
            self._run(bench_core.repofs("umount", str(mp)), check=False)
        elif self.tool == "borg":
            self._run(["borg", "umount", str(mp)], check=False)
        else:
            for cmd in (["fusermount3", "-u", str(mp)], ["fusermount", "-u", str(mp)]):
                if shutil.which(cmd[0]) and self._run(cmd, check=False).returncode == 0:
                    break
            if self.proc is not None:
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.terminate()
                    self.proc.wait(10)
                self.proc = None
        t0 = time.monotonic()
        while is_mounted(mp) and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        if is_mounted(mp):
            subprocess.run(["fusermount3", "-u", "-z", str(mp)], check=False)
        # borg and repofs daemons exit after unmounting; wait so the next mount is clean
        t0 = time.monotonic()
        while daemon_pids(mp) and time.monotonic() - t0 < 30:
            time.sleep(0.05)


def json_of(cmd: list[str], env: dict[str, str], log: Path) -> object:
    p = subprocess.run(cmd, env=env, capture_output=True, check=False)
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode() + p.stderr)
    if p.returncode != 0:
        last = p.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"{' '.join(cmd[-4:])} exited with {p.returncode}: {last[0]}")
    return json.loads(p.stdout)


def snapshot_dirs(tool: str, repo: Path, env: dict[str, str], labels: list[str], log: Path
                  ) -> dict[str, str]:
    """label -> the snapshot's directory relative to the mount root."""
    if tool == "borg":
        return {label: label for label in labels}
    if tool == "restic":
        snaps = json_of(["restic", "-r", str(repo), "snapshots", "--json"], env, log)
        by_tag = {s["tags"][0]: s["short_id"] for s in snaps if s.get("tags")}  # type: ignore
        return {label: f"ids/{by_tag[label]}" for label in labels}
    snaps = json_of(bench_core.repofs("snapshots", "--json", "-r", str(repo)), env, log)
    by_name = {s["name"]: s["id"] for s in snaps if s.get("name")}  # type: ignore
    return {label: f"ids/{by_name[label]}" for label in labels}


def create_cmd(tool: str, repo: Path, label: str, src: Path) -> list[str]:
    if tool == "repofs":
        return bench_core.repofs("create", "-r", str(repo), "--name", label,
                                 "--compression", "zstd,3", str(src))
    if tool == "borg":
        return ["borg", "create", "--compression", "zstd,3", f"{repo}::{label}", str(src)]
    return ["restic", "-r", str(repo), "backup", "--compression", "auto", "--tag", label,
            str(src)]


def listing(path: Path) -> int:
    n = 0
    with os.scandir(path) as it:
        for e in it:
            e.stat(follow_symlinks=False)
            n += 1
    return n


def timed_shell(cmd: str, cwd: Path) -> float:
    t0 = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.monotonic() - t0


def largest_file(root: Path) -> Path:
    best, size = root, -1
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_size > size and stat.S_ISREG(st.st_mode):
                best, size = Path(dirpath) / name, st.st_size
    return best


class Setup:
    """One tool's repository with the three snapshots, and how to mount it."""

    def __init__(self, tool: str, args: argparse.Namespace, sources: dict[str, Path],
                 log_dir: Path) -> None:
        self.tool = tool
        self.work = Path(args.work) / "mount" / tool
        if self.work.exists():
            shutil.rmtree(self.work)
        (self.work / "cache" / "home").mkdir(parents=True)
        self.repo, self.mp = self.work / "repo", self.work / "mnt"
        if tool == "floor":  # no repository: it serves the corpus directory itself
            self.repo = sources["corpus"]
        self.env = bench_core.tool_env(tool, self.work / "cache")
        self.log = log_dir / f"{tool}.log"
        self.sources = sources
        self.res: dict[str, list[float]] = {}
        self.m = Mounter(tool, self.repo, self.env, self.log)
        self.top: dict[str, Path] = {}

    def note(self, key: str, value: float) -> None:
        self.res.setdefault(key, []).append(value)

    def init(self) -> None:
        if self.tool == "floor":
            return
        cls = {"repofs": bench_core.Repofs, "borg": bench_core.Borg,
               "restic": bench_core.Restic}[self.tool]
        init = cls(bench_core.Run(self.tool, self.repo, self.work, self.log)).init()
        rc, *_ = bench_core.measure(init, self.env, self.log)
        if rc:
            raise RuntimeError(f"{self.tool} init failed, see {self.log}")

    def create(self, label: str) -> None:
        if self.tool == "floor":
            return
        rc, wall, _cpu, rss = bench_core.measure(
            create_cmd(self.tool, self.repo, label, self.sources[label]), self.env, self.log)
        if rc not in (0, 1):
            raise RuntimeError(f"{self.tool} create {label} failed, see {self.log}")
        self.note(f"create {label} s", wall)
        print(f"  {self.tool:7} create {label:7} {wall:8.2f} s  rss {rss / 1024:6.0f} MiB",
              flush=True)

    def locate(self) -> None:
        if self.tool == "floor":
            self.top = {"corpus": Path(".")}
            return
        dirs = snapshot_dirs(self.tool, self.repo, self.env, list(self.sources), self.log)
        self.top = {label: Path(dirs[label]) / str(src).lstrip("/")
                    for label, src in self.sources.items()}

    def fresh(self, fn) -> None:
        """fn on a fresh mount (nothing cached in the daemon or the kernel), then unmount."""
        try:
            fn()
        finally:
            self.m.umount(self.mp)


def m_ls(s: Setup, label: str) -> None:
    s.note(f"mount ({label}) s", s.m.mount(s.mp))
    t0 = time.monotonic()
    n = listing(s.mp / s.top[label])
    wall = time.monotonic() - t0
    s.note(f"ls {label} s", wall)
    print(f"  {s.tool:7} ls {label:5} {wall:8.3f} s ({n} entries)", flush=True)


def m_tar_small(s: Setup) -> None:
    s.m.mount(s.mp)
    wall = timed_shell("tar -cf - . | cat >/dev/null", s.mp / s.top["small"])
    s.note("tar small s", wall)
    print(f"  {s.tool:7} tar small {wall:8.2f} s", flush=True)


def m_tar_corpus(s: Setup) -> None:
    s.m.mount(s.mp)
    listing(s.mp / s.top["corpus"])
    wall = timed_shell("tar -cf - . | cat >/dev/null", s.mp / s.top["corpus"])
    size = bench_core.dir_bytes(s.sources["corpus"])
    s.note("tar corpus s", wall)
    s.note("tar corpus MiB/s", size / MiB / wall)
    pids = daemon_pids(s.mp) if s.m.proc is None else [s.m.proc.pid]
    rss_kib, hwm_kib = serving_memory_kib(pids)
    rss, hwm = rss_kib / 1024, hwm_kib / 1024
    s.note("daemon RSS MiB", rss)
    s.note("daemon peak RSS MiB", hwm)
    print(f"  {s.tool:7} tar corpus {wall:8.2f} s {size / MiB / wall:.1f} MiB/s, daemon RSS "
          f"{rss:.0f} MiB (peak {hwm:.0f}, pids {pids})", flush=True)


def m_dd(s: Setup) -> None:
    s.m.mount(s.mp)
    rel = largest_file(s.sources["corpus"]).relative_to(s.sources["corpus"])
    f = s.mp / s.top["corpus"] / rel
    size = f.stat().st_size
    wall = timed_shell(f"dd if='{f}' of=/dev/null bs=1M", Path("/"))
    s.note("dd large MiB/s", size / MiB / wall)
    print(f"  {s.tool:7} dd {rel} {size / MiB:.0f} MiB {wall:.2f} s = "
          f"{size / MiB / wall:.1f} MiB/s", flush=True)


MEASUREMENTS = [("ls small", lambda s: m_ls(s, "small")), ("ls big", lambda s: m_ls(s, "big")),
                ("tar small", m_tar_small), ("tar corpus", m_tar_corpus), ("dd", m_dd)]


ROWS = ["mount (small) s", "mount (big) s", "ls small s", "ls big s", "tar small s",
        "tar corpus s", "tar corpus MiB/s", "dd large MiB/s",
        "daemon RSS MiB", "daemon peak RSS MiB", "create small s", "create big s",
        "create corpus s"]


def table(results: dict[str, dict[str, float]], labels: dict[str, str]) -> str:
    tools = list(results)
    others = [t for t in tools if t != "repofs"] if "repofs" in tools else []
    cols = tools + [f"repofs/{t}" for t in others]
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in ROWS:
        vals = [results[t].get(row) for t in tools]
        digits = 3 if row.startswith(("ls", "mount")) else 0 if "RSS" in row else 1
        cells = ["-" if v is None else f"{v:.{digits}f}" for v in vals]
        for t in others:
            a, b = results["repofs"].get(row), results[t].get(row)
            cells.append(f"{a / b:.2f}" if isinstance(a, int | float) and
                         isinstance(b, int | float) and b else "-")
        lines.append(f"| {labels.get(row, row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/dev/shm/repofs-bench")
    ap.add_argument("--small-files", type=int, default=10_000)
    ap.add_argument("--big-files", type=int, default=200_000,
                    help="files in the big snapshot (1000000 for the issue's 1M case)")
    ap.add_argument("--scale", type=float, default=1.0, help="corpus scale if generated")
    ap.add_argument("--tools", default="repofs,borg,restic,floor")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the measurements (not the creates); medians are reported")
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--repofs-rev", metavar="REV",
                    help="run repofs from this git commit, not from the working tree")
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness of the measured commands and daemons")
    args = ap.parse_args()
    work = Path(args.work)
    bench_core.NICE = args.nice
    if args.repofs_rev:
        bench_core.use_repofs_rev(args.repofs_rev, work)
    print(f"repofs: {bench_core.repofs_version()}")
    live = work / "corpus" / "live"
    if corpus.read_state(str(live)) is None:
        corpus.ensure_gen1(str(live), 1, args.scale)
    sources = {"small": work / "tiny" / "small", "big": work / "tiny" / "big", "corpus": live}
    make_tiny_tree(sources["small"], args.small_files, 1)
    make_tiny_tree(sources["big"], args.big_files, 2)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = Path(args.results) / f"mount-{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    setups: dict[str, Setup] = {}
    for tool in [t for t in args.tools.split(",") if t]:
        why = tool_has_mount(tool, work)
        if why:
            print(f"SKIP {tool}: {why}")
            skipped[tool] = why
        else:
            setups[tool] = Setup(tool, args, sources, log_dir)

    def each(what: str, fn) -> None:
        """fn for every tool still in the race, one after the other (same load for all)."""
        for tool, s in list(setups.items()):
            try:
                fn(s)
            except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
                print(f"FAILED {tool} ({what}): {e}", flush=True)
                skipped[tool] = f"failed in {what}: {e}"
                del setups[tool]
                s.m.umount(s.mp)

    print(f"load average {os.getloadavg()}", flush=True)
    each("init", Setup.init)
    for label in sources:
        each(f"create {label}", lambda s, label=label: s.create(label))
    each("snapshot ids", Setup.locate)
    for rnd in range(args.rounds):
        print(f"round {rnd + 1}: load average {os.getloadavg()}", flush=True)
        for name, fn in MEASUREMENTS:
            each(name, lambda s, fn=fn, name=name: s.fresh(lambda: fn(s))
                 if s.tool != "floor" or name in FLOOR_MEASUREMENTS else None)
    results = {t: {k: statistics.median(v) for k, v in s.res.items()} for t, s in setups.items()}
    if not args.keep:
        for s in setups.values():
            shutil.rmtree(s.work, ignore_errors=True)
    labels = {"ls small s": f"ls small ({args.small_files} files) s",
              "ls big s": f"ls big ({args.big_files} files) s"}
    head = (f"date {datetime.datetime.now().isoformat(timespec='minutes')}, "
            f"{os.cpu_count()} cores, snapshots: {args.small_files} files, "
            f"{args.big_files} files, corpus {bench_core.dir_bytes(live) / MiB:.0f} MiB; "
            f"repofs {bench_core.repofs_version()}, rounds {args.rounds} (median), "
            f"nice {args.nice}")
    tbl = table(results, labels)
    print()
    print(head)
    print(tbl)
    checks = []
    r, b = results.get("repofs"), results.get("borg")
    if r:
        checks.append(("ls of a snapshot root < 1 s (small and big)",
                       max(r["ls small s"], r["ls big s"]) < 1.0,
                       f"{r['ls small s']:.3f} s / {r['ls big s']:.3f} s"))
        checks.append(("daemon RSS after reading the corpus < 300 MiB",
                       r["daemon RSS MiB"] < 300,
                       f"{r['daemon RSS MiB']:.0f} MiB (peak {r['daemon peak RSS MiB']:.0f})"))
    if r and b:
        for key, name in (("tar corpus MiB/s", "tar throughput >= 2x borg mount"),
                          ("dd large MiB/s", "dd bs=1M throughput >= 2x borg mount")):
            a, c = r[key], b[key]
            checks.append((name, a >= 2 * c, f"{a:.1f} vs {c:.1f} MiB/s = {a / c:.2f}x"))
    f = results.get("floor")
    if r and b and f:
        for key in ("tar corpus MiB/s", "dd large MiB/s"):
            print(f"ceiling on pyfuse3 + trio, {key}: floor/borg = {f[key] / b[key]:.2f}x, "
                  f"repofs/floor = {r[key] / f[key]:.2f}")
    print()
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    for tool, why in skipped.items():
        print(f"SKIP  {tool}: {why}")
    out = Path(args.results) / f"mount-{stamp}.json"
    raw = {t: s.res for t, s in setups.items()}
    out.write_text(json.dumps({"head": head, "results": results, "raw": raw, "skipped": skipped,
                               "checks": [{"check": n, "pass": ok, "detail": d}
                                          for n, ok, d in checks], "table": tbl}, indent=1))
    print(f"\nresults: {out}\nlogs: {log_dir}")
    return 0 if not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
