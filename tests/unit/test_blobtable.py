"""blobtable: the table answers exactly as the dict it replaced (blobindex_reference)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from repofs import blobtable, spec
from repofs.blobtable import BlobTable, Location
from repofs.envelope import HEADER_LEN
from repofs.errors import IntegrityError
from repofs.index import encode_segment
from repofs.pack import BlobEntry
from tests.unit.blobindex_reference import BlobIndex
from tests.unit.test_index import cipher, decode, entries, packs

KINDS = [BlobIndex, BlobTable]


def entry(i: int, t: int = spec.BLOB_DATA) -> BlobEntry:
    return BlobEntry(bytes([i]) * 32, t, i, HEADER_LEN + 100 * i, 100, 50)


@pytest.mark.parametrize("kind", KINDS)
def test_blob_index_lookup(kind) -> None:
    idx = kind()
    assert len(idx) == 0 and list(idx.packs()) == []
    idx.add_pack("p1", [entry(1), entry(2, spec.BLOB_TREE)])
    idx.add_pack("p2", [entry(3)])
    assert len(idx) == 3 and entry(1).blob_id in idx and bytes([9]) * 32 not in idx
    assert idx.lookup(entry(1).blob_id, spec.BLOB_DATA) == Location("p1", entry(1))
    assert idx.lookup(entry(2).blob_id, spec.BLOB_TREE) == Location("p1", entry(2, 2))
    assert idx.lookup(entry(3).blob_id, spec.BLOB_DATA).pack == "p2"
    assert list(idx.packs()) == ["p1", "p2"]


@pytest.mark.parametrize("kind", KINDS)
def test_blob_index_missing_and_wrong_type(kind) -> None:
    idx = kind()
    idx.add_pack("p1", [entry(1)])
    with pytest.raises(IntegrityError, match="missing") as e:
        idx.lookup(bytes([5]) * 32, spec.BLOB_TREE)
    assert e.value.kind == "tree" and e.value.object_id == (bytes([5]) * 32).hex()
    with pytest.raises(IntegrityError, match="another type"):
        idx.lookup(entry(1).blob_id, spec.BLOB_TREE)


@pytest.mark.parametrize("kind", KINDS)
def test_blob_index_first_location_wins_and_packs_are_unique(kind) -> None:
    idx = kind()
    idx.add_pack("p1", [entry(1)])
    idx.add_pack("p2", [entry(1)])
    idx.add_pack("p1", [entry(4)])
    assert idx.lookup(entry(1).blob_id, spec.BLOB_DATA).pack == "p1"
    assert idx.lookup(entry(4).blob_id, spec.BLOB_DATA).pack == "p1"
    assert list(idx.packs()) == ["p1", "p2"]
    assert len(idx) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_same_bytes_as_chunk_and_as_tree_are_both_found(kind) -> None:
    """A chunk and a tree with identical plaintext share a keyed id; each keeps its type."""
    idx = kind()
    same_id = bytes([8]) * 32
    idx.add_pack("data-pack", [BlobEntry(same_id, spec.BLOB_DATA, 0, HEADER_LEN, 100, 50)])
    idx.add_pack("tree-pack", [BlobEntry(same_id, spec.BLOB_TREE, 0, HEADER_LEN, 100, 50)])
    assert idx.lookup(same_id, spec.BLOB_DATA).pack == "data-pack"
    assert idx.lookup(same_id, spec.BLOB_TREE).pack == "tree-pack"
    assert idx.has(same_id, spec.BLOB_DATA) and idx.has(same_id, spec.BLOB_TREE)
    assert len(idx) == 2
    only_data = kind()
    only_data.add_pack("data-pack", [BlobEntry(same_id, spec.BLOB_DATA, 0, HEADER_LEN, 100, 50)])
    assert only_data.has(same_id, spec.BLOB_DATA) and not only_data.has(same_id, spec.BLOB_TREE)


@pytest.mark.parametrize("kind", KINDS)
@given(packs)
def test_index_of_decoded_segments(kind, ps: list) -> None:
    idx = kind()
    for pack, es in decode(encode_segment(cipher(), ps)):
        idx.add_pack(pack, es)
    first: dict[tuple[bytes, int], tuple[str, BlobEntry]] = {}
    for pack, es in ps:
        for e in es:
            first.setdefault((e.blob_id, e.blob_type), (pack, e))
    assert len(idx) == len(first)
    for (blob_id, blob_type), (pack, e) in first.items():
        assert idx.lookup(blob_id, blob_type) == Location(pack, e)
        assert idx.has(blob_id, blob_type) and blob_id in idx


@pytest.mark.parametrize("kind", KINDS)
@given(st.lists(st.tuples(st.sampled_from(["a" * 64, "b" * 64, "c" * 64]),
                          st.lists(entries, max_size=6)), max_size=6),
       st.data())
def test_blob_index_keeps_every_entry_exactly(kind, packs: list, data: st.DataObject) -> None:
    """Rows are stored packed: every entry added comes back field for field, the first
    place of a (type, id) is what lookup gives, and the rest are its fallbacks."""
    # ids drawn again from a few, so that duplicates and chunk/tree clashes happen
    ids = data.draw(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=3))
    idx = kind()
    added: list[tuple[str, BlobEntry]] = []
    for pack, es in packs:
        es = [BlobEntry(data.draw(st.sampled_from(ids)), e.blob_type, e.nonce, e.offset,
                        e.length, e.raw_len) for e in es]
        idx.add_pack(pack, es)
        added += [(pack, e) for e in es]
    for pack, e in added:
        assert idx.has(e.blob_id, e.blob_type)
        places = [(loc.pack, loc.entry) for loc in idx.locations(e.blob_id, e.blob_type)]
        first = next((p, x) for p, x in added
                     if (x.blob_id, x.blob_type) == (e.blob_id, e.blob_type))
        assert places[0] == first
        assert (pack, e) in places
    assert set(idx.entries()) == set(added)


# -- the table against the reference ----------------------------------------------------------
def remapped(t: BlobTable) -> BlobTable:
    """The table as a cache gives it back: columns exported, copied, mapped again."""
    names, pairs, bufs = t.export()
    return BlobTable.mapped(names, pairs, [memoryview(bytes(b)) for b in bufs])


# ids that share their first 8 bytes (a writer with the id key can make that happen),
# ids equal to others, and a few of them only: duplicates and chunk/tree clashes happen
PREFIX = bytes(8)
ids = st.sampled_from([bytes([i]) * 32 for i in range(4)]
                      + [PREFIX + bytes([i]) * 24 for i in range(3)]
                      + [b"\xff" * 32, b"\xff" * 31 + b"\xfe"])
pack_names = st.sampled_from(["a" * 64, "b" * 64, "c" * 64, "d" * 64])
rows = st.builds(BlobEntry, blob_id=ids, blob_type=st.sampled_from([spec.BLOB_DATA,
                                                                     spec.BLOB_TREE]),
                 nonce=st.integers(0, 2), offset=st.sampled_from([HEADER_LEN, 2**32 - 20]),
                 length=st.sampled_from([17, 100]), raw_len=st.sampled_from([0, 5]))


BULK, MERGE_AT = blobtable._BULK, blobtable._MERGE_AT


class SameAnswers(RuleBasedStateMachine):
    """Random adds (planted duplicates, both types on one id, the same place again),
    merges and remaps: after each step, every question gets the reference's answer."""

    def __init__(self) -> None:
        super().__init__()
        self.ref = BlobIndex()
        self.table = BlobTable()

    @rule(pack=pack_names, es=st.lists(rows, max_size=8))
    def add(self, pack: str, es: list[BlobEntry]) -> None:
        self.ref.add_pack(pack, es)
        self.table.add_pack(pack, es)

    @rule()
    def remap(self) -> None:
        self.table = remapped(self.table)

    @rule(bulk=st.sampled_from([1, 3, 1024]), merge_at=st.sampled_from([2, 1 << 16]))
    def thresholds(self, bulk: int, merge_at: int) -> None:
        """Whole packs to the columns (bulk) or to the overlay; small or large overlays."""
        blobtable._BULK, blobtable._MERGE_AT = bulk, merge_at

    def teardown(self) -> None:
        blobtable._BULK, blobtable._MERGE_AT = BULK, MERGE_AT

    @invariant()
    def same_answers(self) -> None:
        ref, t = self.ref, self.table
        assert len(t) == len(ref)
        assert list(t.packs()) == list(ref.packs())
        assert sorted(t.entries(), key=repr) == sorted(ref.entries(), key=repr)
        for blob_id in [bytes([i]) * 32 for i in range(5)] + [PREFIX + bytes([1]) * 24]:
            assert (blob_id in t) == (blob_id in ref)
            for blob_type in (spec.BLOB_DATA, spec.BLOB_TREE):
                assert t.has(blob_id, blob_type) == ref.has(blob_id, blob_type)
                try:
                    want: object = ref.locations(blob_id, blob_type)
                except IntegrityError as e:
                    want = str(e)
                try:
                    got: object = t.locations(blob_id, blob_type)
                except IntegrityError as e:
                    got = str(e)
                assert got == want


