"""s3:// end to end through the real CLI against a real Ceph RGW (tests/s3/ceph.py).

An unversioned bucket: everything works, and the server itself refuses a put over an
existing name. An Object Lock bucket (versioned): Ceph 16.2 accepts a put over an
existing name, so a writer's credentials can overwrite objects; repofs catches it, reads
the version that matches the name, restores byte for byte and names the overwrite.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from repofs import spec
from repofs.errors import ObjectExists, RepositoryExists
from repofs.s3store import S3Store, parse_url

from ..integration.harness import REPOFS, Cli, assert_same_tree, under
from .ceph import Ceph
from .conftest import client, s3_cli


def make_tree(root: Path) -> Path:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    (src / "big").write_bytes(os.urandom(3 << 20))
    for i in range(20):
        (src / "sub" / f"f{i}").write_bytes(os.urandom(i * 300))
    (src / "link").symlink_to("sub/f1")
    return src


def backup(cli: Cli, src: Path) -> str:
    cli.run("init")
    return str(cli.create(str(src))["snapshot"])


def keys_in(s3: Any, bucket: str, prefix: str) -> list[str]:
    got = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in got.get("Contents", [])]


def test_roundtrip_in_an_unversioned_bucket(ceph: Ceph, plain_bucket: str,
                                            shm_dir: Path) -> None:
    src = make_tree(shm_dir)
    cli = s3_cli(ceph, plain_bucket, shm_dir)
    snap = backup(cli, src)
    assert [s["id"] for s in cli.snapshots()] == [snap]
    assert "big" in cli.run("ls", snap, str(src)).text
    assert cli.run("dump", "latest", str(src / "sub" / "f7")).out == (src / "sub" / "f7"
                                                                      ).read_bytes()
    cli.run("restore", "latest", "-t", str(shm_dir / "out"))
    assert_same_tree(src, under(shm_dir / "out", src))
    assert "no problems found" in cli.run("check", "--read-data").text
    mnt = shm_dir / "mnt"
    mnt.mkdir()
    cli.run("mount", str(mnt))  # ranged reads over s3://, in the mount daemon
    try:
        big = mnt / "snapshots" / "latest" / str(src / "big").lstrip("/")
        assert big.read_bytes() == (src / "big").read_bytes()
        assert sorted(os.listdir(big.parent / "sub")) == sorted(os.listdir(src / "sub"))
    finally:
        subprocess.run([REPOFS, "umount", str(mnt)], check=True, capture_output=True)
    # the server refuses a second object under a name (If-None-Match: *)
    s3 = client(ceph)
    pack = next(k for k in keys_in(s3, plain_bucket, "repo/data/"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=plain_bucket, Key=pack, Body=b"planted", IfNoneMatch="*")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    os.environ.update(ceph.admin().env())
    store = S3Store.open(parse_url(str(cli.repo)))
    name = pack.rsplit("/", 1)[1]
    assert store.put(spec.NS_DATA, name, store.get(spec.NS_DATA, name)) is False
    with pytest.raises(ObjectExists):
        store.put(spec.NS_DATA, name, b"other bytes")
    with pytest.raises(RepositoryExists):
        S3Store.create(parse_url(str(cli.repo)), b"config")
    keyless = {"REPOFS_PASSPHRASE": ""}
    assert "no problems found" in cli.run("check", "--storage-only", env=keyless).text
    s3.put_object(Bucket=plain_bucket, Key=pack, Body=b"rot")  # the admin may overwrite
    r = cli.run("check", "--storage-only", env=keyless, expect=2)
    assert f"pack {name}: content does not match its name" in r.text, r.text


def test_overwrites_in_a_lock_bucket_are_caught(ceph: Ceph, lock_bucket: str,
                                               shm_dir: Path) -> None:
    src = make_tree(shm_dir)
    cli = s3_cli(ceph, lock_bucket, shm_dir)
    backup(cli, src)
    s3 = client(ceph)
    victims = [keys_in(s3, lock_bucket, f"repo/{ns}/")[0]
               for ns in (spec.NS_DATA, spec.NS_INDEX, spec.NS_SNAPSHOTS)]
    for key in victims:  # what a writer's stolen credentials can do on Ceph 16.2
        s3.put_object(Bucket=lock_bucket, Key=key, Body=b"ransom note " * 100,
                      IfNoneMatch="*")
        assert s3.get_object(Bucket=lock_bucket, Key=key)["Body"].read().startswith(b"ransom")
    s3.put_object(Bucket=lock_bucket, Key="repo/config", Body=b"not the config")
    r = cli.run("restore", "latest", "-t", str(shm_dir / "out"), expect=1)
    assert_same_tree(src, under(shm_dir / "out", src))
    for key in victims:
        assert key.rsplit("/", 1)[1] in r.err and "overwritten in the bucket" in r.err, r.err
    r = cli.run("check", "--read-data", expect=1)
    assert "no problems found" in r.text
    assert r.err.count("overwritten in the bucket") == 3, r.err
    r = cli.run("check", "--storage-only", env={"REPOFS_PASSPHRASE": ""}, expect=2)
    for key in victims:  # without a key too, and as problems
        line = next(x for x in r.text.splitlines() if key.rsplit("/", 1)[1] in x)
        assert "overwritten in the bucket" in line and "hostile hands" in line, r.text
    assert "config config: overwritten in the bucket" in r.text, r.text
    assert "4 problems found" in r.text, r.text
