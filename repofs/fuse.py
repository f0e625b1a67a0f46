"""The FUSE adapter: serves a ``vfs.SnapshotFS`` through pyfuse3 in a trio loop.

The only module that imports pyfuse3 and trio, and the only async one. Only
FUSEError leaves a handler: an OSError keeps its errno; a repository error
(corrupt or tampered data) becomes EIO and a log line naming the object,
never zeros; anything else EIO and a traceback.

Requests are answered in the event loop's thread whenever the answer is in
memory (a loaded tree, cached chunks): a hand-off to a worker thread and back
costs more than most answers, and tar through the mount is a chain of such
round trips, one file after the other. Only work that must read the
repository (a lookup or opendir that loads a tree, a read of chunks not
fetched yet) goes to worker threads, so one slow request does not stall the
others; such a read fetches its chunks in parallel. Chunks are fetched
ahead of readers by the vfs's own threads (``vfs.ahead``): the next chunks of
a sequential reader, and the files a tree walker (tar, cp -a, rsync) opens
next, which are handed to the kernel's page cache when opened, so reading
them takes no round trip. Content never changes: the kernel keeps entries,
attributes and pages for long (``keep_cache``).

Also here: the mount options (read-only, ``default_permissions``, and
``nosuid,nodev`` for root) and SIGINT/SIGTERM (unmount and exit); running
in the background and unmounting are ``repofs.daemon``'s.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import pyfuse3
import trio

from repofs import daemon
from repofs.errors import MountFailed, RepofsError
from repofs.vfs import Attr, Chunk, SnapshotFS, WouldBlock

log = logging.getLogger("repofs.mount")
_THREADS = 16  # blocking requests served at once
_TRIM_BYTES = 64 << 20  # give freed heap pages back after fetching this much
_DECODERS = 2  # processes that decode chunks fetched ahead (vfs.decoder)
_READ_AHEAD_KIB = 1024  # the kernel's read-ahead window, where it may be set (root)


@dataclass(frozen=True)
class MountConfig:
    allow_other: bool = False
    foreground: bool = False
    log_file: str | None = None
    # logged once serving, where the daemon logs: what the command met before the daemon's
    # log existed (damage left out while opening), so the log names it too
    logged_at_start: tuple[str, ...] = ()


def fuse_options(config: MountConfig, euid: int) -> set[str]:
    """Read-only, kernel permission checks always; no setuid or devices for root mounts."""
    opts = {"fsname=repofs", "subtype=repofs", "ro", "default_permissions"}
    if euid == 0:
        opts |= {"nosuid", "nodev"}
    if config.allow_other:
        opts.add("allow_other")
    return opts


def _entry(ino: int, a: Attr) -> pyfuse3.EntryAttributes:
    e = pyfuse3.EntryAttributes()
    e.st_ino = ino
    e.generation = 0
    e.entry_timeout = a.entry_ttl
    e.attr_timeout = a.attr_ttl
    e.st_mode = a.mode
    e.st_nlink = a.nlink
    e.st_uid = a.uid
    e.st_gid = a.gid
    e.st_rdev = a.rdev
    e.st_size = a.size
    e.st_blksize = 128 * 1024
    e.st_blocks = a.blocks
    e.st_atime_ns = a.mtime_ns  # access times are not stored
    e.st_mtime_ns = a.mtime_ns
    e.st_ctime_ns = a.ctime_ns
    return e


class _Errors:
    """Turns every exception into a FUSEError, the only kind a handler may raise. A class
    (one instance per handler), not a generator: it runs at every request."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None,
                 tb: object) -> Literal[False]:
        if e is None or isinstance(e, pyfuse3.FUSEError):
            return False
        if isinstance(e, OSError):
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        if isinstance(e, RepofsError):
            log.error("%s: %s", self.what, e)
            raise pyfuse3.FUSEError(errno.EIO) from None
        if isinstance(e, Exception):
            log.error("%s failed", self.what, exc_info=e)
            raise pyfuse3.FUSEError(errno.EIO) from None
        return False  # KeyboardInterrupt, cancellation: not ours to turn into an errno


_ERRORS = {name: _Errors(name) for name in (
    "lookup", "getattr", "readlink", "listxattr", "getxattr", "statfs", "opendir", "readdir",
    "releasedir", "open", "release", "read")}


