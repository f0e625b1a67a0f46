"""A directory of a restore target, reached from the target down without following links.

Why a class of its own: restore must never leave its target nor follow a link
planted in it (threat model A4), and it must do so for trees as deep as the format
allows (spec.MAX_TREE_DEPTH, 2,048 levels). Each directory is opened with
``O_NOFOLLOW`` relative to its parent's descriptor; nothing here recurses, so depth
costs no Python stack; and at most ``MAX_OPEN`` descriptors stay open however deep
the tree, so a deep tree cannot exhaust the process's file descriptors. A directory
whose descriptor was let go is opened again relative to an open ancestor (or as
``..`` of an open child), and must then be the very directory it was (same device
and inode): a directory moved during the restore is refused, not followed.
"""

from __future__ import annotations

import errno
import os
import stat

from repofs.errors import UnsafePath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_OPEN = 64  # directory descriptors one restore keeps open at most (the target's included)


class TargetDir:
    """One directory below the target, created on first use (so --include makes no
    empty directories). ``shown`` renders a path for messages."""

    def __init__(self, parent: TargetDir | None, name: bytes, fd: int | None = None,
                 target: bytes = b"") -> None:
        self.parent, self.name = parent, name
        self.target: bytes = target if parent is None else parent.target
        self.depth: int = 0 if parent is None else parent.depth + 1
        self._fd = fd
        self.ident: tuple[int, int] | None = None  # (st_dev, st_ino) once opened
        if fd is not None:
            st = os.fstat(fd)
            self.ident = (st.st_dev, st.st_ino)
        self.created = False
        self.missing = False  # dry run: not there (nor is anything below it)
        self.dry: bool = parent.dry if parent is not None else False
        # --overwrite: a non-directory where a directory is restored is replaced by it
        self.replace: bool = parent.replace if parent is not None else False
        self.replaced = False
        self.registry: list[TargetDir] = [] if parent is None else parent.registry

    # -- names -------------------------------------------------------------------------
    def parts(self) -> list[bytes]:
        """The names from the target down to this directory (iterative: trees nest deep)."""
        out: list[bytes] = []
        d: TargetDir | None = self
        while d is not None and d.parent is not None:
            out.append(d.name)
            d = d.parent
        out.reverse()
        return out

    def path(self, parts: list[bytes] | None = None) -> bytes:
        """Where this directory (or ``parts`` below the target) is, as bytes."""
        return os.path.join(self.target, *(self.parts() if parts is None else parts))

    def shown(self, parts: list[bytes] | None = None) -> str:
        return self.path(parts).decode("utf-8", "backslashreplace")

    # -- descriptors -------------------------------------------------------------------
    @property
    def opened(self) -> bool:
        return self._fd is not None

    def fd(self) -> int:
        """This directory's descriptor: created (mode 0700) and opened if need be, with
        every directory above it that is not open, from the nearest open one down. In a
        dry run nothing is created: a directory that is not there gives -1."""
        if self._fd is not None:
            return self._fd
        chain: list[TargetDir] = []
        d: TargetDir | None = self
        while d is not None and d._fd is None and not d.missing:
            chain.append(d)
            d = d.parent
        assert d is not None, "the target itself is always open"
        for sub in reversed(chain):
            if d.missing:
                sub.missing = True
            else:
                sub._open_in(d.fd())
                sub._trim()  # the deepest is kept: the next one opens in it
            d = sub
        return -1 if self._fd is None else self._fd

    def _open_in(self, pfd: int) -> None:
        if self.ident is None:  # first time: make it
            try:
                if self.dry:
                    os.stat(self.name, dir_fd=pfd, follow_symlinks=False)
                    raise FileExistsError
                os.mkdir(self.name, 0o700, dir_fd=pfd)
                self.created = True
            except FileNotFoundError:
                if not self.dry:
                    raise
                self.missing = True
                return
            except FileExistsError:
                st = os.stat(self.name, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode) and self.replace:
                    self.replaced = True  # --overwrite: a file where a directory was
                    if self.dry:
                        self.missing = True
                        return
                    os.unlink(self.name, dir_fd=pfd)
                    os.mkdir(self.name, 0o700, dir_fd=pfd)
                    self.created = True
                elif not stat.S_ISDIR(st.st_mode):
                    raise UnsafePath(f"{self.shown()} exists and is not a directory; "
                                     "not restoring into it") from None
        try:
            fd = os.open(self.name, DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafePath(f"{self.shown()} is a symlink; not restoring through "
                                 "it") from None
            raise
        self._adopt(fd)

    def reopen_from(self, child_fd: int) -> None:
        """Open this (let go) directory again as ``..`` of an open child: no walk down."""
        if self._fd is None and self.ident is not None:
            self._adopt(os.open(b"..", DIR_FLAGS, dir_fd=child_fd))

    def _adopt(self, fd: int) -> None:
        st = os.fstat(fd)
        if self.ident is not None and self.ident != (st.st_dev, st.st_ino):
            os.close(fd)
            raise UnsafePath(f"{self.shown()} was replaced during the restore; not "
                             "restoring into it")
        self.ident = (st.st_dev, st.st_ino)
        self._fd = fd
        self.registry.append(self)

    def _trim(self) -> None:
        """Let go of the descriptors of the shallowest open directories beyond MAX_OPEN
        (never the target's: it is the anchor everything is reopened from)."""
        reg = self.registry
        reg[:] = [d for d in reg if d._fd is not None]
        if len(reg) < MAX_OPEN:
            return
        for d in sorted(reg, key=lambda d: d.depth)[: len(reg) - MAX_OPEN // 2]:
            if d.parent is not None and d is not self:
                d.release()

    def release(self) -> None:
        """Close the descriptor but remember the directory, to open it again if needed."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self.release()


__all__ = ["DIR_FLAGS", "MAX_OPEN", "TargetDir"]
