#!/usr/bin/env python3
"""The floor: a pyfuse3 + trio file system that does nothing but serve a directory.

``bench_mount.py --tools ...,floor`` mounts this over the corpus and times the
same ``tar`` and ``dd`` as for repofs, borg and restic. It does the least any
pyfuse3 + trio file system can do for them: the tree is scanned into memory
before mounting, entries and attributes are cached by the kernel for an hour,
a file's content is read from the source directory when it is opened and
handed to the page cache then (up to 1 MiB, as repofs does), and larger files
are read with ``pread``. No decryption, no decompression, no verification.
Its times are the fastest a mount built on pyfuse3 + trio can be on this
machine, which bounds what repofs (built on them, as the design fixes) can
reach against borg and restic.

``--no-open`` estimates what the kernel's no-open mode would save, which a
pyfuse3 file system cannot use (its ``read`` is given the file handle, which
is 0 for every file in that mode, and not the inode): OPEN is refused with
ENOSYS, so the kernel sends no OPEN and no RELEASE at all, and each directory's
files are handed to the page cache right after it is listed. A read that still
reaches the file system fails with EIO and is counted (printed at unmount):
an estimate, not a file system to use.

Usage: floor_fs.py [--no-open] MOUNTPOINT DIRECTORY  (foreground; fusermount3 -u)
"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pyfuse3
import trio

STORE_LIMIT = 1 << 20
TTL = 3600.0


class Tree:
    """Every entry under ``root``: inode -> (path, lstat), and each directory's listing."""

    def __init__(self, root: str) -> None:
        self.paths: dict[int, str] = {pyfuse3.ROOT_INODE: root}
        self.stats: dict[int, os.stat_result] = {pyfuse3.ROOT_INODE: os.lstat(root)}
        self.listings: dict[int, list[tuple[bytes, int]]] = {}
        self.names: dict[tuple[int, bytes], int] = {}
        self._next = pyfuse3.ROOT_INODE + 1
        self._scan(root, pyfuse3.ROOT_INODE)

    def _scan(self, path: str, ino: int) -> None:
        listing = []
        for name in sorted(os.listdir(path)):
            child_path = os.path.join(path, name)
            child = self._next
            self._next += 1
            self.paths[child], self.stats[child] = child_path, os.lstat(child_path)
            listing.append((os.fsencode(name), child))
            self.names[(ino, os.fsencode(name))] = child
            if stat.S_ISDIR(self.stats[child].st_mode):
                self._scan(child_path, child)
        self.listings[ino] = listing

    def attr(self, ino: int) -> pyfuse3.EntryAttributes:
        st = self.stats[ino]
        e = pyfuse3.EntryAttributes()
        e.st_ino = ino
        e.st_mode, e.st_nlink, e.st_size = st.st_mode, st.st_nlink, st.st_size
        e.st_uid, e.st_gid, e.st_blocks, e.st_blksize = st.st_uid, st.st_gid, st.st_blocks, 4096
        e.st_atime_ns = e.st_mtime_ns = st.st_mtime_ns
        e.st_ctime_ns = st.st_ctime_ns
        e.entry_timeout = e.attr_timeout = TTL
        return e


class FloorOps(pyfuse3.Operations):
    def __init__(self, tree: Tree) -> None:
        super().__init__()
        self.tree = tree
        self.fds: dict[int, int] = {}
        self.handles = 0

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.tree.attr(inode)

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        ino = self.tree.names.get((parent_inode, name))
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.tree.attr(ino)

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self.tree.listings[fh]
        for i in range(start_id, len(listing)):
            name, ino = listing[i]
            if not pyfuse3.readdir_reply(token, name, self.tree.attr(ino), i + 1):
                return

    async def releasedir(self, fh: int) -> None:
        pass

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.fsencode(os.readlink(self.tree.paths[inode]))

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        fd = os.open(self.tree.paths[inode], os.O_RDONLY)
        if 0 < self.tree.stats[inode].st_size <= STORE_LIMIT:
            pyfuse3.notify_store(inode, 0, os.pread(fd, STORE_LIMIT, 0))
        self.handles += 1
        self.fds[self.handles] = fd
        return pyfuse3.FileInfo(fh=self.handles, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(self.fds[fh], size, off)

    async def release(self, fh: int) -> None:
        os.close(self.fds.pop(fh))


class NoOpenOps(FloorOps):
    """FloorOps in the kernel's no-open mode (see the module's docstring)."""

    def __init__(self, tree: Tree) -> None:
        super().__init__(tree)
        self.failed_reads = 0

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        self.failed_reads += 1  # fh is 0 for every file: which one is not known
        raise pyfuse3.FUSEError(errno.EIO)

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self.tree.listings[fh]
        listed = []
        for i in range(start_id, len(listing)):
            name, ino = listing[i]
            if not pyfuse3.readdir_reply(token, name, self.tree.attr(ino), i + 1):
                break
            listed.append(ino)
        if listed:  # after the reply: the kernel knows the inodes then
            trio.lowlevel.spawn_system_task(self._store, listed)

    async def _store(self, inodes: list[int]) -> None:
        for ino in inodes:
            st = self.tree.stats[ino]
            if stat.S_ISREG(st.st_mode) and st.st_size:
                with open(self.tree.paths[ino], "rb") as f:
                    data = f.read()
                try:
                    pyfuse3.notify_store(ino, 0, data)
                except OSError:
                    pass


def main() -> None:
    no_open = sys.argv[1] == "--no-open"
    mountpoint, root = sys.argv[1 + no_open], sys.argv[2 + no_open]
    tree = Tree(os.path.abspath(root))
    ops = NoOpenOps(tree) if no_open else FloorOps(tree)
    pyfuse3.init(ops, mountpoint, {"fsname=floor", "ro", "default_permissions"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close()
        if isinstance(ops, NoOpenOps):
            print(f"reads refused: {ops.failed_reads}", file=sys.stderr)


if __name__ == "__main__":
    main()
