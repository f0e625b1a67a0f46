"""treediff, finder, treewalk and repostats' tree arithmetic on in-memory trees: what is
reported, which trees are read (only differing subtrees; a subtree seen once is not
read again), and hostile trees (damaged, nested past the cap) reported, never a crash."""

from __future__ import annotations

import hashlib

import pytest

from repofs import spec
from repofs.damage import DamageLog
from repofs.errors import IntegrityError
from repofs.finder import Finder
from repofs.model import DIR, FILE, SYMLINK, Entry, Part, RawEntry, encode_tree, split_tree
from repofs.patterns import PatternSet
from repofs.treediff import ADDED, CONTENT, METADATA, REMOVED, TYPE, diff
from repofs.treewalk import walk


class Trees:
    """Trees by id, in memory; counts every load; ids in ``broken`` fail to verify."""

    def __init__(self) -> None:
        self.damage = DamageLog()
        self.trees: dict[bytes, list[Entry]] = {}
        self.loads: list[bytes] = []
        self.broken: set[bytes] = set()

    def add(self, entries: list[Entry]) -> bytes:
        entries = sorted(entries, key=lambda e: e.name)
        tid = hashlib.blake2b(repr(entries).encode(), digest_size=32).digest()
        self.trees[tid] = entries
        return tid

    def load_tree(self, tree_id: bytes) -> list[Entry]:
        self.loads.append(tree_id)
        if tree_id in self.broken:
            raise IntegrityError("tree", tree_id.hex(), "authentication failed")
        return self.trees[tree_id]


class RawTrees(Trees):
    """The same, also handing out trees undecoded, as a Repository does."""

    def load_tree_raw(self, tree_id: bytes) -> list[RawEntry]:
        entries = self.load_tree(tree_id)
        return split_tree(encode_tree(entries), tree_id.hex())


def f(name: str, data: bytes = b"x", mode: int = 0o644, mtime: int = 1) -> Entry:
    chunk = hashlib.blake2b(data, digest_size=32).digest()
    return Entry(name.encode(), FILE, mode, 0, 0, mtime, 1, size=len(data),
                 parts=(Part(chunk, len(data)),))


def d(t: Trees, name: str, *children: Entry, mode: int = 0o755, mtime: int = 1) -> Entry:
    return Entry(name.encode(), DIR, mode, 0, 0, mtime, 1, subtree=t.add(list(children)))


def root(t: Trees, *children: Entry) -> Entry:
    return Entry(b"/", DIR, 0o755, 0, 0, 0, 0, subtree=t.add(list(children)))


def big(t: Trees, name: str, n: int = 50) -> Entry:
    return d(t, name, *(d(t, f"sub{i}", f("file")) for i in range(n)))


def changes(t: Trees, a: Entry, b: Entry) -> list[tuple[str, bytes]]:
    return [(c.kind, c.path) for c in diff(t, a, b)]


@pytest.mark.parametrize("kind", [Trees, RawTrees])
def test_every_kind_of_change(kind: type[Trees]) -> None:
    t = kind()
    old = root(t, f("same"), f("content", b"1"), f("meta", mode=0o644), f("gone"),
               d(t, "olddir", f("inner")), f("becomes-dir"),
               Entry(b"link", SYMLINK, 0o777, 0, 0, 1, 1, target=b"a"))
    new = root(t, f("same"), f("content", b"2"), f("meta", mode=0o600), f("new"),
               d(t, "becomes-dir", f("x")), d(t, "newdir", f("inner")),
               Entry(b"link", SYMLINK, 0o777, 0, 0, 1, 1, target=b"b"))
    assert changes(t, old, new) == [
        (TYPE, b"/becomes-dir"), (ADDED, b"/becomes-dir/x"),
        (CONTENT, b"/content"), (REMOVED, b"/gone"), (CONTENT, b"/link"),
        (METADATA, b"/meta"), (ADDED, b"/new"), (ADDED, b"/newdir"),
        (ADDED, b"/newdir/inner"), (REMOVED, b"/olddir"), (REMOVED, b"/olddir/inner")]


def test_only_entries_that_differ_are_decoded() -> None:
    """An entry breaking a per-entry rule (size against its content list) but stored the
    same in both trees is never decoded, so never reported; one that differs is decoded,
    reported and left out, and the rest of its directory is still compared."""
    t = RawTrees()
    chunk = hashlib.blake2b(b"x", digest_size=32).digest()
    broken = Entry(b"broken", FILE, 0o644, 0, 0, 1, 1, size=5, parts=(Part(chunk, 1),))
    old = root(t, d(t, "dir", broken, f("a", b"1")))
    new = root(t, d(t, "dir", broken, f("a", b"2")))
    assert changes(t, old, new) == [(CONTENT, b"/dir/a")]
    assert not list(t.damage)
    new2 = root(t, d(t, "dir", broken, f("a", b"1"), Entry(
        b"broken2", FILE, 0o644, 0, 0, 1, 1, size=5, parts=(Part(chunk, 1),)), f("b")))
    assert changes(t, old, new2) == [(ADDED, b"/dir/b")]
    [damage] = list(t.damage)
    assert "broken2" in damage.detail and damage.consequence == "entry left out"


