"""A LocalStore that fails its Nth mutating call, the ways storage really fails.

Modes:
- ``eio`` / ``enospc``: the call raises that OSError and writes nothing;
- ``crash-before``: the process "dies" before the object is linked: nothing of
  it survives (an unsynced file is lost in a power cut);
- ``crash-after``: the object is completely written and fsynced, then the
  process dies before it could act on that (the acknowledgement is lost).
``put`` (objects) is the only mutating call of the writer interface;
``FaultyAdminStore`` fails ``delete`` as well (prune and key remove delete): a
delete that "crashes before" leaves the object, one that "crashes after" has
removed it.
"""

from __future__ import annotations

import errno
from pathlib import Path

from repofs.adminstore import AdminStore
from repofs.store import LocalStore

MODES = ("eio", "enospc", "crash-before", "crash-after")
POINTS: list[str] = []  # every injection point exercised, reported at the end of the run


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in repofs may catch a power cut and carry on."""


class FaultyStore(LocalStore):
    def __init__(self, root: Path, fail_at: int, mode: str) -> None:
        super().__init__(root)
        self.fail_at = fail_at
        self.mode = mode
        self.calls = 0

    @property
    def fired(self) -> bool:
        return self.calls >= self.fail_at

    def put(self, namespace: str, name: str, data: bytes | memoryview) -> bool:
        self.calls += 1
        if self.calls != self.fail_at:
            return super().put(namespace, name, data)
        if self.mode == "eio":
            raise OSError(errno.EIO, "injected I/O error")
        if self.mode == "enospc":
            raise OSError(errno.ENOSPC, "injected: no space left on device")
        if self.mode == "crash-before":
            raise SimulatedCrash
        super().put(namespace, name, data)
        raise SimulatedCrash


class FaultyAdminStore(AdminStore):
    """An AdminStore whose Nth mutating call (put or delete, counted together) fails."""

    def __init__(self, root: Path, fail_at: int, mode: str) -> None:
        super().__init__(root)
        self.fail_at = fail_at
        self.mode = mode
        self.calls = 0
        self.failed: str | None = None  # "put" or "delete", once the fault fired

    @property
    def fired(self) -> bool:
        return self.calls >= self.fail_at

    def _fault(self, call: str) -> bool:
        """Count a call; raise for the modes that fail before acting. True: act, then crash."""
        self.calls += 1
        if self.calls != self.fail_at:
            return False
        self.failed = call
        if self.mode == "eio":
            raise OSError(errno.EIO, "injected I/O error")
        if self.mode == "enospc":
            raise OSError(errno.ENOSPC, "injected: no space left on device")
        if self.mode == "crash-before":
            raise SimulatedCrash
        return True

    def put(self, namespace: str, name: str, data: bytes | memoryview) -> bool:
        crash = self._fault("put")
        done = super().put(namespace, name, data)
        if crash:
            raise SimulatedCrash
        return done

    def delete(self, namespace: str, name: str) -> bool:
        crash = self._fault("delete")
        done = super().delete(namespace, name)
        if crash:
            raise SimulatedCrash
        return done
