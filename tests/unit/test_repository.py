"""repository: init/open, verified reads of every object, trees and paths."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from repofs import crypto, keys, spec
from repofs.compression import Codec
from repofs.envelope import HEADER_LEN, CannotRead
from repofs.errors import (
    BadKeyFile,
    IntegrityError,
    PathNotFound,
    RepositoryExists,
    RepositoryNotFound,
    UnsupportedVersion,
    WrongPassphrase,
)
from repofs.model import DIR, FILE, SYMLINK, Entry, Part, SnapshotBody, encode_tree
from repofs.model import find_entry as _find
from repofs.pack import PackBuilder
from repofs.repository import Repository
from repofs.session import WriteSession
from repofs.store import LocalStore

PASS = b"unit test passphrase"
MIN_KDF = {"t": 3, "m": 64 * 1024, "p": 1}
BIG = bytes(range(256)) * 2000 + os.urandom(300_000)  # compressible and not, ~800 KB


def file_entry(repo: Repository, session: WriteSession, name: bytes, data: bytes,
               hole: int = 0) -> Entry:
    parts = []
    for i in range(0, len(data), 256 * 1024):
        piece = data[i : i + 256 * 1024]
        parts.append(Part(session.add(spec.BLOB_DATA, piece), len(piece)))
    if hole:
        parts.append(Part(None, hole))
    return Entry(name=name, type=FILE, mode=0o644, uid=1, gid=2, mtime_ns=3, ctime_ns=4,
                 size=len(data) + hole, parts=tuple(parts))


def dir_entry(session: WriteSession, name: bytes, children: list[Entry]) -> Entry:
    tree_id = session.add(spec.BLOB_TREE, encode_tree(children))
    return Entry(name=name, type=DIR, mode=0o755, uid=0, gid=0, mtime_ns=5, ctime_ns=6,
                 subtree=tree_id)


def body(tree: bytes) -> SnapshotBody:
    return SnapshotBody(tree=tree, paths=(b"/src",), host="h", user="u", tags=(), name=None,
                        hardlinks={}, stats={})


@pytest.fixture(scope="module")
def filled(shm_module_dir: Path):
    """A repository made by init (the real KDF, minimum cost) holding one snapshot of:
    /big (chunks + a hole), /empty, /link -> big, /sub/inner."""
    repo = Repository.init(shm_module_dir / "repo", PASS, MIN_KDF)
    with WriteSession(repo, Codec()) as s:
        big = file_entry(repo, s, b"big", BIG, hole=5000)
        empty = file_entry(repo, s, b"empty", b"")
        link = Entry(name=b"link", type=SYMLINK, mode=0o777, uid=0, gid=0, mtime_ns=0,
                     ctime_ns=0, target=b"big")
        inner = file_entry(repo, s, b"inner", b"inner content")
        sub = dir_entry(s, b"sub", [inner])
        root = s.add(spec.BLOB_TREE, encode_tree([big, empty, link, sub]))
        snap = s.commit(body(root), 1)
    return repo, snap, root


def copy_of(filled, dest: Path) -> Repository:
    """The filled repository's files, copied, opened with its keys (no KDF)."""
    repo = filled[0]
    shutil.copytree(repo.store.root, dest / "copy")
    copy = Repository(LocalStore.open(dest / "copy"), repo.keys)
    copy.load_index()
    return copy


def writable(path: Path) -> Path:
    path.chmod(0o640)
    return path


def pack_of(repo: Repository, blob_id: bytes, blob_type: int = spec.BLOB_DATA) -> str:
    return repo.index.lookup(blob_id, blob_type).pack


# -- init and open -------------------------------------------------------------------------------
def test_init_lays_out_an_encrypted_repository(filled) -> None:
    repo = filled[0]
    root = repo.store.root
    assert sorted(p.name for p in root.iterdir()) == ["condemned", "config", "data", "index",
                                                      "keys", "removals", "snapshots", "tmp"]
    [keyname] = list(repo.store.list(spec.NS_KEYS))
    assert crypto.object_name(repo.store.get(spec.NS_KEYS, keyname)) == keyname
    assert repo.keys.key_name == keyname and repo.can_read
    assert repo.id == repo.keys.repo_id.hex()
    for path in root.rglob("*"):
        if path.is_file():
            assert BIG[:64] not in path.read_bytes()


