"""``dump --archive tar`` in the library: damaged files are left out before their header,
a large file's damage found late aborts the stream without an end-of-archive marker, and
the records GNU tar reads (times, xattr names) are written exactly."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from repofs import spec, tarexport
from repofs.repository import Repository
from repofs.tarexport import ArchiveAborted, export_tar, pax_time, xattr_keyword
from tests.integration.harness import PASSPHRASE, Cli
from tests.unit.test_restorer import BadSectors, source_repo  # noqa: F401 - the fixture


class FailsLater(BadSectors):
    """Bad bytes that read fine ``good`` times, then fail (storage changing under a dump)."""

    def __init__(self, inner: Any, bad: dict[str, set[int]], good: int) -> None:
        super().__init__(inner, bad)
        self.good = good

    def _check(self, ns: str, name: str, offset: int, length: int) -> None:
        hit = ns == spec.NS_DATA and any(offset <= b < offset + length
                                         for b in self.bad.get(name, ()))
        if hit and self.good > 0:
            self.good -= 1
            return
        super()._check(ns, name, offset, length)


def _open(cli: Cli, snap_id: str) -> tuple[Repository, bytes]:
    repo = Repository.open(cli.repo, PASSPHRASE.encode())
    body = repo.snapshots.read(snap_id).body
    assert body is not None
    return repo, body.tree


def _damage(repo: Repository, src: Path, tree: bytes, store: type[BadSectors] = BadSectors,
            **kw: Any) -> None:
    """One bad byte in the second chunk of big.bin."""
    entry = repo.lookup_path(tree, os.fsencode(src / "big.bin"))
    assert len(entry.parts) >= 2 and entry.parts[1].chunk_id is not None
    loc = repo.index.lookup(entry.parts[1].chunk_id, spec.BLOB_DATA)
    repo.store = store(repo.store, {loc.pack: {loc.entry.offset + 5}}, **kw)  # type: ignore[assignment]


@pytest.mark.parametrize("buffer", [tarexport.DUMP_BUFFER, 0])
def test_a_damaged_file_is_left_out_before_its_header(
        source_repo: tuple[Cli, Path, str], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        buffer: int) -> None:
    """Kept in memory or (past DUMP_BUFFER) verified in a first pass: either way the
    damaged file has no member, every other file is whole, the archive is well formed."""
    monkeypatch.setattr(tarexport, "DUMP_BUFFER", buffer)
    cli, src, snap_id = source_repo
    repo, tree = _open(cli, snap_id)
    _damage(repo, src, tree)
    out = io.BytesIO()
    stats = export_tar(repo, repo.lookup_path(tree, os.fsencode(src)), os.fsencode(src), out)
    big = os.fsencode(src / "big.bin")
    assert stats.left_out == [big]
    assert [d.kind for d in repo.damage] == ["chunk"]
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as t:  # raises on a truncated archive
        names = {"/" + m.name.rstrip("/"): m for m in t}
        files = {n for n, m in names.items() if m.isfile()}
        assert files == {os.fsdecode(p) for p in _files(src)} - {os.fsdecode(big)}
        for n in files:
            f = t.extractfile(names[n])
            assert f is not None and f.read() == Path(n).read_bytes(), n
    assert stats.members == len(names)


def _files(src: Path) -> list[bytes]:
    return [os.path.join(d, f) for d, _, fs in os.walk(os.fsencode(src)) for f in fs]


def test_damage_found_on_the_second_read_aborts_without_an_end_marker(
        source_repo: tuple[Cli, Path, str], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        ) -> None:
    """A large file verified, then its chunk fails when written: the stream is cut (the
    error names the file and the chunk), and no tar can take it for a whole archive."""
    monkeypatch.setattr(tarexport, "DUMP_BUFFER", 0)
    monkeypatch.setattr(tarexport, "_COPY", 4096)  # so the verified first chunk shows
    cli, src, snap_id = source_repo
    repo, tree = _open(cli, snap_id)
    _damage(repo, src, tree, FailsLater, good=1)
    out = io.BytesIO()
    entry = repo.lookup_path(tree, os.fsencode(src / "big.bin"))
    with pytest.raises(ArchiveAborted, match=r"big\.bin: archive aborted in the middle of "
                                             r"this file: chunk .* could not be read"):
        export_tar(repo, entry, os.fsencode(src / "big.bin"), out)
    first = entry.parts[0].size
    data = out.getvalue()
    content = (src / "big.bin").read_bytes()
    start = data.find(content[:4096])
    assert 0 < start <= 4096  # after the headers: a prefix of the verified first chunk
    assert content[:first].startswith(data[start:])
    out.seek(0)
    with pytest.raises(tarfile.ReadError), tarfile.open(fileobj=out, mode="r:") as t:
        for m in t:
            f = t.extractfile(m)
            assert f is not None
            f.read()


def test_pax_time_is_exact_to_the_nanosecond() -> None:
    assert pax_time(1_234_567_890_123_456_789) == "1234567890.123456789"
    assert pax_time(0) == "0.000000000"
    assert pax_time(5) == "0.000000005"
    assert pax_time(-1) == "-0.000000001"
    assert pax_time(-630_719_999_876_543_211) == "-630719999.876543211"


def test_xattr_keywords_escape_as_gnu_tar_reads_them() -> None:
    assert xattr_keyword(b"user.plain") == "SCHILY.xattr.user.plain"
    assert xattr_keyword(b"user.a=b%c") == "SCHILY.xattr.user.a%3Db%25c"
    assert xattr_keyword(b"system.posix_acl_access") == "SCHILY.xattr.system.posix_acl_access"
    assert xattr_keyword(b"user.\xff") is None
