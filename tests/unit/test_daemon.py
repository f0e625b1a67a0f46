"""repofs.daemon: detaching with a readiness pipe, and reading the mount table."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from repofs import daemon
from repofs.errors import MountFailed


def test_detach_returns_once_the_daemon_is_ready(tmp_path: Path) -> None:
    marker = tmp_path / "served"

    def serve(ready: Callable[[], None]) -> None:
        ready()
        marker.write_text(str(os.getpid()))

    daemon.detach(serve, None)
    deadline = time.monotonic() + 10
    while not (marker.exists() and marker.read_text()):  # it goes on after ready()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert int(marker.read_text()) != os.getpid()


def test_detach_raises_what_failed_before_ready() -> None:
    def serve(ready: Callable[[], None]) -> None:
        raise MountFailed("cannot mount on /x: fuse: device not found")

    with pytest.raises(MountFailed, match="device not found"):
        daemon.detach(serve, None)


def test_detach_reports_a_daemon_that_exits_silently() -> None:
    with pytest.raises(MountFailed, match="exited before the file system was ready"):
        daemon.detach(lambda ready: None, None)


def test_mount_type_reads_the_mount_table(tmp_path: Path) -> None:
    assert daemon.mount_type("/proc") == "proc"
    assert daemon.mount_type(tmp_path) is None
    assert daemon.mount_type(tmp_path / "not" / "there") is None


def test_unmount_refuses_what_is_not_a_repofs_mount(tmp_path: Path) -> None:
    with pytest.raises(MountFailed, match="not mounted"):
        daemon.unmount(str(tmp_path))
    with pytest.raises(MountFailed, match=r"not a repofs mount \(proc\)"):
        daemon.unmount("/proc")
