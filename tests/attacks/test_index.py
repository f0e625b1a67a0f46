"""Swapping chunks and trees (borg CVE-2016-10099 / CVE-2023-36811 style): a writer with the
keys plants packs and index segments that claim existing ids for other content or another
type, or index segments that are garbage. Restore keeps returning the true bytes (the
index keeps every place a blob is listed, reads verify the keyed id and fall back), and
``check --read-data`` names each lie."""

from __future__ import annotations

import os

from repofs import crypto, spec
from repofs.index import encode_segment
from repofs.model import FILE
from repofs.pack import BlobEntry
from repofs.repository import Repository

from .victim import Victim, put_blobs


def chunks_of(repo: Repository, snap: str) -> list[bytes]:
    body = repo.snapshots.read(snap).body
    assert body is not None
    root = repo.root_entry(body.tree)
    return [p.chunk_id for _, e in repo.walk(root, b"/") if e.type == FILE
            for p in e.parts if p.chunk_id is not None]


def segment_first(repo: Repository, packs: list[tuple[str, list[BlobEntry]]]) -> str:
    """An index segment whose name sorts before every other: read first, found first."""
    first = min(repo.store.list(spec.NS_INDEX))
    while True:
        data = encode_segment(repo.new_cipher(spec.KIND_INDEX, spec.MODE_SHARED), packs)
        if crypto.object_name(data) < first:
            return repo.put_object(spec.NS_INDEX, data)


def check_lines(victim: Victim, *args: str, expect: int = 2) -> list[str]:
    return victim.client.run("check", *args, expect=expect).text.splitlines()


def test_chunks_swapped_for_other_content_or_type(victim: Victim) -> None:
    repo = victim.client.attacker()
    chunks = chunks_of(repo, victim.snaps[0])
    tree = repo.snapshots.read(victim.snaps[0]).body.tree  # type: ignore[union-attr]
    lies = [(c, spec.BLOB_DATA, b"ransom note: pay up") for c in chunks]
    lies += [(chunks[0], spec.BLOB_TREE, b"a chunk claimed as a tree"),
             (tree, spec.BLOB_TREE, b"another tree under the root tree's id"),
             (tree, spec.BLOB_DATA, b"the root tree claimed as a chunk")]
    pack, entries = put_blobs(repo, lies, index=False)
    segment_first(repo, [(pack, entries)])
    victim.unchanged()
    victim.restores_exactly()  # every read finds the lie first, fails it, takes the truth
    assert check_lines(victim, expect=0)[-1].startswith("no problems found")  # structure
    lines = check_lines(victim, "--read-data")
    for c in {*chunks, tree}:
        assert any(ln.startswith(("chunk " + c.hex(), "tree " + c.hex()))
                   and "content does not match its id" in ln and pack in ln
                   for ln in lines), (c.hex(), lines)
    named = {ln.split(":")[0] for ln in lines[:-1] if not ln.startswith("note:")}
    assert len(named) == len(lies), lines  # each lie named once


def test_index_entries_pointing_nowhere(victim: Victim) -> None:
    """Entries for existing chunks in a pack that does not exist, and at offsets where the
    real pack holds nothing: reads fall back; check names the missing pack and the lies."""
    repo = victim.client.attacker()
    chunks = chunks_of(repo, victim.snaps[1])
    ghost = "e" * 64
    real = sorted(p.name for p in (victim.restrict / spec.NS_DATA).glob("*/*"))[0]
    fake = [BlobEntry(c, spec.BLOB_DATA, i, 40 + 100 * i, 100, 10) for i, c in enumerate(chunks)]
    segment_first(repo, [(ghost, fake), (real, fake[:1])])
    victim.restores_exactly(newest_only=True)
    lines = check_lines(victim)
    assert [ln for ln in lines if ln.startswith(f"pack {ghost}: missing")], lines
    lines = check_lines(victim, "--read-data")
    assert any(ln.startswith(f"index segment entry {chunks[0].hex()}") and real in ln
               for ln in lines), lines


def test_an_entry_lying_only_about_sizes_at_a_real_blobs_place(victim: Victim) -> None:
    """Right pack, offset and nonce, wrong sizes: still a lie, and check names it."""
    repo = victim.client.attacker()
    chunk = chunks_of(repo, victim.snaps[1])[0]
    loc = repo.index.lookup(chunk, spec.BLOB_DATA)
    e = loc.entry
    segment_first(repo, [(loc.pack, [BlobEntry(chunk, spec.BLOB_DATA, e.nonce, e.offset,
                                               e.length, e.raw_len + 1)])])
    victim.restores_exactly(newest_only=True)
    lines = check_lines(victim, "--read-data")
    assert any(ln.startswith(f"index segment entry {chunk.hex()}") and loc.pack in ln
               for ln in lines), lines


def test_garbage_index_segments_block_nobody(victim: Victim) -> None:
    """Bytes that hash to their name but are no index segment, stored through serve:
    every pack is still listed by a usable segment, so they cost nothing and readers stay
    quiet (a writer must not make every nightly run warn forever); check names them."""
    repo = victim.client.attacker()
    garbage = [repo.put_object(spec.NS_INDEX, os.urandom(200)),
               repo.put_object(spec.NS_INDEX, b"RPFS\x01\x02\x02" + os.urandom(100))]
    r = victim.client.run("snapshots", expect=0)
    assert r.err_lines == [], r
    victim.restores_exactly(newest_only=True, expect=0)
    lines = check_lines(victim)
    assert sorted(ln.split(":")[0] for ln in lines if ln.startswith("index segment")) == \
        sorted(f"index segment {g}" for g in garbage)
    victim.unchanged()