def test_open_with_the_passphrase(filled) -> None:
    repo, snap, root = filled
    again = Repository.open(repo.store.root, PASS)
    assert again.keys.id_key == repo.keys.id_key
    assert len(again.index) == len(repo.index)
    assert again.snapshots.read(snap.id).body.tree == root  # type: ignore[union-attr]


def test_open_refuses_a_wrong_passphrase(filled) -> None:
    with pytest.raises(WrongPassphrase):
        Repository.open(filled[0].store.root, b"not it")


def test_init_refuses_a_non_empty_directory(shm_dir: Path) -> None:
    (shm_dir / "x").write_bytes(b"")
    with pytest.raises(RepositoryExists):
        Repository.init(shm_dir, PASS, MIN_KDF)
    assert [p.name for p in shm_dir.iterdir()] == ["x"]


def test_init_refuses_absurd_kdf_parameters(shm_dir: Path) -> None:
    with pytest.raises(BadKeyFile):
        Repository.init(shm_dir / "r", PASS, {"t": 1, "m": 1024, "p": 1})


def test_open_without_repository(shm_dir: Path) -> None:
    with pytest.raises(RepositoryNotFound):
        Repository.open(shm_dir, PASS)


def test_several_key_files_and_a_passphrase_change(filled, shm_dir: Path) -> None:
    repo = copy_of(filled, shm_dir)
    new = keys.wrap(repo.keys, b"new passphrase", MIN_KDF)
    repo.store.put(spec.NS_KEYS, crypto.object_name(new), new)
    for pw in (PASS, b"new passphrase"):
        r = Repository.open(repo.store.root, pw)
        assert r.keys.id_key == repo.keys.id_key
        assert r.read_blob(filled[2], spec.BLOB_TREE)  # old data, no re-encryption


def test_planted_key_files_do_not_lock_users_out(filled, shm_dir: Path) -> None:
    repo = copy_of(filled, shm_dir)
    for junk in (b"garbage", spec.pack({}), spec.pack({"v": 1, "type": "repofs-key"})):
        repo.store.put(spec.NS_KEYS, crypto.object_name(junk), junk)
    assert Repository.open(repo.store.root, PASS).keys.id_key == repo.keys.id_key


def test_a_damaged_key_file_is_named(filled, shm_dir: Path) -> None:
    repo = copy_of(filled, shm_dir)
    [name] = list(repo.store.list(spec.NS_KEYS))
    path = writable(repo.store.path(spec.NS_KEYS, name))
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=name):
        Repository.open(repo.store.root, PASS)


def _with_config(shm_dir: Path, filled, config: bytes) -> Path:
    """A copy of the filled repository whose config is replaced."""
    repo = copy_of(filled, shm_dir)
    path = writable(repo.store.root / "config")
    path.write_bytes(config)
    return repo.store.root


def test_config_checks(filled, shm_dir: Path) -> None:
    repo_id = filled[0].keys.repo_id
    cases = [
        (spec.pack({"format": "repofs", "v": 3, "id": repo_id}), UnsupportedVersion),
        (spec.pack({"format": "repofs", "v": 0, "id": repo_id}), UnsupportedVersion),
        (spec.pack({"format": "borg", "v": 1, "id": repo_id}), RepositoryNotFound),
        (spec.pack({"format": "repofs", "v": 1, "id": b"\x00" * 32}), IntegrityError),
        (spec.pack({"format": "repofs", "v": 1, "id": b"short"}), IntegrityError),
        (spec.pack({"format": "repofs", "v": 1}), IntegrityError),
        (b"\xc1garbage", IntegrityError),
        (b"", IntegrityError),
    ]
    for i, (config, error) in enumerate(cases):
        root = _with_config(shm_dir / str(i), filled, config)
        with pytest.raises(error):
            Repository.open(root, PASS)


