"""``create``'s selection options and ``--dry-run``, through the real CLI.

- ``--dry-run`` reads and counts as a real create would (the counts match the create
  that follows), and leaves every byte of the repository and of the files cache as it
  was, even when unlisted packs wait to be adopted.
- ``--exclude-if-present``, ``--exclude-larger-than``, ``--exclude-nodump`` (chattr +d,
  on a disk file system: tmpfs keeps no such flag) and ``--iexclude`` leave out what
  they name, counted in ``skipped``, without a warning.
- ``--files-from`` / ``--files-from0`` paths join the PATH arguments.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from repofs import spec

from .harness import Cli, make_cli


def fingerprint(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry below ``root``: mode, mtime and the digest of its bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns, digest)
    return out


def listing(cli: Cli, snap: str) -> set[str]:
    return {e["path"] for e in cli.run("ls", snap, "--json").json_lines()}


def test_a_dry_run_writes_nothing_and_counts_what_create_stores(shm_dir: Path) -> None:
    src = shm_dir / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"first\n")
    cli = make_cli(shm_dir)
    cli.create(src)
    (src / "d" / "new.bin").write_bytes(os.urandom(300_000))
    # a lost index segment: its packs are adopted by the next real create, not by a dry run
    (segment,) = (cli.repo / spec.NS_INDEX).iterdir()
    segment.unlink()
    packs = sum(1 for _ in (cli.repo / spec.NS_DATA).glob("*/*"))
    repo_before, cache_before = fingerprint(cli.repo), fingerprint(cli.cache)
    dry = cli.create("--dry-run", src)
    assert fingerprint(cli.repo) == repo_before
    assert fingerprint(cli.cache) == cache_before
    assert dry["dry_run"] is True and dry["snapshot"] is None and dry["bytes_added"] == 0
    assert dry["packs_adopted"] == packs and dry["files"] == 2
    assert len(cli.snapshots()) == 1
    text = cli.run("create", "-n", src).text
    assert text.startswith("dry run: no snapshot saved")
    assert fingerprint(cli.repo) == repo_before
    real = cli.create(src)
    assert real["dry_run"] is False and real["packs_adopted"] == packs
    for key in ("files", "dirs", "files_unchanged", "bytes_total", "blobs_new", "bytes_new"):
        assert real[key] == dry[key], key
    again = cli.create("--dry-run", src)  # the files cache the real create saved is used
    assert again["files_unchanged"] == 2 and again["bytes_read"] == 0


def test_exclude_if_present_larger_than_and_iexclude(shm_dir: Path) -> None:
    src = shm_dir / "src"
    (src / "tagged" / "sub").mkdir(parents=True)
    (src / "tagged" / ".nobackup").write_bytes(b"")
    (src / "tagged" / "sub" / "f").write_bytes(b"x")
    (src / "kept").mkdir()
    (src / "kept" / "small").write_bytes(b"s" * 1024)
    (src / "kept" / "big").write_bytes(b"b" * 1025)
    (src / "Thumbs.DB").write_bytes(b"t")
    (src / "notes.txt").write_bytes(b"n")
    cli = make_cli(shm_dir)
    r = cli.create(src, "--exclude-if-present", ".nobackup", "--exclude-larger-than", "1K",
                   "--iexclude", "thumbs.db")
    assert r["warnings"] == []
    assert r["skipped"] == {"sockets": 0, "larger_than": 1, "nodump": 0, "if_present": 1}
    rel = {p.removeprefix(str(src)) for p in listing(cli, r["snapshot"])}
    assert {"/kept/small", "/notes.txt"} <= rel
    assert not rel & {"/tagged", "/tagged/sub/f", "/kept/big", "/Thumbs.DB"}
    text = cli.run("create", src, "--exclude-larger-than", "1k").text
    assert "skipped: 1 files over the size limit" in text
    err = cli.run("create", src, "--exclude-larger-than", "1.5K", expect=2).err
    assert "--exclude-larger-than" in err  # the parser's rules: tests/unit/test_selection.py
    cli.run("create", src, "--exclude-if-present", "a/b", expect=2)


def test_exclude_nodump(tmp_path: Path) -> None:
    """chattr +d on a file and on a directory, on the disk file system under /tmp."""
    src = tmp_path / "src"
    (src / "nd_dir").mkdir(parents=True)
    (src / "nd_dir" / "inside").write_bytes(b"i")
    (src / "nd_file").write_bytes(b"f")
    (src / "plain").write_bytes(b"p")
    subprocess.run(["chattr", "+d", src / "nd_dir", src / "nd_file"], check=True)
    cli = make_cli(tmp_path)
    plain = cli.create(src)
    assert plain["skipped"]["nodump"] == 0 and plain["files"] == 3
    r = cli.create(src, "--exclude-nodump")
    assert r["skipped"]["nodump"] == 2 and r["files"] == 1 and r["warnings"] == []
    assert listing(cli, r["snapshot"]) == {str(src), str(src / "plain")} | {
        str(p) for p in src.parents if p != Path("/")}


def test_files_from_join_the_paths(shm_dir: Path) -> None:
    src = shm_dir / "src"
    src.mkdir()
    names = [b"a", b"b c", b"line\nbreak", b"d"]
    for n in names:
        (src / os.fsdecode(n)).write_bytes(n)
    lines = shm_dir / "list"
    lines.write_bytes(b"\n".join(os.fsencode(src) + b"/" + n for n in names[:2]) + b"\n\n")
    nul = shm_dir / "list0"
    nul.write_bytes(b"\0" + os.fsencode(src) + b"/line\nbreak\0")
    cli = make_cli(shm_dir)
    r = cli.create("--files-from", lines, "--files-from0", nul, src / "d")
    got = {os.fsencode(p) for p in listing(cli, r["snapshot"])}
    want = {os.fsencode(src) + b"/" + n for n in names}
    assert want <= got and r["files"] == 4
    piped = cli.run("create", "--json", "--files-from0", "-",
                    input=os.fsencode(src / "a") + b"\0").json()
    assert piped["files"] == 1  # type: ignore[index]
    missing = shm_dir / "missing"
    missing.write_bytes(os.fsencode(src / "nope") + b"\n")
    cli.run("create", "--files-from", missing, expect=2)
    (shm_dir / "empty").write_bytes(b"\n")
    assert "nothing to back up" in cli.run("create", "--files-from", shm_dir / "empty",
                                           expect=2).err
