"""Shared fixtures: scratch directories on tmpfs, hypothesis settings, byte mutations."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else None

# Subprocess tests run the `repofs` entry point of the interpreter running pytest.
os.environ["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"

# AEAD, Argon2 and file system work make some examples slow on a loaded 2-core machine;
# a deadline would make the suite flaky without finding anything.
settings.register_profile(
    "repofs",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("repofs-long", parent=settings.get_profile("repofs"),
                          max_examples=2000)
settings.load_profile(os.environ.get("REPOFS_HYPOTHESIS_PROFILE", "repofs"))


def _scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=SHM))


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A fresh scratch directory on tmpfs, removed afterwards."""
    d = _scratch("repofs-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def shm_module_dir() -> Iterator[Path]:
    """A scratch directory on tmpfs shared by one test module."""
    d = _scratch("repofs-mod-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def shm_factory() -> Iterator[Callable[[], Path]]:
    """Make any number of scratch dirs inside hypothesis tests (no function-scoped fixture)."""
    made: list[Path] = []

    def make() -> Path:
        d = _scratch("repofs-hyp-")
        made.append(d)
        return d

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


# -- mutations of valid encodings ---------------------------------------------------------
def _flip(data: bytes, draw: Callable[[st.SearchStrategy[int]], int]) -> bytes:
    if not data:
        return b"\x00"
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= 1 << draw(st.integers(0, 7))
    return bytes(buf)


@st.composite
def _mutation(draw: st.DrawFn, data: bytes) -> bytes:
    how = draw(st.sampled_from(["flip", "truncate", "append", "splice", "replace"]))
    if how == "flip":
        return _flip(data, draw)
    if how == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "append":
        return data + draw(st.binary(min_size=1, max_size=64))
    if how == "splice":
        pos = draw(st.integers(0, len(data)))
        return data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]
    pos = draw(st.integers(0, len(data)))
    end = draw(st.integers(pos, min(len(data), pos + 16)))
    return data[:pos] + draw(st.binary(max_size=16)) + data[end:]


def mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """Bit flips, truncation, appended, inserted and replaced bytes of ``data``, never ``data``."""
    return _mutation(data).filter(lambda m: m != data)


@pytest.fixture(scope="session")
def mutate() -> Callable[[bytes], st.SearchStrategy[bytes]]:
    """``data.draw(mutate(valid))`` inside a ``@given(st.data())`` test."""
    return mutations
