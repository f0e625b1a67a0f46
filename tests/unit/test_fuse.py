"""repofs.fuse without a mount: the mount options, and errors becoming errnos."""

from __future__ import annotations

import errno
import logging

import pyfuse3
import pytest

from repofs.errors import IntegrityError
from repofs.fuse import _ERRORS, MountConfig, fuse_options


def test_mount_options_are_read_only_and_checked_by_the_kernel() -> None:
    user = fuse_options(MountConfig(), euid=1000)
    assert {"ro", "default_permissions"} <= user and "allow_other" not in user
    root = fuse_options(MountConfig(), euid=0)
    assert {"ro", "default_permissions", "nosuid", "nodev"} <= root
    assert "allow_other" in fuse_options(MountConfig(allow_other=True), euid=0)


def test_only_fuse_errors_leave_a_handler(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="repofs")
    cases: list[tuple[BaseException, int]] = [
        (FileNotFoundError(errno.ENOENT, "x"), errno.ENOENT),
        (OSError(errno.EROFS, "x"), errno.EROFS),
        (IntegrityError("pack", "ab" * 32, "authentication failed"), errno.EIO),
        (ValueError("a bug"), errno.EIO),
    ]
    for exc, want in cases:
        with pytest.raises(pyfuse3.FUSEError) as e, _ERRORS["read"]:
            raise exc
        assert e.value.errno == want
    with pytest.raises(KeyboardInterrupt), _ERRORS["read"]:  # not an errno: passes through
        raise KeyboardInterrupt
    with _ERRORS["read"]:
        pass
    assert f"pack {'ab' * 32} is corrupt or tampered" in caplog.text  # names the object
    assert "read failed" in caplog.text and "ValueError: a bug" in caplog.text
