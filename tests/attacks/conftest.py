"""Fixtures of the attack suite: a stand-in ssh, and one pristine victim repository per module."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .victim import Pristine, Victim, build_pristine, copy_victim, write_fake_ssh


@pytest.fixture(scope="module")
def attack_dir() -> Iterator[Path]:
    assert os.geteuid() == 0, "the attack suite runs as root (chown, setpriv, chattr)"
    d = Path(tempfile.mkdtemp(prefix="repofs-attack-", dir="/dev/shm"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def fake_ssh(attack_dir: Path) -> Path:
    return write_fake_ssh(attack_dir)


@pytest.fixture(scope="module")
def pristine(attack_dir: Path, fake_ssh: Path) -> Pristine:
    return build_pristine(attack_dir / "pristine", fake_ssh)


@pytest.fixture
def victim_factory(attack_dir: Path, fake_ssh: Path, pristine: Pristine,
                   request: pytest.FixtureRequest) -> Callable[..., Victim]:
    def make(serve_flags: str = "", base: Path | None = None) -> Victim:
        where = base or attack_dir
        prefix = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)[:100] + "-"
        name = Path(tempfile.mkdtemp(prefix=prefix, dir=where)).name
        return copy_victim(pristine, where, fake_ssh, name, serve_flags)
    return make


@pytest.fixture
def victim(victim_factory: Callable[..., Victim]) -> Victim:
    return victim_factory()
