"""One Ceph cluster with an S3 gateway for the whole test session (tests/s3/ceph.py).

If Ceph cannot start, every S3 test fails with the daemons' own words: a missing
package or a broken gateway must never pass as a skip.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..integration.harness import Cli
from .ceph import BINARIES, Ceph, User

SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else None


@pytest.fixture(scope="session")
def ceph() -> Iterator[Ceph]:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    assert not missing, (f"Ceph is not installed ({', '.join(missing)} missing): run "
                         "scripts/setup.sh")
    base = Path(tempfile.mkdtemp(prefix="repofs-ceph-", dir=SHM))
    cluster = Ceph(base)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def bucket_name() -> str:
    return f"repofs-{uuid.uuid4().hex[:12]}"


def client(ceph: Ceph, user: User | None = None) -> Any:
    """A boto3 client of the test gateway (the tests' own, to play admin or attacker)."""
    import boto3
    import botocore.config

    who = user or ceph.admin()
    return boto3.client("s3", endpoint_url=ceph.endpoint, region_name="us-east-1",
                        aws_access_key_id=who.access_key,
                        aws_secret_access_key=who.secret_key,
                        config=botocore.config.Config(
                            s3={"addressing_style": "path"},
                            request_checksum_calculation="when_required",
                            response_checksum_validation="when_required"))


def s3_cli(ceph: Ceph, bucket: str, base: Path, prefix: str = "repo",
           user: User | None = None) -> Cli:
    """The repofs CLI on s3+http://.../bucket/prefix with ``user``'s credentials."""
    cli = Cli(f"s3+http://127.0.0.1:{ceph.port}/{bucket}/{prefix}",  # type: ignore[arg-type]
              base / f"{bucket}-{prefix}-cache")
    creds = (user or ceph.admin()).env()
    plain_env = cli.env

    def env(extra: dict[str, str] | None = None) -> dict[str, str]:
        e = {k: v for k, v in plain_env(extra).items() if not k.startswith("AWS_")}
        return {**e, **creds, **(extra or {})}

    cli.env = env  # type: ignore[method-assign]
    return cli


@pytest.fixture
def plain_bucket(ceph: Ceph, bucket_name: str) -> str:
    """An unversioned bucket: the server refuses a second PutObject with If-None-Match."""
    client(ceph).create_bucket(Bucket=bucket_name)
    return bucket_name


@pytest.fixture
def lock_bucket(ceph: Ceph, bucket_name: str) -> str:
    """An Object Lock bucket (so versioned): Ceph 16.2 accepts a put over an existing name."""
    client(ceph).create_bucket(Bucket=bucket_name, ObjectLockEnabledForBucket=True)
    return bucket_name
