"""repofs.replicate on local stores: order, verification, resume, idempotence, refusal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repofs import crypto, spec
from repofs.damage import DamageLog
from repofs.errors import RepositoryExists, RepositoryNotFound
from repofs.replicate import ORDER, Replicator, replicate, repository_id
from repofs.store import LocalStore


def config(repo_id: bytes) -> bytes:
    return spec.pack({"format": "repofs", "v": spec.FORMAT_VERSION, "id": repo_id})


def source(base: Path, n: int = 3) -> tuple[LocalStore, dict[str, list[str]]]:
    store = LocalStore.create(base / "src", config(os.urandom(32)))
    names: dict[str, list[str]] = {}
    for ns in spec.NAMESPACES:
        for i in range(n):
            data = f"{ns} {i}".encode() + os.urandom(8)
            name = crypto.object_name(data)
            store.put(ns, name, data)
            names.setdefault(ns, []).append(name)
    return store, names


def test_copies_everything_in_write_order_then_nothing(shm_dir: Path) -> None:
    src, names = source(shm_dir)
    order: list[str] = []

    class Watch(LocalStore):
        def put(self, namespace: str, name: str, data: bytes | memoryview) -> bool:
            order.append(namespace)
            return super().put(namespace, name, data)

    dst = Watch(LocalStore.create(shm_dir / "dst", src.read_config()).root)
    report = Replicator(src, dst).run()
    assert report.copied == dict.fromkeys(ORDER, 3) and not report.skipped
    assert order == [ns for ns in ORDER for _ in range(3)]  # packs before snapshots
    for ns in spec.NAMESPACES:
        assert sorted(dst.list(ns)) == sorted(names[ns])
        for n in names[ns]:
            assert dst.get(ns, n) == src.get(ns, n)
    again = Replicator(src, dst).run()
    assert sum(again.copied.values()) == 0 and again.present == dict.fromkeys(ORDER, 3)


def test_resumes_and_creates_an_empty_destination(shm_dir: Path) -> None:
    src, names = source(shm_dir)
    first = replicate(shm_dir / "src", shm_dir / "dst")
    assert first.created and sum(first.copied.values()) == 18
    assert repository_id(LocalStore.open(shm_dir / "dst").read_config()) == repository_id(
        src.read_config())
    # an interrupted run: some objects missing at DST; the next run copies exactly those
    gone = LocalStore.open(shm_dir / "dst").path(spec.NS_SNAPSHOTS, names["snapshots"][0])
    gone.unlink()
    resumed = replicate(shm_dir / "src", shm_dir / "dst")
    assert not resumed.created and resumed.copied[spec.NS_SNAPSHOTS] == 1
    assert sum(resumed.copied.values()) == 1


def test_skips_damage_and_refuses_another_repository(shm_dir: Path) -> None:
    src, names = source(shm_dir)
    bad = src.path(spec.NS_INDEX, names["index"][1])
    bad.chmod(0o640)
    bad.write_bytes(b"rotten")
    damage = DamageLog()
    report = replicate(shm_dir / "src", shm_dir / "dst", damage)
    assert report.skipped == [(spec.NS_INDEX, names["index"][1],
                               "content does not match its name (damaged or tampered)")]
    assert [(d.kind, d.object_id) for d in damage] == [("index segment", names["index"][1])]
    assert not LocalStore.open(shm_dir / "dst").exists(spec.NS_INDEX, names["index"][1])

    LocalStore.create(shm_dir / "other", config(os.urandom(32)))
    with pytest.raises(RepositoryExists, match="holds another repository"):
        replicate(shm_dir / "src", shm_dir / "other")
    (shm_dir / "junk").mkdir()
    (shm_dir / "junk" / "file").write_bytes(b"x")
    with pytest.raises(RepositoryExists):
        replicate(shm_dir / "src", shm_dir / "junk")  # not empty, not a repository
    with pytest.raises(RepositoryNotFound):
        replicate(shm_dir / "nothing", shm_dir / "dst2")
