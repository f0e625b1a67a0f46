"""The harness of the end-to-end tests: run the installed ``repofs`` entry point as a subprocess.

Every run goes through ``Cli.run``, which checks the one thing no command may ever do:
print a Python traceback (or an "internal error") on stderr. Data lives on tmpfs
(/dev/shm) unless a test needs a real disk file system (chattr).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PASSPHRASE = "integration test passphrase"
SHM = Path("/dev/shm")


def repofs_executable() -> str:
    exe = Path(sys.prefix) / "bin" / "repofs"
    if exe.exists():
        return str(exe)
    found = shutil.which("repofs")
    if found is None:
        raise RuntimeError("the repofs entry point is not installed (pip install -e .)")
    return found


REPOFS = repofs_executable()
if os.geteuid() != 0:
    raise RuntimeError("the integration tests run as root (mknod, chown, chattr, mount)")

Arg = str | bytes | os.PathLike[str] | os.PathLike[bytes]


@dataclass
class Result:
    args: list[bytes]
    rc: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", errors="replace")

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]

    def json_lines(self) -> list[dict]:
        import json

        return [json.loads(ln) for ln in self.out.decode().splitlines() if ln.strip()]

    def json(self) -> object:
        import json

        return json.loads(self.out)

    def __str__(self) -> str:
        cmd = b" ".join(self.args).decode(errors="replace")
        return f"$ {cmd}\nrc={self.rc}\nstdout={self.out[:2000]!r}\nstderr={self.err}"


def no_traceback(err: str) -> None:
    assert "Traceback" not in err, err
    assert "internal error" not in err, err


class Cli:
    """The repofs command line bound to one repository and one files-cache directory."""

    def __init__(self, repo: Path, cache: Path, passphrase: str | None = PASSPHRASE) -> None:
        self.repo = repo
        self.cache = cache
        self.passphrase = passphrase

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPOFS_")}
        env.update(REPOFS_NO_PROGRESS="1", XDG_CACHE_HOME=str(self.cache),
                   XDG_STATE_HOME=str(self.cache), LC_ALL="C.UTF-8")
        if self.passphrase is not None:  # None: no passphrase in the environment
            env["REPOFS_PASSPHRASE"] = self.passphrase
        env.update(extra or {})
        return env

    def run(self, command: str, *args: Arg, expect: int | None = 0, input: bytes | None = None,
            env: dict[str, str] | None = None, drop_dac: bool = False,
            timeout: float = 300, repo: Path | None = None) -> Result:
        argv: list[bytes] = [os.fsencode(REPOFS), command.encode(), b"-r",
                             os.fsencode(repo or self.repo)]
        argv += [os.fsencode(a) for a in args]
        if drop_dac:  # root that file modes apply to: without CAP_DAC_{OVERRIDE,READ_SEARCH}
            argv = [b"setpriv", b"--bounding-set", b"-dac_override,-dac_read_search", *argv]
        p = subprocess.run(argv, input=input if input is not None else b"",
                           capture_output=True, env=self.env(env), timeout=timeout)
        r = Result(argv, p.returncode, p.stdout, p.stderr.decode("utf-8", errors="replace"))
        no_traceback(r.err)
        if expect is not None:
            assert r.rc == expect, str(r)
        return r

    def init(self) -> Result:
        return self.run("init")

    def create(self, *args: Arg, expect: int | None = 0, **kw: object) -> dict:
        r = self.run("create", "--json", *args, expect=expect, **kw)  # type: ignore[arg-type]
        return r.json()  # type: ignore[return-value]

    def snapshots(self, *args: Arg) -> list[dict]:
        return self.run("snapshots", "--json", *args).json()  # type: ignore[return-value]


def make_cli(base: Path, name: str = "repo", init: bool = True) -> Cli:
    cli = Cli(base / name, base / f"{name}-cache")
    if init:
        cli.init()
    return cli


def rsync_diff(src: Path, dst: Path, *extra: str) -> str:
    """What rsync would change to make ``dst`` like ``src``: empty if they are identical."""
    p = subprocess.run(
        ["rsync", "-aHAXc", "--numeric-ids", "--dry-run", "--itemize-changes", *extra,
         f"{src}/", f"{dst}/"],
        capture_output=True, check=False,
    )
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout.decode("utf-8", errors="backslashreplace")


def rsync_copy(src: Path, dst: Path) -> None:
    subprocess.run(["rsync", "-aHAX", "--numeric-ids", f"{src}/", f"{dst}/"], check=True)


def under(root: Path, abs_path: Path) -> Path:
    """Where restore puts the absolute source path ``abs_path`` below ``root``."""
    return root / os.fsencode(abs_path).lstrip(b"/").decode("utf-8", "surrogateescape")


def file_digest(path: Path | bytes) -> str:
    h = hashlib.blake2b()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))


def tree_signature(root: Path, skip: Sequence[bytes] = ()) -> dict[bytes, tuple]:
    """Everything restore must reproduce, per relative path (bytes), in a comparable form.

    Hardlinks are compared as groups: each inode is labelled by the first path (in
    sorted walk order) that has it, so two trees with the same link structure agree.
    """
    out: dict[bytes, tuple] = {}
    first_path: dict[tuple[int, int], bytes] = {}
    broot = os.fsencode(root)

    def visit(rel: bytes) -> None:
        full = broot + (b"/" + rel if rel else b"")
        st = os.lstat(full)
        m = st.st_mode
        extra: object = None
        if stat.S_ISREG(m):
            extra = file_digest(full)
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                extra = (extra, first_path.setdefault(key, rel))
        elif stat.S_ISLNK(m):
            extra = os.readlink(full)
        elif stat.S_ISBLK(m) or stat.S_ISCHR(m):
            extra = st.st_rdev
        size = st.st_size if not stat.S_ISDIR(m) else 0
        out[rel] = (m, st.st_uid, st.st_gid, size, st.st_mtime_ns, st.st_nlink if
                    not stat.S_ISDIR(m) else 0, extra, _xattrs(full))
        if stat.S_ISDIR(m):
            for name in sorted(os.listdir(full)):
                child = rel + b"/" + name if rel else name
                if child not in skip:
                    visit(child)

    visit(b"")
    return out


def assert_same_tree(src: Path, dst: Path, skip: Sequence[bytes] = ()) -> None:
    a, b = tree_signature(src, skip), tree_signature(dst, skip)
    assert sorted(a) == sorted(b), (sorted(set(a) ^ set(b)))[:20]
    diffs = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not diffs, diffs


def du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, check=True).stdout
    return int(out.split()[0])


def write_random(path: Path, size: int, block: int = 16 << 20) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n
