"""keyring and admin keys: capabilities handed out, passphrase changes, removal by an admin,
and what each capability can and cannot do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from repofs import crypto, keyring, keys, spec
from repofs.adminstore import AdminStore, open_admin_store
from repofs.errors import (
    BadKeyFile,
    KeyError_,
    NeedsDirectAccess,
    NotPermitted,
    WrongPassphrase,
)
from repofs.repository import Repository
from repofs.snapshots import CannotRead
from tests.unit.adminkit import backup, contents

FULL, ADMIN = b"full", b"admin"


@pytest.fixture(autouse=True)
def fast_kdf() -> Iterator[None]:
    def fake(passphrase: bytes, salt: bytes, t: int, m: int, p: int) -> bytes:
        assert spec.KDF_MIN_M_KIB <= m <= spec.KDF_MAX_M_KIB
        return crypto.keyed_id(salt, b"%d/%d/%d/" % (t, m, p) + passphrase)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crypto, "argon2id", fake)
        yield


@pytest.fixture
def root(shm_dir: Path) -> Path:
    Repository.init(shm_dir / "repo", FULL, admin_passphrase=ADMIN)
    return shm_dir / "repo"


def test_init_makes_a_full_and_an_admin_key_file(root: Path) -> None:
    full, admin = Repository.open(root, FULL), Repository.open(root, ADMIN)
    assert full.keys.capability == keys.CAP_FULL and full.keys.admin is None
    assert admin.keys.capability == keys.CAP_ADMIN and admin.keys.admin is not None
    assert full.keys.admin_public == admin.keys.admin_public == admin.keys.admin.public
    listing = {e.name: e for e in keyring.list_keys(full)}
    assert {e.info.capability for e in listing.values() if e.info} == {"full", "admin"}
    assert listing[full.keys.key_name].current


def test_init_without_an_admin_passphrase_has_no_admin_key(shm_dir: Path) -> None:
    repo = Repository.init(shm_dir / "r", FULL)
    assert len(list(repo.store.list(spec.NS_KEYS))) == 1
    with pytest.raises(NotPermitted):
        keyring.add(repo, b"x", keys.CAP_ADMIN)
    with pytest.raises(ValueError):
        Repository.init(shm_dir / "r2", FULL, admin_passphrase=FULL)


@pytest.mark.parametrize(("opener", "wanted", "allowed"), [
    (FULL, keys.CAP_WRITE_ONLY, True), (FULL, keys.CAP_FULL, True),
    (FULL, keys.CAP_ADMIN, False), (ADMIN, keys.CAP_ADMIN, True),
    (b"wo", keys.CAP_WRITE_ONLY, True), (b"wo", keys.CAP_FULL, False),
    (b"wo", keys.CAP_ADMIN, False),
])
def test_a_key_hands_out_at_most_its_capability(root: Path, opener: bytes, wanted: str,
                                                allowed: bool) -> None:
    keyring.add(Repository.open(root, FULL), b"wo", keys.CAP_WRITE_ONLY)
    repo = Repository.open(root, opener)
    if allowed:
        name = keyring.add(repo, b"new", wanted)
        got = Repository.open(root, b"new")
        assert got.keys.key_name == name and got.keys.capability == wanted
        assert got.keys.shared_key == repo.keys.shared_key
    else:
        with pytest.raises(NotPermitted, match="this key cannot make"):
            keyring.add(repo, b"new", wanted)


def test_a_passphrase_opens_exactly_one_key_file(root: Path) -> None:
    repo = Repository.open(root, FULL)
    for taken in (FULL, ADMIN):
        with pytest.raises(KeyError_, match="already opens"):
            keyring.add(repo, taken, keys.CAP_WRITE_ONLY)


def test_passwd_adds_a_file_and_keeps_the_old_one(root: Path) -> None:
    repo = Repository.open(root, FULL)
    s = backup(repo, {"f": b"data"})
    name = keyring.passwd(repo, b"changed")
    again = Repository.open(root, b"changed")
    assert again.keys.key_name == name and again.keys.capability == keys.CAP_FULL
    assert contents(again, again.snapshots.list()[0]) == {"f": b"data"}  # nothing re-encrypted
    assert Repository.open(root, FULL).keys.key_name == repo.keys.key_name
    admin = Repository.open(root, ADMIN)
    store = open_admin_store(root, "key remove")
    keyring.remove(admin, store, keyring.resolve_name(admin, repo.keys.key_name[:6]))
    with pytest.raises(WrongPassphrase):
        Repository.open(root, FULL)
    assert s.id in {x.id for x in Repository.open(root, b"changed").snapshots.list()}


def test_remove_needs_admin_direct_access_and_another_key(root: Path) -> None:
    full = Repository.open(root, FULL)
    store = open_admin_store(root, "key remove")
    with pytest.raises(NotPermitted, match="this key cannot remove key files"):
        keyring.remove(full, store, full.keys.key_name)
    admin = Repository.open(root, ADMIN)
    with pytest.raises(KeyError_, match="opened with"):
        keyring.remove(admin, store, admin.keys.key_name)
    with pytest.raises(KeyError_, match="no key file"):
        keyring.resolve_name(admin, "0000")
    with pytest.raises(NeedsDirectAccess):
        open_admin_store("ssh://backup@host/srv/repo", "key remove")


def test_a_relabelled_admin_file_does_not_open(root: Path) -> None:
    admin = Repository.open(root, ADMIN)
    data = admin.store.get(spec.NS_KEYS, admin.keys.key_name)
    rec = spec.unpack(data, "k", "k")
    for label in (keys.CAP_FULL, keys.CAP_WRITE_ONLY):
        rec["capability"] = label
        assert keys.unwrap(spec.pack(rec), "x", ADMIN, admin.keys.repo_id) is None
    assert keys.describe(data, "k").capability == keys.CAP_ADMIN
    with pytest.raises(BadKeyFile):
        keys.describe(spec.pack({**rec, "kdf": {**rec["kdf"], "m": 2**40}}), "k")


def test_a_write_only_key_writes_but_cannot_read(root: Path) -> None:
    keyring.add(Repository.open(root, FULL), b"wo", keys.CAP_WRITE_ONLY)
    full = Repository.open(root, FULL)
    first = backup(full, {"secret": b"s" * 5000})
    wo = Repository.open(root, b"wo")
    second = backup(wo, {"secret": b"s" * 5000, "new": b"n"})
    listed = wo.snapshots.list()
    assert [s.id for s in listed] == [first.id, second.id]
    assert all(s.body is None for s in listed)  # no names, hosts or paths
    assert second.body is not None
    with pytest.raises(CannotRead):
        wo.load_tree(second.body.tree)
    with pytest.raises(NotPermitted, match="cannot read snapshot names"):
        wo.snapshots.resolve("daily")
    assert wo.snapshots.resolve(second.id[:8]).id == second.id
    reread = Repository.open(root, FULL)
    snaps = reread.snapshots.list()
    assert contents(reread, snaps[1]) == {"secret": b"s" * 5000, "new": b"n"}


def test_admin_store_deletes_and_fsyncs(root: Path) -> None:
    store = AdminStore(root)
    name = crypto.object_name(b"x")
    store.put(spec.NS_REMOVALS, name, b"x")
    assert store.delete(spec.NS_REMOVALS, name)
    assert not store.delete(spec.NS_REMOVALS, name)
    with pytest.raises(ValueError):
        store.delete("keys/../data", name)
