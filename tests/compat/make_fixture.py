"""Build a frozen fixture repository of the current format version (run by hand, once per
released version): ``python tests/compat/make_fixture.py v1``.

The fixture is committed under tests/compat/<version>/ with a manifest of what each
snapshot must restore to; test_fixtures.py checks every later repofs still reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PASSPHRASE = "repofs compat fixture"
ADMIN_PASSPHRASE = "repofs compat fixture admin"
WRITER_PASSPHRASE = "repofs compat fixture writer"
HERE = Path(__file__).parent


def describe(root: Path) -> dict[str, dict[str, object]]:
    """Everything a restore must reproduce, keyed by path relative to root."""
    out: dict[str, dict[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, os.fsencode(root)).decode("utf-8", "surrogateescape")
            st = os.lstat(p)
            d: dict[str, object] = {"mode": st.st_mode, "mtime_ns": st.st_mtime_ns}
            if os.path.islink(p):
                d["target"] = os.readlink(p).decode("utf-8", "surrogateescape")
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    d["sha256"] = hashlib.sha256(f.read()).hexdigest()
                d["size"] = st.st_size
                d["nlink"] = st.st_nlink
            xattrs = {k: os.getxattr(p, k, follow_symlinks=False).hex()
                      for k in sorted(os.listxattr(p, follow_symlinks=False))
                      if k.startswith("user.")}
            if xattrs:
                d["xattrs"] = xattrs
            out[rel] = d
    return out


def make_tree(src: Path, generation: int) -> None:
    (src / "docs").mkdir(parents=True, exist_ok=True)
    (src / "empty-dir").mkdir(exist_ok=True)
    (src / "docs" / "readme.txt").write_text(f"generation {generation}\n" * 100)
    (src / "docs" / "big.bin").write_bytes(bytes(range(256)) * 4096 * 3 + b"x" * generation)
    (src / "empty").write_bytes(b"")
    link = src / "docs" / "link"
    if not link.is_symlink():
        link.symlink_to("readme.txt")
    hard = src / "docs" / "hard"
    if not hard.exists():
        os.link(src / "docs" / "readme.txt", hard)
    with open(src / "sparse", "wb") as f:
        f.seek(1024 * 1024)
        f.write(b"end")
    weird = os.path.join(os.fsencode(src), b"caf\xe9-latin1")
    with open(weird, "wb") as f:
        f.write(b"not utf-8 name\n")
    os.setxattr(src / "docs" / "readme.txt", "user.note", b"fixture")
    for p in [src, *src.rglob("*")]:
        if not p.is_symlink():
            os.utime(p, ns=(1_700_000_000_000_000_000 + generation, 1_700_000_000_000_000_000
                            + generation))


def main() -> None:
    version = sys.argv[1]
    dest = HERE / version
    if dest.exists():
        sys.exit(f"{dest} exists: fixtures are frozen, never regenerated")
    env = {**os.environ, "REPOFS_PASSPHRASE": PASSPHRASE, "REPOFS_NO_PROGRESS": "1",
           "REPOFS_ADMIN_PASSPHRASE": ADMIN_PASSPHRASE}
    work = Path(tempfile.mkdtemp(prefix="repofs-fixture-", dir="/dev/shm"))
    try:
        repo, src = work / "repo", work / "src"
        src.mkdir()

        env["XDG_STATE_HOME"] = str(work / "state")
        env["XDG_CACHE_HOME"] = str(work / "cache")

        def run(*args: str, stdin: bytes | None = None, **extra: str) -> str:
            r = subprocess.run(["repofs", *args], env={**env, **extra}, input=stdin,
                               stdout=subprocess.PIPE, check=True)
            return r.stdout.decode()

        run("init", "-r", str(repo))
        # frozen too: a write-only key file, and a removal record signed by the admin key
        run("key", "add", "--write-only", "-r", str(repo),
            REPOFS_NEW_PASSPHRASE=WRITER_PASSPHRASE)
        make_tree(src, 0)
        gone = json.loads(run("create", "-r", str(repo), "--json", str(src)))["snapshot"]
        run("forget", "-r", str(repo), gone, REPOFS_PASSPHRASE=ADMIN_PASSPHRASE)
        manifest: dict[str, object] = {"passphrase": PASSPHRASE, "snapshots": [],
                                       "writer_passphrase": WRITER_PASSPHRASE,
                                       "removed": [gone]}
        for gen in (1, 2):
            make_tree(src, gen)
            snap = json.loads(run("create", "-r", str(repo), "--json", "--tag", f"gen{gen}",
                                  "--name", f"gen{gen}", "--host", "fixture-host", str(src)))
            manifest["snapshots"].append(  # type: ignore[attr-defined]
                {"id": snap["snapshot"], "name": f"gen{gen}", "root": str(src).lstrip("/"),
                 "tree": describe(src)})
        snap = json.loads(run("create", "-r", str(repo), "--json", "--stdin-name", "dump.sql",
                              stdin=b"CREATE TABLE t (x int);\n" * 1000))
        manifest["snapshots"].append(  # type: ignore[attr-defined]
            {"id": snap["snapshot"], "name": None, "root": "", "stdin": "dump.sql",
             "sha256": hashlib.sha256(b"CREATE TABLE t (x int);\n" * 1000).hexdigest()})
        shutil.copytree(repo, dest / "repo")
        (dest / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