def test_a_repository_without_key_files(shm_dir: Path) -> None:
    LocalStore.create(shm_dir / "r", spec.pack({"format": "repofs", "v": 1, "id": b"i" * 32}))
    with pytest.raises(RepositoryNotFound, match="no key files"):
        Repository.open(shm_dir / "r", PASS)


# -- reading --------------------------------------------------------------------------------------
def test_read_back_every_kind_of_entry(filled) -> None:
    repo, _, root = filled
    entries = {e.name: e for e in repo.load_tree(root)}
    assert sorted(entries) == [b"big", b"empty", b"link", b"sub"]
    big = entries[b"big"]
    out = bytearray()
    for offset, data, size in repo.iter_chunks(big):
        assert offset == len(out)
        out += data if data is not None else bytes(size)
    assert bytes(out) == BIG + bytes(5000)
    assert list(repo.iter_chunks(entries[b"empty"])) == []
    assert entries[b"link"].target == b"big"
    assert repo.lookup_path(root, b"sub/inner").size == len(b"inner content")


def test_lookup_path(filled) -> None:
    repo, _, root = filled
    assert repo.lookup_path(root, b"").type == DIR
    assert repo.lookup_path(root, b"/").subtree == root
    assert repo.lookup_path(root, b"/sub/./inner").name == b"inner"
    assert repo.lookup_path(root, b"sub//inner/").name == b"inner"
    for bad in (b"nope", b"sub/nope", b"big/x", b"link/x", b"sub/../big", b".."):
        with pytest.raises(PathNotFound):
            repo.lookup_path(root, bad)


def test_walk(filled) -> None:
    repo, _, root = filled
    paths = [p for p, _ in repo.walk(repo.root_entry(root), b"/")]
    assert paths == [b"/big", b"/empty", b"/link", b"/sub", b"/sub/inner"]
    prefixed = [p for p, _ in repo.walk(repo.root_entry(root), b"/snap/")]
    assert prefixed[0] == b"/snap/big"
    assert list(repo.walk(repo.lookup_path(root, b"big"), b"/big")) == []


def test_find_is_a_binary_search() -> None:
    es = [Entry(name=bytes([c]), type="p", mode=0, uid=0, gid=0, mtime_ns=0, ctime_ns=0)
          for c in b"bdfh"]
    assert _find(es, b"d") is es[1] and _find(es, b"h") is es[3]
    assert _find(es, b"a") is None and _find(es, b"e") is None and _find(es, b"z") is None
    assert _find([], b"a") is None


def test_trees_are_cached(filled) -> None:
    repo, _, root = filled
    assert repo.load_tree(root) is repo.load_tree(root)


def test_load_index_is_incremental(filled) -> None:
    repo = filled[0]
    before = len(repo.index)
    repo.load_index()
    assert len(repo.index) == before


def test_blob_ids_are_keyed_per_type(filled) -> None:
    repo = filled[0]
    for t in (spec.BLOB_DATA, spec.BLOB_TREE):
        assert repo.blob_id(b"x", t) == crypto.keyed_id(keys.blob_id_key(repo.keys.id_key, t),
                                                        b"x")
        assert repo.blob_id(b"x", t) != crypto.keyed_id(b"\x00" * 32, b"x")
    # a chunk and a tree with the same bytes never share an id
    assert repo.blob_id(b"x", spec.BLOB_DATA) != repo.blob_id(b"x", spec.BLOB_TREE)


def test_a_write_only_key_cannot_read_chunks(filled) -> None:
    repo, _, root = filled
    wo = Repository(repo.store, dataclasses.replace(repo.keys, reader=None,
                                                    capability=keys.CAP_WRITE_ONLY))
    wo.load_index()
    assert len(wo.index) == len(repo.index)  # index segments are shared: it can dedup
    with pytest.raises(CannotRead):
        wo.read_blob(root, spec.BLOB_TREE)


