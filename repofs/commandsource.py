"""A backup source that is a command's output (``create --stdin-from-command``).

Why a module: the command is a child that must live and die with the backup. If
``repofs create`` is interrupted (SIGINT) or terminated (SIGTERM), the command gets
the same signal and is waited for (killed if it outlives a grace period), so no
``pg_dump`` is left running unseen; the interruption then ends the create as a
KeyboardInterrupt (exit 130, repofs(1)) and no snapshot is committed. A command that
fails makes the create fail: its output is not a backup.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import IO

from repofs.errors import SourceFailed

GRACE_SECONDS = 10.0  # how long a signalled command may take to exit before SIGKILL
_FORWARDED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def command_output(argv: Sequence[str]) -> Iterator[IO[bytes]]:
    """The command's standard output, to read until its end. On leaving normally the
    command is waited for and a non-zero exit raises SourceFailed; on leaving with an
    error (an interruption included) it is signalled, waited for, and the error goes on."""
    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE)
    except OSError as e:
        raise SourceFailed(f"cannot run {argv[0]}: {e.strerror}") from None
    assert proc.stdout is not None
    with _forwarding(proc) as forwarded:
        try:
            yield proc.stdout
        except BaseException:
            _stop(proc, None if forwarded else signal.SIGTERM)
            raise
        rc = proc.wait()
    proc.stdout.close()
    if rc != 0:
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with {rc}"
        raise SourceFailed(f"command {argv[0]!r} {how}; no snapshot was saved")


@contextlib.contextmanager
def _forwarding(proc: subprocess.Popen[bytes]) -> Iterator[list[int]]:
    """While inside: SIGINT and SIGTERM go on to the command, and interrupt this
    process as a KeyboardInterrupt; the list given holds the signals forwarded. Only
    the main thread can hold signal handlers."""
    forwarded: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield forwarded
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        forwarded.append(signum)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
        raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in _FORWARDED}
    try:
        yield forwarded
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stop(proc: subprocess.Popen[bytes], signum: int | None) -> None:
    """Signal the command (``signum``, unless None or it is gone) and reap it: SIGKILL
    if it is still there after GRACE_SECONDS. Its output is closed first, so a command
    blocked on a full pipe sees EPIPE rather than waiting for a reader."""
    if signum is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
    if proc.stdout is not None:
        with contextlib.suppress(OSError):
            proc.stdout.close()
    try:
        proc.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


__all__ = ["command_output"]