def test_a_directory_mtime_alone_is_no_change_but_its_mode_is() -> None:
    t = Trees()
    old = root(t, d(t, "a", f("x"), mtime=1), d(t, "b", f("x"), mode=0o755))
    new = root(t, d(t, "a", f("x"), mtime=2), d(t, "b", f("x"), mode=0o700))
    assert changes(t, old, new) == [(METADATA, b"/b")]


def test_only_differing_subtrees_are_read() -> None:
    t = Trees()
    unchanged = big(t, "unchanged")
    old = root(t, unchanged, d(t, "hot", f("a", b"1")))
    new = root(t, unchanged, d(t, "hot", f("a", b"2")))
    t.loads.clear()
    assert changes(t, old, new) == [(CONTENT, b"/hot/a")]
    assert unchanged.subtree not in t.loads
    assert len(t.loads) == 4  # the two roots and the two versions of /hot


def test_a_damaged_tree_is_reported_and_the_rest_compared() -> None:
    t = Trees()
    old = root(t, d(t, "bad", f("a", b"1")), f("x", b"1"))
    new_bad = d(t, "bad", f("a", b"2"))
    new = root(t, new_bad, f("x", b"2"))
    assert new_bad.subtree is not None
    t.broken.add(new_bad.subtree)
    assert changes(t, old, new) == [(CONTENT, b"/x")]
    [damage] = list(t.damage)
    assert damage.object_id == new_bad.subtree.hex() and "/bad" in damage.consequence


def _chain(t: Trees, depth: int) -> Entry:
    e = f("leaf")
    for i in range(depth):
        e = d(t, f"l{i}", e)
    return e


def test_deep_trees_are_walked_without_recursion_and_capped() -> None:
    t = Trees()
    deep = root(t, _chain(t, spec.MAX_TREE_DEPTH + 50))
    listed = list(walk(t, deep.subtree or b""))
    assert spec.MAX_TREE_DEPTH <= len(listed) < spec.MAX_TREE_DEPTH + 50
    assert any("nested too deep" in x.detail for x in t.damage)
    added = list(diff(t, root(t), deep))
    assert len(added) == len(listed)


@pytest.mark.parametrize("kind", [Trees, RawTrees])
def test_find_reads_a_subtree_once_across_snapshots(kind: type[Trees]) -> None:
    t = kind()
    shared = big(t, "shared", 30)
    s1 = root(t, shared, f("notes.txt", b"1"))
    s2 = root(t, shared, f("notes.txt", b"2"), f("more.txt"))
    finder = Finder(t, PatternSet([b"*.txt", b"/shared/sub1*/file"]))
    first = finder.search(s1.subtree or b"")
    read_once = len(t.loads)
    second = finder.search(s2.subtree or b"")
    assert [p for p, _ in first] == [b"/notes.txt", b"/shared/sub1/file"] + [
        f"/shared/sub1{i}/file".encode() for i in range(10)]
    assert [p for p, _ in second] == [b"/more.txt", b"/notes.txt"] + [p for p, _ in first][1:]
    assert len(t.loads) == read_once + 1  # only the second root: /shared is remembered
    assert finder.search(s2.subtree or b"") == second and len(t.loads) == read_once + 1


@pytest.mark.parametrize("kind", [Trees, RawTrees])
@pytest.mark.parametrize("pattern", [b"file", b"/shared/**/file"])
def test_find_patterns_are_those_of_exclude(pattern: bytes, kind: type[Trees]) -> None:
    t = kind()
    s = root(t, big(t, "shared", 3), f("file"))
    found = [p for p, _ in Finder(t, PatternSet([pattern])).search(s.subtree or b"")]
    subs = [f"/shared/sub{i}/file".encode() for i in range(3)]
    assert found == ([b"/file", *subs] if pattern == b"file" else subs)


def test_find_decodes_only_what_matches_or_is_a_directory() -> None:
    """A file breaking a per-entry rule is reported only when the pattern matches it."""
    t = RawTrees()
    chunk = hashlib.blake2b(b"x", digest_size=32).digest()
    broken = Entry(b"broken.bin", FILE, 0o644, 0, 0, 1, 1, size=5, parts=(Part(chunk, 1),))
    s = root(t, d(t, "dir", broken, f("a.txt")))
    assert [p for p, _ in Finder(t, PatternSet([b"*.txt"])).search(s.subtree or b"")] == [
        b"/dir/a.txt"]
    assert not list(t.damage)
    assert Finder(t, PatternSet([b"*.bin"])).search(s.subtree or b"") == ()
    [damage] = list(t.damage)
    assert "broken.bin" in damage.detail


@pytest.mark.parametrize("kind", [Trees, RawTrees])
def test_long_listings_compared_in_runs_miss_nothing(kind: type[Trees]) -> None:
    """Runs of equal entries are skipped at once; a change anywhere in them is found."""
    t = kind()
    names = [f"f{i:03d}" for i in range(0, 80, 2)]
    old = root(t, *(f(n) for n in names))
    new_files = [f(n, b"2") if n in ("f006", "f040", "f078") else f(n)
                 for n in names if n != "f050"]
    new = root(t, *new_files, f("f033"), f("f999"))
    assert changes(t, old, new) == [
        (CONTENT, b"/f006"), (ADDED, b"/f033"), (CONTENT, b"/f040"), (REMOVED, b"/f050"),
        (CONTENT, b"/f078"), (ADDED, b"/f999")]
