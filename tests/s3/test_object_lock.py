"""Object Lock on a real RGW: init --object-lock makes every object locked from its
creation (checked here with HEAD, as repofs does after each put); prune with the admin's
credentials cannot delete a forgotten snapshot whose lock holds (and says so); forget and
prune renew the lock of what is kept, and not of what goes."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from .ceph import Ceph
from .conftest import client, s3_cli
from .test_s3_cli import keys_in, make_tree

ADMIN = "admin passphrase"


def test_objects_are_locked_and_forget_prune_renew_locks(
        ceph: Ceph, lock_bucket: str, shm_dir: Path) -> None:
    src = make_tree(shm_dir)
    cli = s3_cli(ceph, lock_bucket, shm_dir)
    env = {"REPOFS_ADMIN_PASSPHRASE": ADMIN}
    cli.run("init", "--object-lock", "1", "--governance", env=env)
    first = cli.create(str(src))["snapshot"]
    (src / "new").write_bytes(b"new")
    cli.create(str(src))
    s3 = client(ceph)
    keys = keys_in(s3, lock_bucket, "repo/")
    assert "repo/config" in keys and len(keys) > 6
    soon = time.time() + 86400 - 600
    for key in keys:
        head = s3.head_object(Bucket=lock_bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        assert head["ObjectLockRetainUntilDate"].timestamp() > soon, key

    # a kept snapshot's lock nearly run out (the admin may shorten GOVERNANCE): forget
    # renews it, and not the lock of the snapshot it removes
    def shorten(key: str) -> None:
        s3.put_object_retention(Bucket=lock_bucket, Key=key, BypassGovernanceRetention=True,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate":
                                           datetime.fromtimestamp(time.time() + 3600, UTC)})

    def until(key: str) -> float:
        return float(s3.head_object(Bucket=lock_bucket, Key=key)[
            "ObjectLockRetainUntilDate"].timestamp())

    snaps = keys_in(s3, lock_bucket, "repo/snapshots/")
    kept = next(k for k in snaps if first not in k)
    gone = next(k for k in snaps if first in k)
    shorten(kept)
    shorten(gone)
    r = cli.run("forget", first, env=env)
    assert "renewed the Object Lock of 1 objects" in r.err, r.err
    assert until(kept) > soon and until(gone) < soon
    assert "renewed" not in cli.run("forget", "--keep-last", "1", env=env).err  # lately
    # prune renews what a forget did not reach since, and cannot delete what is locked
    indexes = keys_in(s3, lock_bucket, "repo/index/")
    for key in indexes:  # which segment this prune condemns (and so does not renew) varies
        shorten(key)
    r = cli.run("prune", "--grace", "0", env=env, expect=1)
    assert "could not be deleted yet: their Object Lock has not expired" in r.err, r.err
    renewed = [k for k in indexes if until(k) > soon]
    assert renewed and f"renewed the Object Lock of {len(renewed)} objects" in r.err, r.err
    assert "delete 0 forgotten snapshots" in r.text
    assert any(first in k for k in keys_in(s3, lock_bucket, "repo/snapshots/"))
    assert until(gone) < soon
    cli.run("init", "--object-lock", "1", expect=2, repo=shm_dir / "local")  # s3:// only
