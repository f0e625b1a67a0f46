"""selection: the rules of create's --exclude-if-present, --exclude-larger-than,
--exclude-nodump and --iexclude, and the path lists of --files-from(0)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs.patterns import PatternSet
from repofs.selection import CasefoldPatterns, Selection, parse_size, read_path_list

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@given(st.integers(0, 10**12), st.sampled_from(sorted(UNITS)),
       st.sampled_from(["", "B", "iB", "b", "IB"]), st.booleans())
def test_size_units_are_binary(n: int, unit: str, suffix: str, lower: bool) -> None:
    text = f"{n}{unit.lower() if lower else unit}{suffix if unit else ''}"
    assert parse_size(text) == n * UNITS[unit]


@given(st.text(max_size=12))
def test_a_size_is_digits_and_a_unit_or_refused(text: str) -> None:
    try:
        value = parse_size(text)
    except ValueError:
        return
    assert value >= 0 and text[:1].isdigit() and text.isascii()


@pytest.mark.parametrize("text", ["", "K", "1.5K", "-1", "+1", " 1K", "1K ", "1 K", "1KK",
                                  "1P", "1KB2", "١"])
def test_sizes_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@given(st.lists(st.binary(min_size=1).filter(lambda b: b"\n" not in b), max_size=8))
def test_files_from_lines_round_trip(paths: list[bytes]) -> None:
    assert read_path_list(b"\n".join(paths) + b"\n", nul=False) == paths
    assert read_path_list(b"\n\n".join(paths), nul=False) == paths  # empty lines ignored


@given(st.lists(st.binary(min_size=1).filter(lambda b: b"\0" not in b), max_size=8))
def test_files_from0_round_trip(paths: list[bytes]) -> None:
    assert read_path_list(b"\0".join(paths) + b"\0", nul=True) == paths


def test_files_from_keeps_white_space_and_hashes() -> None:
    assert read_path_list(b" a \n#b\r\n", nul=False) == [b" a ", b"#b\r"]


@pytest.mark.parametrize("pattern,path,expected", [
    (b"*.JPG", b"/photos/a.jpg", True),
    (b"thumbs.db", b"/x/Thumbs.DB", True),
    (b"/Home/*/CACHE", b"/home/alice/.cache", False),
    (b"/Home/*/CACHE", b"/home/alice/cache", True),
    ("café".encode(), "/CAFÉ".encode(), True),
    (b"\xff*", b"/\xffABC", True),  # bytes that are not UTF-8 stay as they are
    (b"a", b"/b", False),
])
def test_iexclude_ignores_case(pattern: bytes, path: bytes, expected: bool) -> None:
    assert CasefoldPatterns([pattern]).matches(path) is expected
    assert Selection(iexcludes=CasefoldPatterns([pattern])).excluded(path) is expected


def test_exclude_and_iexclude_combine() -> None:
    sel = Selection(excludes=PatternSet([b"*.o"]), iexcludes=CasefoldPatterns([b"*.TMP"]))
    assert sel.excluded(b"/a.o") and sel.excluded(b"/a.tmp") and not sel.excluded(b"/a.O")
    assert not Selection().excluded(b"/anything")


def test_size_and_tag_rules() -> None:
    sel = Selection(larger_than=1024, if_present=[b".nobackup", b"CACHEDIR.TAG"])
    assert not sel.too_large(1024) and sel.too_large(1025)
    assert not Selection().too_large(1 << 62)
    assert sel.tagged([b"a", b"CACHEDIR.TAG"]) and not sel.tagged([b"a", b".nobackup2"])


def test_nodump_read_from_the_flags(tmp_path: Path) -> None:
    """On the disk file system under /tmp (tmpfs keeps no such flag)."""
    for n in ("marked", "plain"):
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    os.symlink("marked", tmp_path / "link")
    subprocess.run(["chattr", "+d", tmp_path / "marked", tmp_path / "dir"], check=True)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        on, off = Selection(nodump=True), Selection()
        assert on.skip_nodump(fd, b"marked") and on.skip_nodump(fd, b"dir")
        assert not on.skip_nodump(fd, b"plain")
        assert not on.skip_nodump(fd, b"link")  # never followed: the link is not marked
        assert not on.skip_nodump(fd, b"gone")  # cannot be opened: the walk reports it
        assert not off.skip_nodump(fd, b"marked")  # not asked for
    finally:
        os.close(fd)


def test_nodump_where_no_flags_are_kept(shm_dir: Path) -> None:
    (shm_dir / "f").write_bytes(b"x")
    fd = os.open(shm_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not Selection(nodump=True).skip_nodump(fd, b"f")
    finally:
        os.close(fd)
