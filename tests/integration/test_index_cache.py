"""The local index cache through the real CLI: a damaged one costs a note and time only."""

from __future__ import annotations

from pathlib import Path

from .harness import make_cli


def test_damaged_index_cache_is_a_note_and_the_answers_stay(tmp_path: Path) -> None:
    cli = make_cli(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"some content\n" * 1000)
    snap = cli.create(str(src))["snapshot"]
    first = cli.run("snapshots", "--json")  # reads the segment, writes the cache
    [cache] = list(cli.cache.rglob("blobtable"))
    data = bytearray(cache.read_bytes())
    data[len(data) // 2] ^= 0x10
    cache.write_bytes(bytes(data))
    again = cli.run("snapshots", "--json")  # exit 0: nothing is wrong with the repository
    assert "repofs: note: index cache" in again.err and "ignored" in again.err, again.err
    assert again.out == first.out
    clean = cli.run("snapshots", "--json")  # rebuilt
    assert clean.err == "" and clean.out == first.out
    out = tmp_path / "out"
    cli.run("restore", snap, "--target", str(out))
    assert [p.read_bytes() for p in out.rglob("a")] == [(src / "a").read_bytes()]
