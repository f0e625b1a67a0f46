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

import pytest

from .ceph import BINARIES, Ceph

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