SameAnswers.TestCase.settings = settings(max_examples=200, stateful_step_count=14,
                                         deadline=None)
test_same_answers_as_the_reference = SameAnswers.TestCase


def test_many_rows_merge_and_stay_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the merge threshold the overlay is folded into the columns; a directory of
    several slots is used; every row is still found, a missing one is not."""
    monkeypatch.setattr(blobtable, "_MERGE_AT", 64)
    t, ref = BlobTable(), BlobIndex()
    es = [BlobEntry(bytes([i % 251, i // 251]) * 16, spec.BLOB_DATA, i % 7, HEADER_LEN, 100, i)
          for i in range(3000)]
    for i in range(0, 3000, 100):
        t.add_pack(f"{i:064x}", es[i:i + 100])
        ref.add_pack(f"{i:064x}", es[i:i + 100])
    assert t._s.n >= 1024  # merged on the way
    t = remapped(t)
    assert t._s.n == 3000 and blobtable.directory_bits(t._s.n) == 8
    for e in es:
        assert t.locations(e.blob_id, e.blob_type) == ref.locations(e.blob_id, e.blob_type)
    assert not t.has(b"\xfe" * 32, spec.BLOB_DATA) and b"\xfe" * 32 not in t
    assert len(t) == len(ref) == 3000


def test_column_sizes_match_what_export_gives() -> None:
    t = BlobTable()
    t.add_pack("a" * 64, [entry(i) for i in range(1, 40)])
    assert [len(b) for b in t.export()[2]] == blobtable.column_sizes(39)
    assert [len(b) for b in BlobTable().export()[2]] == blobtable.column_sizes(0)
