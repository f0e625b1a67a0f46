"""Deep directory trees: every traversal of repofs is iterative (repofs-format(5): trees
nest down to MAX_TREE_DEPTH), so neither a real tree far deeper than Python's recursion
limit nor a stored one ends a command in RecursionError."""

from __future__ import annotations

import os
from pathlib import Path

from .harness import make_cli

DEPTH = 400  # about 3 frames a level was the recursive walk's cost: 1,200 > 1,000


def _deep_tree(root: Path, depth: int) -> list[str]:
    """``root/d/d/.../d`` ``depth`` levels, a file at the bottom and one halfway up; the
    expected ``ls`` lines (made with relative paths: an absolute one passes PATH_MAX)."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    lines = []
    rel = str(root)
    try:
        for level in range(depth):
            os.mkdir("d", dir_fd=fd)
            new = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = new
            rel += "/d"
            lines.append(rel)
            if level in (depth // 2, depth - 1):
                w = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(w, b"level %d\n" % level)
                os.close(w)
                lines.append(rel + "/f")
    finally:
        os.close(fd)
    return sorted(lines, key=lambda p: p.split("/"))


def test_a_real_tree_400_deep_is_backed_up_and_listed(shm_dir: Path) -> None:
    cli = make_cli(shm_dir)
    src = shm_dir / "src"
    expected = _deep_tree(src, DEPTH)
    stats = cli.create(src)
    assert (stats["dirs"], stats["files"]) == (DEPTH + 1, 2), stats
    assert stats["warnings"] == [], stats
    listed = cli.run("ls", "latest").text.splitlines()
    assert listed == _ancestors(src) + [str(src)] + expected
    bottom = src.as_posix() + "/d" * DEPTH + "/f"
    assert cli.run("dump", "latest", bottom).out == b"level %d\n" % (DEPTH - 1)
    cli.run("check")


def _ancestors(p: Path) -> list[str]:
    return [str(a) for a in reversed(p.parents) if str(a) != "/"]
