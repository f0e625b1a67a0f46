"""store: write-once objects, validated names, no delete, atomic under races."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs import crypto, spec
from repofs import store as store_mod
from repofs.errors import IntegrityError, ObjectExists, RepositoryExists, RepositoryNotFound
from repofs.store import FILE_MODE, LocalStore, WriterStore

CONFIG = b"config bytes"


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def store(shm_dir: Path, umask022: None) -> LocalStore:
    return LocalStore.create(shm_dir / "repo", CONFIG)


@pytest.fixture(scope="module")
def shared_store(shm_module_dir: Path) -> LocalStore:
    """One store for the tests that only add uniquely named objects."""
    return LocalStore.create(shm_module_dir / "repo", CONFIG)


def name_of(data: bytes) -> str:
    return crypto.object_name(data)


@pytest.fixture
def no_tmpfile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make O_TMPFILE unavailable, as on file systems that lack it (the named-temp path)."""
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "no O_TMPFILE here")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


# -- layout and create/open -------------------------------------------------------------------
def test_create_lays_out_the_repository(store: LocalStore) -> None:
    root = store.root
    for ns in spec.NAMESPACES:
        assert (root / ns).is_dir()
    assert sorted(p.name for p in (root / "data").iterdir()) == [f"{i:02x}" for i in range(256)]
    assert store.read_config() == CONFIG
    assert stat.S_IMODE((root / "config").stat().st_mode) == FILE_MODE
    assert LocalStore.open(root).read_config() == CONFIG


def test_create_refuses_non_empty_or_non_directory(shm_dir: Path) -> None:
    (shm_dir / "full").mkdir()
    (shm_dir / "full" / "x").write_bytes(b"")
    with pytest.raises(RepositoryExists):
        LocalStore.create(shm_dir / "full", CONFIG)
    (shm_dir / "file").write_bytes(b"")
    with pytest.raises(RepositoryExists):
        LocalStore.create(shm_dir / "file", CONFIG)
    (shm_dir / "empty").mkdir()
    LocalStore.create(shm_dir / "empty", CONFIG)
    with pytest.raises(RepositoryExists):
        LocalStore.create(shm_dir / "empty", CONFIG)


def test_open_needs_a_config(shm_dir: Path) -> None:
    with pytest.raises(RepositoryNotFound):
        LocalStore.open(shm_dir)
    with pytest.raises(RepositoryNotFound):
        LocalStore.open(shm_dir / "nope")


def test_config_is_write_once(store: LocalStore) -> None:
    with pytest.raises(FileExistsError):
        store._write_once(store.root, "config", b"other")
    assert store.read_config() == CONFIG