def test_walk_depth_is_capped(filled, shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = copy_of(filled, shm_dir)
    with WriteSession(repo, Codec()) as s:
        node = dir_entry(s, b"d0", [])
        for i in range(1, 8):
            node = dir_entry(s, b"d%d" % i, [node])
        s.flush()
    monkeypatch.setattr(spec, "MAX_TREE_DEPTH", 4)
    with pytest.raises(IntegrityError, match="nested too deep"):
        list(repo.walk(node, b"/"))


# -- detection of damage ---------------------------------------------------------------------------
def test_missing_objects(filled, shm_dir: Path) -> None:
    repo = copy_of(filled, shm_dir)
    root = filled[2]
    assert repo.get_verified(spec.NS_SNAPSHOTS, filled[1].id, "snapshot")
    with pytest.raises(IntegrityError, match="missing"):
        repo.get_verified(spec.NS_INDEX, "0" * 64, "index segment")
    pack = pack_of(repo, root, spec.BLOB_TREE)
    os.unlink(repo.store.path(spec.NS_DATA, pack))
    with pytest.raises(IntegrityError, match=f"pack {pack}.*missing"):
        repo.read_blob(root, spec.BLOB_TREE)
    with pytest.raises(IntegrityError, match="missing"):
        repo.read_blob(b"\x09" * 32, spec.BLOB_DATA)


@pytest.mark.parametrize("where", ["header", "blob", "trailer", "length"])
def test_a_flipped_bit_in_a_pack_is_detected(filled, shm_dir: Path, where: str) -> None:
    repo = copy_of(filled, shm_dir)
    root = filled[2]
    loc = repo.index.lookup(root, spec.BLOB_TREE)
    path = writable(repo.store.path(spec.NS_DATA, loc.pack))
    data = bytearray(path.read_bytes())
    pos = {"header": 20, "blob": loc.entry.offset + 3, "trailer": len(data) - 10,
           "length": len(data) - 1}[where]
    data[pos] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"pack {loc.pack}"):
        repo.read_blob(root, spec.BLOB_TREE)


@pytest.mark.parametrize("change", ["truncate", "append", "empty"])
def test_truncated_or_extended_packs_are_detected(filled, shm_dir: Path, change: str) -> None:
    repo = copy_of(filled, shm_dir)
    root = filled[2]
    loc = repo.index.lookup(root, spec.BLOB_TREE)
    path = writable(repo.store.path(spec.NS_DATA, loc.pack))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:-7], "append": data + b"\x00" * 9,
                      "empty": b""}[change])
    with pytest.raises(IntegrityError, match=loc.pack):
        repo.read_blob(root, spec.BLOB_TREE)


