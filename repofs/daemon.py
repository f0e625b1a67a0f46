"""Running a mount in the background, and taking mounts down.

``detach`` forks a daemon (in a new session, detached from the terminal) and
returns only once the daemon says the file system is ready, through a pipe;
if the daemon fails first, its error is raised here, in the command the user
ran. ``unmount`` works from the mount table alone, so it also frees a mount
whose daemon was killed. Nothing here knows FUSE's API: ``repofs.fuse``
passes in what to serve.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import logging.handlers
import os
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from repofs.errors import MountFailed

log = logging.getLogger("repofs.mount")
READY = b"ready"
READY_TIMEOUT = 120.0
FSTYPE = "fuse.repofs"

Serve = Callable[[Callable[[], None]], None]  # serve(ready): call ready() once serving


def setup_logging(log_file: str | None, foreground: bool) -> None:
    """Log lines go to ``log_file``, and to stderr in the foreground or syslog if detached."""
    handlers: list[logging.Handler] = []
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    elif log_file is None and Path("/dev/log").exists():
        handlers.append(logging.handlers.SysLogHandler("/dev/log"))
    fmt = logging.Formatter("%(asctime)s repofs-mount[%(process)d] %(levelname)s %(message)s")
    root = logging.getLogger("repofs")
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(logging.INFO)


def tune_malloc() -> None:
    """Keep the daemon's RSS bounded without paying for a fresh mapping per chunk.

    Reads allocate and free buffers of about a chunk (1 MiB) in several threads.
    Left alone, glibc moves its mmap threshold around and serves them from
    per-thread arenas, where fragmentation grows RSS far beyond the chunk cache:
    two arenas keep that bounded. A fixed threshold above the largest chunk keeps
    chunk buffers in the heap, where freed memory is reused: with buffers mapped
    and unmapped for every chunk (a 64 KiB threshold), page faults and unmapping
    halved the throughput of a large file (dd: 370 against 600-720 MB/s). Freed
    chunk buffers in the middle of the heap are given back by ``trim_malloc``,
    which the mount calls now and then while it reads.
    """
    m_mmap_threshold, m_arena_max = -3, -8  # from malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
        libc.mallopt(m_arena_max, 2)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        log.debug("mallopt not available")


def trim_malloc() -> None:
    """Give free heap pages back to the kernel (glibc's malloc_trim): without it, a heap
    that chunk buffers of every size went through keeps growing with what was read."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        log.debug("malloc_trim not available")


def detach(serve: Serve, log_file: str | None) -> None:
    """Run ``serve`` in a daemon; return once it is ready, or raise why it failed."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child starts a new session and leaves the daemon behind
        os.close(rfd)
        code = 2
        try:
            os.setsid()
            if os.fork() == 0:
                _daemon(serve, log_file, wfd)
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    os.waitpid(pid, 0)
    try:
        message = _read_until_closed(rfd, READY_TIMEOUT)
    finally:
        os.close(rfd)
    if message != READY:
        raise MountFailed(message.decode(errors="replace").strip()
                          or "the mount daemon exited before the file system was ready")


def _read_until_closed(fd: int, timeout: float) -> bytes:
    out = b""
    poller = select.poll()  # not select(): it fails on fds above 1023
    poller.register(fd, select.POLLIN)
    while True:
        ready = poller.poll(timeout * 1000)
        if not ready:
            return b"the mount daemon did not become ready in time"
        data = os.read(fd, 4096)
        if not data:
            return out
        out += data


def _daemon(serve: Serve, log_file: str | None, wfd: int) -> None:
    """The daemon: serve until unmounted, then exit; never returns to the caller."""
    sent = False

    def ready() -> None:
        nonlocal sent
        sent = True
        os.write(wfd, READY)
        os.close(wfd)

    def close_in_child() -> None:
        # a process the daemon forks (chunk decoders) must not hold the pipe open: the
        # command waits for it to close
        if not sent:
            with contextlib.suppress(OSError):
                os.close(wfd)

    os.register_at_fork(after_in_child=close_in_child)
    code = 0
    try:
        os.chdir("/")
        setup_logging(log_file, foreground=False)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        serve(ready)
    except BaseException as e:
        code = 2
        log.exception("mount failed")
        if not sent:  # else wfd is closed, and its number may be reused
            with contextlib.suppress(OSError):
                os.write(wfd, str(e).encode() or type(e).__name__.encode())
    finally:
        logging.shutdown()
        os._exit(code)


# -- the mount table -------------------------------------------------------------------
def _canonical(path: str | bytes) -> bytes:
    """An absolute path with symlinks resolved, except the last component (it may be a
    dead mount, which cannot be stat'ed)."""
    p = os.path.abspath(os.fsencode(path))
    head, tail = os.path.split(p)
    return os.path.join(os.path.realpath(head), tail) if tail else p


def _mounted(path: str | bytes) -> tuple[str, str] | None:
    """(file system type, device "major:minor") of the topmost mount at ``path``, or None."""
    target = _canonical(path)
    found = None
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            sep = fields.index(b"-")
            point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
            if point == target:
                found = (fields[sep + 1].decode(errors="replace"), fields[2].decode())
    return found


def mount_type(path: str | bytes) -> str | None:
    """The file system type mounted at ``path`` (the topmost), or None."""
    found = _mounted(path)
    return found[0] if found is not None else None


def read_ahead(path: str, kib: int) -> bool:
    """Let the kernel read ahead up to ``kib`` KiB at a time from the file system mounted
    at ``path``; whether it could be set. FUSE starts at 128 KiB, so a large file is read
    in 128 KiB requests, each a round trip to the daemon; a larger window makes them 1 MiB
    (FUSE's largest request). Only root may change it (the mount's entry in
    /sys/class/bdi); for others the default stays."""
    found = _mounted(path)
    if found is None:
        return False
    try:
        with open(f"/sys/class/bdi/{found[1]}/read_ahead_kb", "w") as f:
            f.write(str(kib))
    except OSError as e:
        log.debug("read-ahead of %s stays at the default: %s", path, e)
        return False
    return True


def unmount(mountpoint: str) -> None:
    """Unmount a repofs mount, also when its daemon died (lazily if it is still busy)."""
    target = _canonical(mountpoint)
    kind = mount_type(target)
    if kind is None:
        raise MountFailed(f"{mountpoint} is not mounted")
    if kind != FSTYPE:
        raise MountFailed(f"{mountpoint} is not a repofs mount ({kind})")
    tool = shutil.which("fusermount3")
    if tool is None:
        raise MountFailed("fusermount3 not found: install fuse3")
    first = subprocess.run([tool, "-u", target], capture_output=True, check=False)
    if first.returncode == 0:
        return
    lazy = subprocess.run([tool, "-u", "-z", target], capture_output=True, check=False)
    if lazy.returncode != 0:
        raise MountFailed(lazy.stderr.decode(errors="replace").strip()
                          or first.stderr.decode(errors="replace").strip()
                          or f"cannot unmount {mountpoint}")


__all__ = ["FSTYPE", "detach", "mount_type", "read_ahead", "setup_logging", "trim_malloc",
           "tune_malloc", "unmount"]
