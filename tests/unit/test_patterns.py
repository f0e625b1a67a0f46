"""patterns: shell globs over absolute byte paths, for --exclude and --include."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs.patterns import PatternSet, read_pattern_file


def matches(patterns: list[bytes], path: bytes) -> bool:
    return PatternSet(patterns).matches(path)


@pytest.mark.parametrize("pattern,path,expected", [
    # no '/': any single component
    (b"*.o", b"/src/a.o", True),
    (b"*.o", b"/a.o", True),
    (b"*.o", b"/src/a.c", False),
    (b"*.o", b"/src/a.o/b", False),  # matches only the last component; see matches_or_under
    (b".cache", b"/home/u/.cache", True),
    (b".cache", b"/home/u/x.cache", False),
    (b"?.txt", b"/a.txt", True),
    (b"?.txt", b"/ab.txt", False),
    (b"[ab].txt", b"/b.txt", True),
    (b"[ab].txt", b"/c.txt", False),
    (b"[!ab].txt", b"/c.txt", True),
    (b"[!ab].txt", b"/a.txt", False),
    (b"[a-c]x", b"/bx", True),
    (b"/a[!x]b", b"/a/b", False),  # a class never matches '/' either
    (b"/a[!x]b", b"/acb", True),
    (b"[[]x", b"/[x", True),
    # '/': anchored at the root
    (b"/home/*/.cache", b"/home/u/.cache", True),
    (b"/home/*/.cache", b"/home/u/v/.cache", False),
    (b"/home/*/.cache", b"/x/home/u/.cache", False),
    (b"home/*/.cache", b"/home/u/.cache", True),  # relative patterns with '/' are anchored
    (b"/tmp", b"/tmp", True),
    (b"/tmp", b"/tmpx", False),
    (b"/tmp/", b"/tmp", True),  # a trailing slash is dropped
    # '*' never crosses '/', '**' crosses any number of directories
    (b"/a/*", b"/a/b/c", False),
    (b"/a/**", b"/a/b/c", True),
    (b"/a/**/z", b"/a/z", True),
    (b"/a/**/z", b"/a/b/c/z", True),
    (b"/a/**/z", b"/a/b/c/zz", False),
    (b"**/z", b"/z", True),
    (b"**/z", b"/q/r/z", True),
    # regex syntax is literal
    (b"a.b", b"/axb", False),
    (b"a.b", b"/a.b", True),
    (b"a+b", b"/a+b", True),
    (b"(x)", b"/(x)", True),
    (b"a|b", b"/a", False),
    (b"a|b", b"/a|b", True),
    (b"$x^", b"/$x^", True),
    (b"[", b"/[", True),  # an unclosed bracket is a literal
    # names that are not UTF-8
    (b"\xff*", b"/dir/\xff\xfe", True),
    (b"/d/\xe9t\xe9", b"/d/\xe9t\xe9", True),
    # newlines are just bytes
    (b"a*b", b"/a\nb", True),
])
def test_matches(pattern: bytes, path: bytes, expected: bool) -> None:
    assert matches([pattern], path) is expected


def test_several_patterns_any_matches() -> None:
    ps = PatternSet([b"*.o", b"/tmp", b"cache"])
    assert ps.matches(b"/x/y.o") and ps.matches(b"/tmp") and ps.matches(b"/a/cache")
    assert not ps.matches(b"/x/y.c")
    assert ps.patterns_count == 3 and bool(ps)


def test_empty_sets() -> None:
    for ps in (PatternSet([]), PatternSet([b""]), PatternSet([b"", b""])):
        assert not ps and ps.patterns_count == 0
        assert not ps.matches(b"/anything")
        assert not ps.matches_or_under(b"/a/b")


def test_root_pattern() -> None:
    assert matches([b"/"], b"/")
    assert not matches([b"/"], b"/a")


def test_matches_or_under() -> None:
    ps = PatternSet([b"/home/*/.cache", b"node_modules"])
    assert ps.matches_or_under(b"/home/u/.cache")
    assert ps.matches_or_under(b"/home/u/.cache/x/y")
    assert ps.matches_or_under(b"/src/node_modules/pkg/index.js")
    assert not ps.matches_or_under(b"/home/u/.cachex/y")
    assert not ps.matches_or_under(b"/home/u")
    assert not ps.matches_or_under(b"/src/node_modules2/pkg")


@pytest.mark.parametrize("pattern", [b"[z-a]", b"[]", b"[]]", b"[\\]", b"[a-]x", b"[!]",
                                     b"a[", b"[[", b"/x/[z-a]/y"])
def test_odd_brackets_never_crash(pattern: bytes) -> None:
    """A user's pattern is never a traceback; an unusable bracket matches itself."""
    ps = PatternSet([pattern])
    path = pattern if pattern.startswith(b"/") else b"/dir/" + pattern
    ps.matches(path)
    ps.matches_or_under(path + b"/below")


@pytest.mark.parametrize("pattern", [b"[z-a]", b"[]"])
def test_unusable_brackets_match_literally(pattern: bytes) -> None:
    assert matches([pattern], b"/dir/" + pattern)
    assert not matches([pattern], b"/dir/x")


component = st.text(alphabet="abc.", min_size=1, max_size=8).map(str.encode)
glob = st.text(alphabet="abc.*?", min_size=1, max_size=8).map(str.encode)


@given(glob, component)
def test_component_patterns_agree_with_fnmatch(pattern: bytes, name: bytes) -> None:
    """Within one component (no '/', no brackets), our globs are fnmatch's."""
    assert matches([pattern], b"/some/dir/" + name) == fnmatch.fnmatchcase(name, pattern)


@given(st.lists(component, min_size=1, max_size=4), st.lists(component, max_size=3))
def test_literal_anchored_patterns(parts: list[bytes], extra: list[bytes]) -> None:
    path = b"/" + b"/".join(parts)
    ps = PatternSet([path])
    assert ps.matches(path)
    assert ps.matches_or_under(b"/".join([path, *extra]))
    assert not ps.matches(path + b"x")
    assert not ps.matches(b"/x" + path)


@given(st.binary(max_size=30), st.binary(max_size=60))
def test_any_pattern_any_path_never_crashes(pattern: bytes, path: bytes) -> None:
    ps = PatternSet([pattern])
    ps.matches(b"/" + path)
    ps.matches_or_under(b"/" + path)


@given(st.lists(st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b
                                                          and b"\r" not in b), max_size=10))
def test_pattern_file_round_trip(patterns: list[bytes]) -> None:
    kept = [p.strip() for p in patterns if p.strip() and not p.strip().startswith(b"#")]
    assert read_pattern_file(b"\n".join(patterns)) == kept


def test_pattern_file_comments_and_blanks() -> None:
    data = b"# caches\n*.o\n\n   \n  /tmp  \n\t# indented comment\nnode_modules\r\n#x\n"
    assert read_pattern_file(data) == [b"*.o", b"/tmp", b"node_modules"]