def _rofs() -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(errno.EROFS)


class _Ops(pyfuse3.Operations):
    supports_dot_lookup = False  # the kernel resolves '.' and '..' itself
    enable_acl = True  # the kernel checks stored POSIX ACLs, not only the mode bits

    def __init__(self, fs: SnapshotFS, ready: Callable[[], None] | None) -> None:
        super().__init__()
        self.fs = fs
        self._ready = ready
        self._limiter = trio.CapacityLimiter(_THREADS)
        self._store = True  # notify_store works (the kernel may refuse it)
        self.initialized = trio.Event()

    def init(self) -> None:
        self.initialized.set()
        if self._ready is not None:  # the kernel's INIT is answered: requests are served
            self._ready()
            self._ready = None

    # -- names and attributes ---------------------------------------------------------
    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        with _ERRORS["lookup"]:
            try:
                ino, attr = self.fs.lookup(parent_inode, name, block=False)
            except WouldBlock:
                ino, attr = await trio.to_thread.run_sync(self.fs.lookup, parent_inode, name,
                                                          limiter=self._limiter)
            return _entry(ino, attr)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        try:
            self.fs.forget(inode_list)
        except Exception:  # forget must not raise
            log.exception("forget failed")

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        with _ERRORS["getattr"]:
            return _entry(inode, self.fs.getattr(inode))

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        with _ERRORS["readlink"]:
            return self.fs.readlink(inode)

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        with _ERRORS["listxattr"]:
            return self.fs.listxattr(inode)

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        with _ERRORS["getxattr"]:
            return self.fs.getxattr(inode, name)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        with _ERRORS["statfs"]:
            st = pyfuse3.StatvfsData()
            st.f_bsize = st.f_frsize = 4096
            st.f_blocks = st.f_bfree = st.f_bavail = 0
            st.f_files = self.fs.statfs().inodes
            st.f_ffree = st.f_favail = 0
            st.f_namemax = self.fs.statfs().name_max
            return st

    # -- directories ------------------------------------------------------------------
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        with _ERRORS["opendir"]:
            try:
                return self.fs.opendir(inode, block=False)
            except WouldBlock:
                return await trio.to_thread.run_sync(self.fs.opendir, inode,
                                                     limiter=self._limiter)

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        def reply(name: bytes, ino: int, attr: Attr, next_id: int) -> bool:
            return pyfuse3.readdir_reply(token, name, _entry(ino, attr), next_id)

        with _ERRORS["readdir"]:
            self.fs.readdir(fh, start_id, reply)

    async def releasedir(self, fh: int) -> None:
        with _ERRORS["releasedir"]:
            self.fs.releasedir(fh)

    # -- files ------------------------------------------------------------------------
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        with _ERRORS["open"]:
            fh = self.fs.open(inode, flags)
            data = self.fs.content_now(fh) if self._store else None
            if data is not None:  # fetched ahead: its reads need no round trips now
                self._push(inode, data)
            return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    def _push(self, inode: int, data: Chunk) -> bool:
        """Hand a file's content to the kernel's page cache. The kernel makes this wait for
        reads of the same pages still to be answered, by this thread: so only content that
        ``SnapshotFS.content_now`` gives out (no such read can be pending)."""
        if not self._store:
            return False
        try:
            pyfuse3.notify_store(inode, 0, cast(bytes, data))  # takes any buffer
        except OSError as e:
            if e.errno == errno.ENOENT:  # the kernel forgot the inode meanwhile
                return False
            log.info("the kernel refuses data ahead of reads (%s)", e)
            self._store = False
            return False
        return True

    async def release(self, fh: int) -> None:
        with _ERRORS["release"]:
            self.fs.release(fh)

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:  # type: ignore[override]
        # pyfuse3 takes any buffer: a read inside one chunk is answered without a copy
        with _ERRORS["read"]:
            plan = self.fs.plan_read(fh, off, size)
            chunks: dict[bytes, Chunk] = {}
            missing = []
            for cid, n in plan.needed():
                data = self.fs.cache.peek(cid)
                if data is None:
                    missing.append((cid, n))
                else:
                    chunks[cid] = data
            if missing:
                failed: list[tuple[bytes, Exception]] = []
                async with trio.open_nursery() as nursery:
                    for cid, n in missing:
                        nursery.start_soon(self._fetch, cid, n, chunks, failed)
                if failed:
                    cid, e = failed[0]
                    if isinstance(e, RepofsError):
                        log.error("read of %s: chunk %s: %s", plan.label, cid.hex(), e)
                        raise pyfuse3.FUSEError(errno.EIO)
                    raise e
            out = plan.assemble(chunks)
            self.fs.done_reading(plan)
            return out

    async def _fetch(self, cid: bytes, n: int, out: dict[bytes, Chunk],
                     failed: list[tuple[bytes, Exception]]) -> None:
        try:
            out[cid] = await trio.to_thread.run_sync(self.fs.cache.get, cid, n,
                                                     limiter=self._limiter)
        except Exception as e:
            failed.append((cid, e))

    # -- everything that would write: a read-only file system -------------------------
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _rofs()

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _rofs()

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _rofs()

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise _rofs()

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise _rofs()

    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _rofs()

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        raise _rofs()

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _rofs()

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise _rofs()

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        raise _rofs()

    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        raise _rofs()

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise _rofs()