# -- write once --------------------------------------------------------------------------------
@pytest.mark.parametrize("ns", spec.NAMESPACES)
def test_put_get_and_mode(store: LocalStore, ns: str) -> None:
    data = b"object in " + ns.encode()
    name = name_of(data)
    assert store.put(ns, name, data) is True
    assert store.get(ns, name) == data
    assert store.exists(ns, name)
    assert store.size(ns, name) == len(data)
    path = store.path(ns, name)
    assert path == (store.root / ns / name[:2] / name if ns == "data" else store.root / ns / name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o440
    assert list(store.list(ns)) == [name]


def test_put_existing_identical_is_a_no_op(store: LocalStore) -> None:
    data = b"same"
    name = name_of(data)
    assert store.put("index", name, data) is True
    ino = store.path("index", name).stat().st_ino
    assert store.put("index", name, memoryview(data)) is False
    assert store.path("index", name).stat().st_ino == ino
    assert store.get("index", name) == data


def test_put_existing_other_bytes_raises(store: LocalStore) -> None:
    name = name_of(b"first")
    store.put("snapshots", name, b"first")
    with pytest.raises(ObjectExists):
        store.put("snapshots", name, b"second")
    with pytest.raises(ObjectExists):
        store.put("snapshots", name, b"firs")
    with pytest.raises(ObjectExists):
        store.put("snapshots", name, b"first\0")
    assert store.get("snapshots", name) == b"first"


def test_put_on_a_read_only_existing_file_never_writes(store: LocalStore) -> None:
    name = name_of(b"x")
    store.put("data", name, b"x")
    store.path("data", name).chmod(0o000)  # root can still read, nothing may open it to write
    with pytest.raises(ObjectExists):
        store.put("data", name, b"y")
    assert store.get("data", name) == b"x"


@given(st.binary(max_size=3000))
def test_put_get_round_trip_any_bytes(shared_store: LocalStore, data: bytes) -> None:
    name = name_of(b"rt" + data)
    shared_store.put("index", name, data)
    assert shared_store.get("index", name) == data
    assert shared_store.put("index", name, data) is False


def test_put_large_object_and_ranges(store: LocalStore) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    name = name_of(data)
    store.put("data", name, memoryview(data))
    assert store.get("data", name) == data
    assert store.get_range("data", name, 0, 40) == data[:40]
    assert store.get_range("data", name, 1000, 12345) == data[1000:13345]
    assert store.get_range("data", name, len(data) - 5, 100) == data[-5:]
    assert store.get_range("data", name, len(data) + 5, 100) == b""


def test_get_missing_raises_file_not_found(store: LocalStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.get("data", "0" * 64)
    with pytest.raises(FileNotFoundError):
        store.get_range("index", "0" * 64, 0, 10)
    assert not store.exists("keys", "0" * 64)


def test_get_refuses_objects_larger_than_any_writer_makes(store: LocalStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"z" * 100
    name = name_of(data)
    store.put("index", name, data)
    monkeypatch.setattr(store_mod, "MAX_OBJECT", 99)
    with pytest.raises(IntegrityError, match="larger"):
        store.get("index", name)


def test_no_temp_files_are_left(store: LocalStore) -> None:
    for i in range(20):
        data = b"%d" % i
        store.put("data", name_of(data), data)
    assert list((store.root / "tmp").iterdir()) == []


# -- the fallback for file systems without O_TMPFILE -------------------------------------------
def test_named_temp_path_is_write_once_too(store: LocalStore, no_tmpfile: None) -> None:
    data = b"fallback"
    name = name_of(data)
    assert store.put("keys", name, data) is True
    assert store.get("keys", name) == data
    assert stat.S_IMODE(store.path("keys", name).stat().st_mode) == 0o440
    assert store.put("keys", name, data) is False
    with pytest.raises(ObjectExists):
        store.put("keys", name, b"other")
    assert store.get("keys", name) == data
    assert list((store.root / "tmp").iterdir()) == []


def test_other_open_errors_are_not_swallowed(store: LocalStore,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.ENOSPC, "full")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    with pytest.raises(OSError, match="full"):
        store.put("data", name_of(b"a"), b"a")
    assert not store.exists("data", name_of(b"a"))


@pytest.mark.parametrize("fallback", [False, True])
def test_failed_write_leaves_no_object_and_no_temp(store: LocalStore,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   request: pytest.FixtureRequest,
                                                   fallback: bool) -> None:
    if fallback:
        request.getfixturevalue("no_tmpfile")
    real_write = os.write

    def short_then_enospc(fd, data):
        n = real_write(fd, bytes(data[:10]))
        if n:
            monkeypatch.setattr(os, "write", failing)
        return n

    def failing(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_enospc)
    data = b"0123456789" * 100
    name = name_of(data)
    with pytest.raises(OSError, match="No space"):
        store.put("data", name, data)
    monkeypatch.setattr(os, "write", real_write)
    assert not store.exists("data", name)
    assert list((store.root / "tmp").iterdir()) == []
    assert store.put("data", name, data) is True
    assert store.get("data", name) == data


# -- names ------------------------------------------------------------------------------------
BAD_NAMES = [
    "", ".", "..", "../" + "a" * 61, "a" * 63, "a" * 65, "A" * 64, "g" * 64, "a" * 63 + "/",
    "a" * 32 + "/" + "a" * 31, "/" + "a" * 63, "a" * 63 + "\0", "\0" * 64, "a" * 64 + "\n",
    " " + "a" * 63, "config", "tmp",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_refused_everywhere(store: LocalStore, name: str) -> None:
    for call in (
        lambda: store.put("data", name, b"x"),
        lambda: store.get("data", name),
        lambda: store.get_range("data", name, 0, 1),
        lambda: store.exists("data", name),
        lambda: store.size("data", name),
        lambda: store.path("index", name),
    ):
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize("ns", ["", ".", "..", "tmp", "config", "data/00", "../data", "DATA"])
def test_invalid_namespaces_are_refused(store: LocalStore, ns: str) -> None:
    good = "a" * 64
    for call in (
        lambda: store.put(ns, good, b"x"),
        lambda: store.get(ns, good),
        lambda: list(store.list(ns)),
        lambda: store.exists(ns, good),
    ):
        with pytest.raises(ValueError):
            call()


@given(st.text(max_size=70))
def test_only_64_lowercase_hex_names_pass(name: str) -> None:
    ok = len(name) == 64 and all(c in "0123456789abcdef" for c in name)
    try:
        store_mod._check_name("index", name)
        assert ok
    except ValueError:
        assert not ok


def test_list_ignores_everything_but_objects(store: LocalStore) -> None:
    data = b"real"
    name = name_of(data)
    store.put("data", name, data)
    d = store.root / "data" / "00"
    (d / ("0" * 63)).write_bytes(b"")  # too short
    (d / ".tmp").write_bytes(b"")
    (d / ("f" * 64)).mkdir()  # a directory with an object's name
    (d / ("e" * 64)).symlink_to("/etc/passwd")  # a planted link
    (store.root / "index" / ("d" * 64)).symlink_to("/etc/passwd")
    assert list(store.list("data")) == [name]
    assert list(store.list("index")) == []


def test_list_spans_all_data_subdirectories(shared_store: LocalStore) -> None:
    names = set()
    for i in range(300):
        data = b"spread %d" % i
        names.add(name_of(data))
        shared_store.put("data", name_of(data), data)
    listed = set(shared_store.list("data"))
    assert names <= listed
    assert len({n[:2] for n in names}) > 100


# -- the writer interface cannot destroy -------------------------------------------------------
def test_writer_interface_has_no_delete_or_rename() -> None:
    forbidden = ("delete", "remove", "rename", "unlink", "replace", "truncate", "move",
                 "overwrite", "rmdir", "chmod", "clear", "purge", "prune", "drop")
    for cls in (LocalStore, WriterStore):
        public = [a for a in dir(cls) if not a.startswith("_")]
        for attr in public:
            assert not any(f in attr.lower() for f in forbidden), f"{cls.__name__}.{attr}"
    protocol = {a for a in vars(WriterStore) if not a.startswith("_")}
    assert protocol == {"put", "get", "get_range", "size", "list", "exists", "read_config"}


# -- races -------------------------------------------------------------------------------------
def _race(store: LocalStore, name: str, payloads: list[bytes]) -> list[object]:
    barrier = threading.Barrier(len(payloads) + 1)
    results: list[object] = [None] * len(payloads)
    reads: list[bytes] = []
    stop = threading.Event()

    def writer(i: int) -> None:
        barrier.wait()
        try:
            results[i] = store.put("data", name, payloads[i])
        except Exception as e:  # recorded and checked below
            results[i] = e

    def reader() -> None:
        barrier.wait()
        while not stop.is_set():
            try:
                reads.append(store.get("data", name))
            except FileNotFoundError:
                pass

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(payloads))]
    r = threading.Thread(target=reader)
    for t in [*threads, r]:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    results.append(reads)
    return results


@pytest.mark.parametrize("fallback", [False, True])
def test_racing_writers_of_different_content_exactly_one_wins(
        store: LocalStore, request: pytest.FixtureRequest, fallback: bool) -> None:
    if fallback:
        request.getfixturevalue("no_tmpfile")
    for round_no in range(8):
        name = name_of(b"race %d" % round_no)
        payloads = [bytes([i]) * (256 * 1024 + i) for i in range(8)]
        *results, reads = _race(store, name, payloads)
        winners = [i for i, r in enumerate(results) if r is True]
        assert len(winners) == 1, results
        assert all(isinstance(r, ObjectExists) for i, r in enumerate(results)
                   if i != winners[0]), results
        final = store.get("data", name)
        assert final == payloads[winners[0]]
        assert all(r == final for r in reads)  # never torn, never another writer's bytes
        assert list((store.root / "tmp").iterdir()) == []


def test_racing_writers_of_identical_content(store: LocalStore) -> None:
    payload = os.urandom(512 * 1024)
    name = name_of(payload)
    *results, reads = _race(store, name, [payload] * 8)
    assert results.count(True) == 1 and results.count(False) == 7, results
    assert all(r == payload for r in reads)


# -- immutable objects (chattr +i needs ext4, not tmpfs) --------------------------------------
@pytest.fixture
def ext4_store(umask022: None) -> Iterator[LocalStore]:
    root = Path(tempfile.mkdtemp(prefix="repofs-chattr-", dir="/tmp"))
    s = LocalStore.create(root / "repo", CONFIG)
    yield s
    subprocess.run(["chattr", "-R", "-i", str(root)], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_objects_stay_usable_when_immutable(ext4_store: LocalStore) -> None:
    s = ext4_store
    objs = {ns: b"immutable " + ns.encode() for ns in spec.NAMESPACES}
    for ns, data in objs.items():
        s.put(ns, name_of(data), data)
    files = [str(s.path(ns, name_of(d))) for ns, d in objs.items()] + [str(s.root / "config")]
    subprocess.run(["chattr", "+i", *files], check=True)
    out = subprocess.run(["lsattr", *files], check=True, capture_output=True, text=True).stdout
    assert all(line.split()[0].count("i") == 1 for line in out.splitlines())
    for ns, data in objs.items():
        assert s.get(ns, name_of(data)) == data
        assert s.put(ns, name_of(data), data) is False
        with pytest.raises(ObjectExists):
            s.put(ns, name_of(data), data + b"!")
        assert list(s.list(ns)) == [name_of(data)]
    assert s.read_config() == CONFIG
    new = b"added after chattr"
    assert s.put("data", name_of(new), new) is True
    assert s.get("data", name_of(new)) == new
    with pytest.raises(PermissionError):
        os.unlink(s.path("data", name_of(objs["data"])))
