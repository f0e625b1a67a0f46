#!/usr/bin/env python3
"""repofs vs borg vs restic on the same corpus, in the same run: create, re-create, restore.

Steps, each run for every tool in turn before the next step starts (so load from
elsewhere on the machine hits all tools alike):

1. ``init``        a fresh repository (recorded, not a target)
2. ``create1``     first create of corpus generation 1
3. ``create2``     second create of the unchanged tree (files caches warm)
4. ``create3``     create after the tree became generation 2 in place (~5% changed)
5. ``restore``     restore of the latest snapshot (generation 2); checked with ``diff -r``

For each command: wall time, CPU time, peak RSS (``wait4`` rusage, includes reaped
children), and the repository's size (sum of file sizes) after it. Corpus,
repositories, caches and restore targets all live on tmpfs: disk speed is out of
the picture, what is measured is the tools' own work. Compare numbers within one
run only.

Compression: repofs and borg use zstd level 3. restic 0.14 compresses only
repositories of format version 2 (``init --repository-version 2``) and only offers
``--compression auto|max|off``; ``auto`` is klauspost/compress zstd "SpeedDefault",
its equivalent of level 3, so that is what restic runs with.

Usage::

    bench/bench_core.py [--work /dev/shm/repofs-bench] [--scale 1] [--rounds 1]
                        [--tools repofs,borg,restic] [--no-verify] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import corpus  # noqa: E402

MiB = 1 << 20
PASSPHRASE = "bench-passphrase-not-secret"
TOOLS = ("repofs", "borg", "restic")
STEPS = ("init", "create1", "create2", "create3", "restore")
STEP_TITLES = {
    "create1": "create gen1 (first)",
    "create2": "create gen1 again (unchanged)",
    "create3": "create gen2 (~5% changed)",
    "restore": "restore gen2",
}


@dataclass
class Result:
    tool: str
    step: str
    ok: bool
    wall: float = 0.0
    cpu: float = 0.0
    rss_kib: int = 0
    repo_bytes: int = 0
    data_bytes: int = 0
    note: str = ""

    @property
    def mib_s(self) -> float:
        return self.data_bytes / MiB / self.wall if self.wall else 0.0


@dataclass
class Run:
    tool: str
    repo: Path
    cache: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    failed: bool = False


REPOFS_PYTHONPATH = ""  # set by use_repofs_rev: run repofs from an exported commit


def repofs(*args: str) -> list[str]:
    """The command line of a repofs command: the venv's, or an exported commit's."""
    venv = HERE.parent / ".venv" / "bin"
    if REPOFS_PYTHONPATH:
        python = venv / "python"
        # -P: without it ``-m`` puts the current directory first on sys.path, and run
        # from a checkout that would import its ``repofs``, not the exported commit's
        return [str(python) if python.exists() else sys.executable, "-P", "-m",
                "repofs_cli.main", *args]
    exe = venv / "repofs"
    return [str(exe) if exe.exists() else shutil.which("repofs") or "repofs", *args]


def use_repofs_rev(rev: str, work: Path) -> str:
    """Run repofs from ``git archive REV`` (the shared tree may change during a run)."""
    global REPOFS_PYTHONPATH  # noqa: PLW0603
    top = HERE.parent
    commit = subprocess.run(["git", "-C", str(top), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    dest = work / "repofs-src" / commit
    if not (dest / "repofs_cli" / "main.py").exists():
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(top), "archive", commit, "repofs", "cli"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        (dest / "cli").rename(dest / "repofs_cli")
    REPOFS_PYTHONPATH = str(dest)
    return commit


def repofs_version() -> str:
    """The commit repofs runs from, '+dirty' if that is a working tree with changes."""
    if REPOFS_PYTHONPATH:
        return Path(REPOFS_PYTHONPATH).name[:12]
    top = str(HERE.parent)
    p = subprocess.run(["git", "-C", top, "describe", "--always", "--dirty", "--abbrev=12"],
                       capture_output=True, text=True, check=False)
    return p.stdout.strip() + " (working tree)"


NICE = 0  # set by --nice: run the measured commands at this niceness


def measure(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
            ) -> tuple[int, float, float, int]:
    """Run cmd; return (exit code, wall s, cpu s, peak RSS KiB of it and its children)."""
    if NICE:
        cmd = ["nice", "-n", str(NICE), *cmd]  # nice execs cmd: same pid, same rusage
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


class Tool:
    """How to drive one backup program."""

    name = ""

    def __init__(self, run: Run) -> None:
        self.r = run

    def init(self) -> list[str]:
        raise NotImplementedError

    def create(self, src: Path, label: str) -> list[str]:
        raise NotImplementedError

    def restore(self, label: str, target: Path) -> tuple[list[str], Path | None]:
        raise NotImplementedError


class Repofs(Tool):
    name = "repofs"

    def init(self) -> list[str]:
        return repofs("init", "-r", str(self.r.repo))

    def create(self, src: Path, label: str) -> list[str]:
        return repofs("create", "-r", str(self.r.repo), "--compression", "zstd,3", str(src))

    def restore(self, label: str, target: Path) -> tuple[list[str], Path | None]:
        return repofs("restore", "-r", str(self.r.repo), "latest", "--target", str(target)), None


class Borg(Tool):
    name = "borg"

    def init(self) -> list[str]:
        return ["borg", "init", "-e", "repokey-blake2", str(self.r.repo)]

    def create(self, src: Path, label: str) -> list[str]:
        return ["borg", "create", "--compression", "zstd,3", f"{self.r.repo}::{label}", str(src)]

    def restore(self, label: str, target: Path) -> tuple[list[str], Path | None]:
        return ["borg", "extract", f"{self.r.repo}::{label}"], target  # extracts into cwd


class Restic(Tool):
    name = "restic"

    def init(self) -> list[str]:
        return ["restic", "-r", str(self.r.repo), "init", "--repository-version", "2"]

    def create(self, src: Path, label: str) -> list[str]:
        return ["restic", "-r", str(self.r.repo), "backup", "--compression", "auto",
                "--tag", label, str(src)]

    def restore(self, label: str, target: Path) -> tuple[list[str], Path | None]:
        return ["restic", "-r", str(self.r.repo), "restore", "latest",
                "--target", str(target)], None


CLASSES = {"repofs": Repofs, "borg": Borg, "restic": Restic}


def tool_env(tool: str, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BORG_", "RESTIC_", "REPOFS_"))
           and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    # byte-compiled modules, as an installed package has them (borg's Debian package
    # does); kept out of the source tree
    env["PYTHONPYCACHEPREFIX"] = str(cache.parent.parent / "pycache")
    env["HOME"] = str(cache / "home")
    env["XDG_CACHE_HOME"] = str(cache / "xdg-cache")
    env["XDG_CONFIG_HOME"] = str(cache / "xdg-config")
    if tool == "repofs":
        if REPOFS_PYTHONPATH:
            env["PYTHONPATH"] = REPOFS_PYTHONPATH
        env["REPOFS_PASSPHRASE"] = PASSPHRASE
        env["REPOFS_NO_PROGRESS"] = "1"
    elif tool == "borg":
        env["BORG_PASSPHRASE"] = PASSPHRASE
        env["BORG_BASE_DIR"] = str(cache / "borg-base")
        env["BORG_DISPLAY_PASSPHRASE"] = "no"
        env["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
    elif tool == "restic":
        env["RESTIC_PASSWORD"] = PASSPHRASE
        env["RESTIC_CACHE_DIR"] = str(cache / "restic-cache")
    return env


def version_cmd(tool: str) -> list[str]:
    return {"repofs": repofs("--version"), "borg": ["borg", "--version"],
            "restic": ["restic", "version"]}[tool]


def tool_version(tool: str) -> str:
    if tool == "repofs":
        return repofs_version()
    cmd = version_cmd(tool)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else "?"


def verify(src: Path, restored: Path) -> str:
    """'' when the restored tree has the same names and contents as src."""
    if not restored.is_dir():
        return f"{restored} missing after restore"
    p = subprocess.run(["diff", "-r", "--no-dereference", "-q", str(src), str(restored)],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        lines = (p.stdout + p.stderr).strip().splitlines()
        return f"diff: {len(lines)} differences, first: {lines[0] if lines else '?'}"
    return ""


def one_round(args: argparse.Namespace, rnd: int, log_dir: Path) -> list[Result]:
    work = Path(args.work)
    live = work / "corpus" / "live"
    state = corpus.ensure_gen1(str(live), args.seed, args.scale)
    gen1_bytes = int(state["bytes"])  # type: ignore[arg-type]
    tools: dict[str, Tool] = {}
    for name in args.tools:
        base = work / "core" / name
        if base.exists():
            shutil.rmtree(base)
        (base / "cache" / "home").mkdir(parents=True)
        run = Run(name, base / "repo", base / "cache", log_dir / f"{name}-round{rnd}.log")
        run.env = tool_env(name, run.cache)
        tools[name] = CLASSES[name](run)
    results: list[Result] = []

    def step(step_name: str, make_cmd, data_bytes: int, only: str | None = None) -> None:
        for name, tool in tools.items():
            if only is not None and name != only:
                continue
            r = tool.r
            if r.failed:
                results.append(Result(name, step_name, False, note="skipped (earlier failure)"))
                continue
            cmd, cwd = make_cmd(tool)
            rc, wall, cpu, rss = measure(cmd, r.env, r.log, cwd)
            ok = rc == 0 or (name == "borg" and rc == 1 and step_name != "init")
            res = Result(name, step_name, ok, wall, cpu, rss, dir_bytes(r.repo), data_bytes,
                         "" if rc == 0 else f"exit {rc} (see {r.log})")
            results.append(res)
            if not ok:
                r.failed = True
            print(f"  {step_name:8} {name:7} {wall:8.2f} s  {res.mib_s:8.1f} MiB/s  "
                  f"rss {rss / 1024:7.1f} MiB  cpu {cpu:7.1f} s  "
                  f"repo {res.repo_bytes / MiB:8.1f} MiB  {res.note}", flush=True)

    for tool in tools.values():  # byte-compile and warm the page cache, unmeasured
        subprocess.run(version_cmd(tool.name), env=tool.r.env, capture_output=True,
                       check=False)
    print(f"round {rnd}: load average {os.getloadavg()}", flush=True)
    step("init", lambda t: (t.init(), None), 0)
    step("create1", lambda t: (t.create(live, "gen1"), None), gen1_bytes)
    step("create2", lambda t: (t.create(live, "gen1-again"), None), gen1_bytes)
    state = corpus.make_gen2(str(live))
    gen2_bytes = int(state["bytes"])  # type: ignore[arg-type]
    step("create3", lambda t: (t.create(live, "gen2"), None), gen2_bytes)

    for name in tools:
        target = work / "core" / name / "restored"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()

        def restore_cmd(t: Tool, _target: Path = target) -> tuple[list[str], Path | None]:
            return t.restore("gen2", _target)

        before = len(results)
        # one tool at a time: restore, verify, free the memory before the next
        step("restore", restore_cmd, gen2_bytes, only=name)
        res = results[before]
        if res.ok and not args.no_verify:
            problem = verify(live, target / str(live).lstrip("/"))
            if problem:
                res.ok = False
                res.note = problem
                print(f"  restore  {name:7} VERIFY FAILED: {problem}", flush=True)
        shutil.rmtree(target)
    print(f"round {rnd}: load average {os.getloadavg()}", flush=True)
    if not args.keep:
        for name in tools:
            shutil.rmtree(work / "core" / name, ignore_errors=True)
    return results


def aggregate(rounds: list[list[Result]]) -> dict[tuple[str, str], Result]:
    """Median wall/cpu over rounds, max RSS, last repository size."""
    out: dict[tuple[str, str], Result] = {}
    keys = {(r.tool, r.step) for rs in rounds for r in rs}
    for key in keys:
        rs = [r for round_ in rounds for r in round_ if (r.tool, r.step) == key]
        good = [r for r in rs if r.ok]
        if not good:
            out[key] = rs[-1]
            continue
        out[key] = Result(key[0], key[1], True, statistics.median(r.wall for r in good),
                          statistics.median(r.cpu for r in good), max(r.rss_kib for r in good),
                          good[-1].repo_bytes, good[-1].data_bytes,
                          "; ".join(sorted({r.note for r in rs if r.note})))
    return out


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def table(agg: dict[tuple[str, str], Result], tools: list[str]) -> str:
    def get(tool: str, step: str) -> Result | None:
        r = agg.get((tool, step))
        return r if r is not None and r.ok else None

    cols = [*tools] + [f"repofs/{t}" for t in tools if t != "repofs" and "repofs" in tools]
    lines = ["| step | metric | " + " | ".join(cols) + " |",
             "|---|---|" + "---:|" * len(cols)]
    metrics = [
        ("time s", lambda r: r.wall, 2),
        ("MiB/s", lambda r: r.mib_s, 1),
        ("CPU s", lambda r: r.cpu, 1),
        ("peak RSS MiB", lambda r: r.rss_kib / 1024, 0),
        ("repo MiB after", lambda r: r.repo_bytes / MiB, 1),
    ]
    for step in STEPS[1:]:
        for label, f, digits in metrics:
            if step == "restore" and label == "repo MiB after":
                continue
            if step in ("create2",) and label == "MiB/s":
                continue
            vals = {t: (f(r) if (r := get(t, step)) else None) for t in tools}
            row = [fmt(vals[t], digits) for t in tools]
            if "repofs" in tools:
                row += [ratio(vals["repofs"], vals[t]) for t in tools if t != "repofs"]
            lines.append(f"| {STEP_TITLES[step]} | {label} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def paired(rounds: list[list[Result]], step: str, metric) -> list[float]:
    """Per round, metric(repofs) / metric(borg): both ran back to back, under the same load."""
    out = []
    for rs in rounds:
        by = {r.tool: r for r in rs if r.step == step and r.ok}
        if "repofs" in by and "borg" in by and metric(by["borg"]):
            out.append(metric(by["repofs"]) / metric(by["borg"]))
    return out


def targets(agg: dict[tuple[str, str], Result], rounds: list[list[Result]]
            ) -> list[tuple[str, bool | None, str]]:
    """PASS/FAIL per target of issue 2. Speed targets use the median of per-round ratios."""
    out: list[tuple[str, bool | None, str]] = []

    def speed(name: str, step: str, metric, unit: str, test) -> None:
        a, b = agg.get(("repofs", step)), agg.get(("borg", step))
        ratios = paired(rounds, step, metric)
        if not ratios or a is None or b is None:
            out.append((name, None, "not measured (a step failed or a tool is missing)"))
            return
        med = statistics.median(ratios)
        out.append((name, bool(test(med)),
                    f"repofs/borg {med:.2f}x (per round: "
                    + ", ".join(f"{x:.2f}" for x in ratios)
                    + f"); medians {metric(a):.1f} vs {metric(b):.1f} {unit}, "
                    f"CPU {a.cpu:.1f} vs {b.cpu:.1f} s"))

    speed("first create throughput >= 2x borg", "create1", lambda r: r.mib_s, "MiB/s",
          lambda x: x >= 2)
    speed("unchanged create time <= borg", "create2", lambda r: r.wall, "s", lambda x: x <= 1)
    speed("restore throughput >= 2x borg", "restore", lambda r: r.mib_s, "MiB/s",
          lambda x: x >= 2)
    for step, what in (("create1", "gen1"), ("create3", "gen1+gen2")):
        a, b = agg.get(("repofs", step)), agg.get(("borg", step))
        if a is None or b is None or not a.ok or not b.ok:
            out.append((f"repo size within 5% of borg ({what})", None, "not measured"))
            continue
        out.append((f"repo size within 5% of borg ({what})",
                    a.repo_bytes <= 1.05 * b.repo_bytes,
                    f"{a.repo_bytes / MiB:.1f} vs {b.repo_bytes / MiB:.1f} MiB = "
                    f"{a.repo_bytes / b.repo_bytes:.3f}x"))
    rs = [r for round_ in rounds for r in round_ if r.tool == "repofs" and r.ok]
    if rs:
        worst = max(rs, key=lambda r: r.rss_kib)
        out.append(("repofs peak RSS < 300 MiB", worst.rss_kib < 300 * 1024,
                    f"max {worst.rss_kib / 1024:.0f} MiB (in {worst.step}); per round in "
                    f"create1: " + ", ".join(f"{r.rss_kib / 1024:.0f}" for r in rs
                                            if r.step == "create1")))
    else:
        out.append(("repofs peak RSS < 300 MiB", None, "not measured"))
    return out


def report(head: str, rounds: list[list[Result]], tools: list[str]
           ) -> tuple[str, list[tuple[str, bool | None, str]]]:
    agg = aggregate(rounds)
    tbl = table(agg, tools)
    print()
    print(head)
    print(tbl)
    print()
    tres = targets(agg, rounds) if "repofs" in tools and "borg" in tools else []
    for name, ok, detail in tres:
        verdict = "SKIP" if ok is None else "PASS" if ok else "FAIL"
        print(f"{verdict}  {name}: {detail}")
    return tbl, tres


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/dev/shm/repofs-bench",
                    help="corpus, repositories and caches go here (tmpfs)")
    ap.add_argument("--scale", type=float, default=1.0, help="corpus scale; 1 = ~1.15 GiB")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="repeat; medians are reported")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--no-verify", action="store_true", help="skip diff -r after restore")
    ap.add_argument("--keep", action="store_true", help="keep repositories and caches")
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--repofs-rev", metavar="REV",
                    help="run repofs from this git commit (exported under --work), not from "
                         "the working tree, which others may be changing during the run")
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness of the measured commands (e.g. -10 on a shared machine)")
    ap.add_argument("--report", metavar="JSON", help="print the table of an earlier run again")
    args = ap.parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        rounds = [[Result(**r) for r in rs] for rs in saved["rounds"]]
        report(saved["head"], rounds, list(saved["versions"]))
        return 0
    global NICE  # noqa: PLW0603
    NICE = args.nice
    if args.repofs_rev:
        use_repofs_rev(args.repofs_rev, Path(args.work))
    args.tools = [t for t in args.tools.split(",") if t]
    for t in args.tools:
        if t not in CLASSES:
            ap.error(f"unknown tool {t}")
        if t != "repofs" and shutil.which(t) is None:
            ap.error(f"{t} is not installed (apt-get install {'borgbackup' if t == 'borg' else t})")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = Path(args.results)
    log_dir = results_dir / f"core-{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    versions = {t: tool_version(t) for t in args.tools}
    print(f"tools: {versions}")
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}")
    rounds = [one_round(args, i + 1, log_dir) for i in range(args.rounds)]
    state = corpus.read_state(str(Path(args.work) / "corpus" / "live")) or {}
    head = (f"date {datetime.datetime.now().isoformat(timespec='minutes')}, "
            f"{os.cpu_count()} cores, repofs {versions.get('repofs', '-')}, "
            f"corpus seed {args.seed} scale {args.scale}: "
            f"gen1 {int(state.get('gen1_bytes', 0)) / MiB:.0f} MiB, "  # type: ignore[call-overload]
            f"gen2 {int(state.get('bytes', 0)) / MiB:.0f} MiB "  # type: ignore[call-overload]
            f"in {state.get('files')} files, rounds {args.rounds} (median), nice {args.nice}")
    tbl, tres = report(head, rounds, args.tools)
    out = results_dir / f"core-{stamp}.json"
    out.write_text(json.dumps({
        "head": head, "versions": versions, "corpus": state,
        "rounds": [[asdict(r) for r in rs] for rs in rounds],
        "targets": [{"target": n, "pass": ok, "detail": d} for n, ok, d in tres],
        "table": tbl,
    }, indent=1))
    print(f"\nresults: {out}\nlogs: {log_dir}")
    failed = any(not r.ok for rs in rounds for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