def test_swapped_packs_are_detected(filled, shm_dir: Path) -> None:
    repo = copy_of(filled, shm_dir)
    tree_pack = pack_of(repo, filled[2], spec.BLOB_TREE)
    data_pack = next(p for p in repo.index.packs() if p != tree_pack)
    a, b = repo.store.path(spec.NS_DATA, tree_pack), repo.store.path(spec.NS_DATA, data_pack)
    tmp = a.with_suffix(".swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    with pytest.raises(IntegrityError, match=tree_pack):
        repo.read_blob(filled[2], spec.BLOB_TREE)


def test_a_blob_whose_content_does_not_match_its_id(filled, shm_dir: Path) -> None:
    """A writer (who holds the id key) cannot poison dedup: content is checked on read."""
    repo = copy_of(filled, shm_dir)
    victim = repo.blob_id(b"what the user stored", spec.BLOB_DATA)
    b = PackBuilder()
    b.add(victim, spec.BLOB_DATA, spec.CODEC_NONE, b"something else", 14)
    data, entries = b.seal(repo.new_cipher(spec.KIND_PACK, spec.MODE_SEALED))
    pack = repo.put_object(spec.NS_DATA, data)
    repo.write_index_segment([(pack, entries)])
    fresh = Repository(repo.store, repo.keys)
    fresh.load_index()
    with pytest.raises(IntegrityError, match="content does not match its id") as e:
        fresh.read_blob(victim, spec.BLOB_DATA)
    assert e.value.object_id == victim.hex() and pack in e.value.detail


def test_a_chunk_of_the_wrong_size(filled, shm_dir: Path) -> None:
    repo = copy_of(filled, shm_dir)
    big = repo.lookup_path(filled[2], b"big")
    first = big.parts[0]
    lying = dataclasses.replace(big, parts=(Part(first.chunk_id, first.size + 1),))
    with pytest.raises(IntegrityError, match="size differs"):
        list(repo.iter_chunks(lying))


def test_damaged_index_segment_is_named_and_its_blobs_recovered(filled, shm_dir: Path) -> None:
    """A bit flip in the only segment: it is skipped and named once, and every blob it
    listed is located from the packs' trailers (repofs-format(5), DAMAGE)."""
    from repofs.damage import DamageLog

    repo = copy_of(filled, shm_dir)
    [seg] = list(repo.store.list(spec.NS_INDEX))
    path = writable(repo.store.path(spec.NS_INDEX, seg))
    data = bytearray(path.read_bytes())
    data[HEADER_LEN + 5] ^= 1
    path.write_bytes(bytes(data))
    fresh = Repository(repo.store, repo.keys, DamageLog())
    fresh.index_cache = None  # a warm cache holds what the segment said when it verified
    fresh.load_index()
    assert [(d.kind, d.object_id) for d in fresh.damage] == [("index segment", seg)]
    assert "located from the packs themselves" in next(iter(fresh.damage)).line()
    assert sorted(fresh.index.entries(), key=repr) == sorted(filled[0].index.entries(),
                                                             key=repr)
    assert fresh.read_blob(filled[2], spec.BLOB_TREE)


def test_hostile_tree_blob(filled, shm_dir: Path) -> None:
    """A tree blob that authenticates but holds a '..' entry: refused, naming the tree."""
    repo = copy_of(filled, shm_dir)
    evil = spec.pack({"v": 1, "e": [{"n": b"..", "t": "f", "m": 0o644, "u": 0, "g": 0,
                                     "mt": 0, "ct": 0, "s": 0, "c": []}]})
    with WriteSession(repo, Codec()) as s:
        tree_id = s.add(spec.BLOB_TREE, evil)
        s.flush()
    with pytest.raises(IntegrityError, match=f"tree {tree_id.hex()}.*unsafe"):
        repo.load_tree(tree_id)


def test_open_reports_a_damaged_segment_to_the_damage_log_given(tmp_path: Path) -> None:
    from repofs.damage import Damage, DamageLog

    repo = Repository.init(tmp_path / "r", PASS, kdf=MIN_KDF)
    with WriteSession(repo, Codec()) as s:
        s.add(spec.BLOB_DATA, b"listed by the segment removed below")
        s.flush()
    [listed] = list(repo.store.list(spec.NS_INDEX))
    os.unlink(repo.store.path(spec.NS_INDEX, listed))
    cipher = repo.new_cipher(spec.KIND_INDEX, spec.MODE_SHARED)
    planted = cipher.header + b"\0" * 40  # stored as it is: hashes to its name
    name = repo.put_object(spec.NS_INDEX, planted)
    heard: list[Damage] = []
    again = Repository.open(tmp_path / "r", PASS, damage=DamageLog(heard.append))
    assert [(d.kind, d.object_id) for d in heard] == [("index segment", name)]
    assert list(again.damage) == heard


def test_a_skipped_segment_costing_nothing_is_not_named(tmp_path: Path) -> None:
    """Every pack is listed by a usable segment: readers stay quiet (check names it)."""
    from repofs.damage import DamageLog

    repo = Repository.init(tmp_path / "r", PASS, kdf=MIN_KDF)
    with WriteSession(repo, Codec()) as s:
        s.add(spec.BLOB_DATA, b"listed")
        s.flush()
    cipher = repo.new_cipher(spec.KIND_INDEX, spec.MODE_SHARED)
    name = repo.put_object(spec.NS_INDEX, cipher.header + b"\0" * 40)
    again = Repository.open(tmp_path / "r", PASS, damage=DamageLog())
    assert not again.damage and list(again.damaged_segments) == [name]
