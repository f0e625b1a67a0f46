"""signed records and Ed25519: round trips, and hostile records that must be set aside."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repofs import crypto, keys, signed, spec
from repofs.errors import IntegrityError
from repofs.model import SnapshotHead
from tests.unit.adminkit import make_repo

REPO_ID = b"\x42" * 32
MASTER = keys.restrict(keys.generate(REPO_ID), keys.CAP_ADMIN)
HEAD = SnapshotHead(3, (b"\x01" * 32,), 10**18)
SID = "ab" * 32


def decode(data: bytes, rtype: str = signed.TYPE_REMOVAL) -> object:
    return signed.decode(data, crypto.object_name(data), rtype, MASTER)


def test_ed25519_signs_and_verifies() -> None:
    signer = crypto.Ed25519Signer(crypto.Ed25519Signer.generate_private())
    sig = signer.sign(b"message")
    assert crypto.ed25519_verify(signer.public, sig, b"message")
    assert not crypto.ed25519_verify(signer.public, sig, b"messagE")
    assert not crypto.ed25519_verify(signer.public, sig[:63], b"message")
    assert not crypto.ed25519_verify(b"\x00" * 31, sig, b"message")
    again = crypto.Ed25519Signer(signer.private_bytes())
    assert again.public == signer.public


def test_round_trips() -> None:
    assert MASTER.admin is not None
    removal = decode(signed.sign_removal(MASTER.admin, REPO_ID, {SID: HEAD}, 7, explicit=True))
    assert isinstance(removal, signed.Removal)
    assert removal.snapshots == {SID: HEAD} and removal.time_ns == 7 and removal.explicit
    condemn = decode(signed.sign_condemn(MASTER.admin, REPO_ID, [SID], ["cd" * 32], 9),
                     signed.TYPE_CONDEMN)
    assert isinstance(condemn, signed.Condemnation)
    assert condemn.packs == {SID} and condemn.segments == {"cd" * 32}


def test_another_admin_key_or_repository_does_not_verify() -> None:
    other = keys.restrict(keys.generate(REPO_ID), keys.CAP_ADMIN)
    assert other.admin is not None and MASTER.admin is not None
    with pytest.raises(IntegrityError, match="signature"):
        decode(signed.sign_removal(other.admin, REPO_ID, {SID: HEAD}, 1))
    with pytest.raises(IntegrityError, match="signature"):
        decode(signed.sign_removal(MASTER.admin, b"\x43" * 32, {SID: HEAD}, 1))


def _resign(body: dict[str, object], rtype: str = signed.TYPE_REMOVAL) -> bytes:
    """A record with any body, properly signed: only the body's own checks can refuse it."""
    assert MASTER.admin is not None
    return signed._sign(MASTER.admin, REPO_ID, rtype, body)  # type: ignore[arg-type]


ROW = [bytes.fromhex(SID), 3, [b"\x01" * 32], 10**18]


@pytest.mark.parametrize("body", [
    {"v": 2, "time": 1, "explicit": False, "snapshots": [ROW]},
    {"v": 1, "time": -1, "explicit": False, "snapshots": [ROW]},
    {"v": 1, "time": 1, "explicit": 0, "snapshots": [ROW]},
    {"v": 1, "time": 1, "explicit": False, "snapshots": []},
    {"v": 1, "time": 1, "explicit": False, "snapshots": [ROW, ROW]},
    {"v": 1, "time": 1, "explicit": False, "snapshots": [ROW[:3]]},
    {"v": 1, "time": 1, "explicit": False, "snapshots": [[b"short", 3, [], 1]]},
    {"v": 1, "time": 1, "explicit": False, "snapshots": [[ROW[0], -3, [], 1]]},
    {"v": 1, "time": 1, "explicit": False, "snapshots": [[ROW[0], 3, [b"x"], 1]]},
    {"v": 1, "time": 1, "explicit": False, "snapshots": "all"},
])
def test_signed_but_malformed_removals_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(IntegrityError):
        decode(_resign(body))


@pytest.mark.parametrize("body", [
    {"v": 1, "time": 1, "packs": [], "segments": []},
    {"v": 1, "time": 1, "packs": [b"\x02" * 32, b"\x01" * 32], "segments": []},
    {"v": 1, "time": 1, "packs": [b"\x01" * 31], "segments": []},
    {"v": 1, "time": 1, "packs": [b"\x01" * 32]},
])
def test_signed_but_malformed_condemnations_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(IntegrityError):
        decode(_resign(body, signed.TYPE_CONDEMN), signed.TYPE_CONDEMN)


@settings(max_examples=200)
@given(st.data())
def test_mutated_records_never_verify(data: st.DataObject) -> None:
    from tests.conftest import mutations

    assert MASTER.admin is not None
    good = signed.sign_removal(MASTER.admin, REPO_ID, {SID: HEAD}, 5)
    bad = data.draw(mutations(good))
    with pytest.raises(IntegrityError):
        decode(bad)
    with pytest.raises(IntegrityError):  # a renamed copy: the name must be its hash
        signed.decode(good, crypto.object_name(bad), signed.TYPE_REMOVAL, MASTER)


def test_reading_a_namespace_sets_bad_records_aside(shm_dir: Path) -> None:
    repo = make_repo(shm_dir / "r")
    assert repo.keys.admin is not None
    good = signed.sign_removal(repo.keys.admin, repo.keys.repo_id, {SID: HEAD}, 1)
    repo.put_object(spec.NS_REMOVALS, good)
    junk = repo.put_object(spec.NS_REMOVALS, b"\x93\x01\x02\x03")
    wrong_type = repo.put_object(spec.NS_REMOVALS, signed.sign_condemn(
        repo.keys.admin, repo.keys.repo_id, [SID], [], 1))
    records = signed.read_removals(repo.store, repo.keys)
    assert [r.name for r in records.records] == [crypto.object_name(good)]
    assert set(records.bad) == {junk, wrong_type}
    assert signed.removed_snapshots(records) == {SID}
    (ghost,) = signed.ghosts(records)
    assert ghost.id == SID and ghost.head == HEAD and ghost.body is None
    assert signed.void(records) == frozenset()


def test_the_format_page_states_the_constants() -> None:
    text = (Path(__file__).resolve().parents[2] / "man" / "repofs-format.5.md").read_text()
    assert '"repofs signed record v1"' in text
    assert signed.SIGNATURE_CONTEXT == b"repofs signed record v1\x00"
    for n in (signed.MAX_SIGNED, signed.MAX_REMOVED, signed.MAX_CONDEMNED):
        assert str(n) in text
    for word in ('"removal"', '"condemn"', '"admin"', "admin_public", "admin_private",
                 "removals/", "condemned/"):
        assert word in text