# -- running ---------------------------------------------------------------------------
async def _on_signals() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


async def _trim_now_and_then(fs: SnapshotFS) -> None:
    """Keep RSS bounded: chunk buffers live in the heap (``daemon.tune_malloc``), and the
    pages they leave free are returned after every ``_TRIM_BYTES`` fetched."""
    trimmed = 0
    while True:
        await trio.sleep(0.25)
        if fs.cache.fetched_bytes - trimmed >= _TRIM_BYTES:
            trimmed = fs.cache.fetched_bytes
            await trio.to_thread.run_sync(daemon.trim_malloc)


async def _read_ahead_more(ops: _Ops, mountpoint: str) -> None:
    """Widen the kernel's read-ahead once mounted: the INIT reply, sent after ``init``
    returns, sets it back to 128 KiB."""
    await ops.initialized.wait()
    await trio.sleep(0)  # the reply is written before this task runs again
    if daemon.read_ahead(mountpoint, _READ_AHEAD_KIB):
        log.debug("read-ahead %d KiB", _READ_AHEAD_KIB)


async def _serve(ops: _Ops, mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_on_signals)
        nursery.start_soon(_trim_now_and_then, ops.fs)
        nursery.start_soon(_read_ahead_more, ops, mountpoint)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def _serve_at(fs: SnapshotFS, mountpoint: str, config: MountConfig,
              ready: Callable[[], None] | None) -> None:
    daemon.tune_malloc()
    fs.start_decoders(_DECODERS)  # forked now: no threads, no FUSE device yet
    ops = _Ops(fs, ready)
    try:
        pyfuse3.init(ops, mountpoint, fuse_options(config, os.geteuid()))
    except RuntimeError as e:
        raise MountFailed(f"cannot mount on {mountpoint}: {e}") from None
    log.info("serving %s", mountpoint)
    for line in config.logged_at_start:
        log.warning("%s", line)
    try:
        trio.run(_serve, ops, mountpoint)
    finally:
        fs.close()
        pyfuse3.close(unmount=daemon.mount_type(mountpoint) is not None)
    log.info("unmounted %s", mountpoint)


def mount(fs: SnapshotFS, mountpoint: str, config: MountConfig) -> None:
    """Mount ``fs``. In the foreground, serve until unmounted; else fork a daemon and
    return once the kernel has initialised the file system (or raise why it did not)."""
    mountpoint = os.path.abspath(mountpoint)
    if not Path(mountpoint).is_dir():
        raise MountFailed(f"{mountpoint} is not a directory")
    if daemon.mount_type(mountpoint) == daemon.FSTYPE:
        raise MountFailed(f"{mountpoint}: a repofs file system is mounted there already")
    if config.foreground:
        daemon.setup_logging(config.log_file, foreground=True)
        _serve_at(fs, mountpoint, config, None)
    else:
        daemon.detach(lambda ready: _serve_at(fs, mountpoint, config, ready), config.log_file)


unmount = daemon.unmount

__all__ = ["MountConfig", "fuse_options", "mount", "unmount"]
