"""storagecheck: what check --storage-only finds without any key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repofs import spec
from repofs.forget import commit, plan_ids
from repofs.storagecheck import check_storage
from repofs.store import LocalStore
from tests.unit.adminkit import backup, make_repo


@pytest.fixture
def root(shm_dir: Path) -> Path:
    repo = make_repo(shm_dir / "repo")
    s = backup(repo, {"a": os.urandom(5000), "b": b"b"})
    backup(repo, {"a": b"other"})
    commit(repo, plan_ids(repo, [s.id]))
    return shm_dir / "repo"


def problems(root: Path) -> list[str]:
    return [p.line() for p in check_storage(LocalStore(root)).problems]


def test_an_intact_repository_passes(root: Path) -> None:
    report = check_storage(LocalStore(root))
    assert report.intact, [p.line() for p in report.problems]
    assert report.counts["snapshots"] == 2 and report.counts["removal records"] == 1
    assert report.counts["packs"] >= 2


@pytest.mark.parametrize("ns", [spec.NS_DATA, spec.NS_INDEX, spec.NS_SNAPSHOTS,
                                spec.NS_REMOVALS])
def test_a_flipped_bit_is_found_in_every_namespace(root: Path, ns: str) -> None:
    name = sorted(LocalStore(root).list(ns))[0]
    path = LocalStore(root).path(ns, name)
    path.chmod(0o640)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 4
    path.write_bytes(bytes(data))
    (line,) = problems(root)
    assert name in line and "does not match its name" in line


def test_strays_and_planted_structure(root: Path) -> None:
    store = LocalStore(root)
    (root / spec.NS_SNAPSHOTS / "notes.txt").write_text("x")
    (root / spec.NS_INDEX / ("f" * 64)).symlink_to("/etc/passwd")
    plain = b"not an object at all"
    from repofs import crypto

    store.put(spec.NS_SNAPSHOTS, crypto.object_name(plain), plain)
    misplaced = sorted(store.list(spec.NS_DATA))[0]
    os.link(store.path(spec.NS_DATA, misplaced), root / spec.NS_DATA / "00" / ("00" + "1" * 62))
    (root / "tmp" / ".leftover").write_bytes(b"")
    report = check_storage(store)
    text = "\n".join(p.line() for p in report.problems)
    assert "notes.txt: not an object name" in text
    assert "is a symlink or not a regular file" in text
    assert "not a repofs object" in text or "shorter than an object header" in text
    assert "does not match its name" in text  # the hard link under a wrong name
    assert len(report.problems) == 4
    assert any("tmp" in n.line() for n in report.notes)


def test_a_symlinked_namespace_stops_at_once(root: Path) -> None:
    os.rename(root / spec.NS_INDEX, root / "elsewhere")
    (root / spec.NS_INDEX).symlink_to(root / "elsewhere")
    (line,) = problems(root)
    assert "symlink or not a directory" in line


def test_a_repository_older_than_the_signed_namespaces(root: Path) -> None:
    import shutil

    for ns in (spec.NS_REMOVALS, spec.NS_CONDEMNED):
        shutil.rmtree(root / ns)
    report = check_storage(LocalStore(root))
    assert report.intact and report.counts["removal records"] == 0


def test_a_pack_of_an_unknown_trailer_form_is_named(root: Path) -> None:
    """Header byte 7 of a pack is its trailer form (0 or 1, repofs-format(5), PACKS): a
    planted pack with another value is named by the keyless check."""
    from repofs import crypto

    store = LocalStore(root)
    real = store.get(spec.NS_DATA, sorted(store.list(spec.NS_DATA))[0])
    assert real[7] in spec.TRAILER_FORMS
    planted = real[:7] + bytes([7]) + real[8:]
    store.put(spec.NS_DATA, crypto.object_name(planted), planted)
    report = check_storage(store)
    assert [p.line() for p in report.problems if "unknown trailer form 7" in p.line()]
    assert len(report.problems) == 1
