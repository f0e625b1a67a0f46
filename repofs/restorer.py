"""``restore``: get trees back out, exactly and safely (``dumper`` gets one file).

This module walks; ``restorewrite`` writes each entry (safely, under a temporary
name first; read there why), ``restoredir`` reaches each directory without following
links, ``restorenames`` removes what a directory should not hold.

A directory that was already in the target is merged into: it first loses the
temporary names an interrupted restore left in it and, with ``delete``, the names
the snapshot does not hold (only those the selection covers); after its contents,
it gets its stored metadata (a resumed restore finds it at mode 0700).

Damage stays local (repofs-format(5), DAMAGE): a directory whose tree does not
verify costs only its contents. Only the tree the user asked for is needed whole.

Nothing here recurses: a tree as deep as the format allows is walked with an
explicit stack.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from repofs import restorenames, spec
from repofs.errors import IntegrityError, UnsafePath
from repofs.model import DIR, FILE, Entry
from repofs.packcheck import blob_failure
from repofs.repository import Repository
from repofs.restoredir import TargetDir
from repofs.restoreopts import (
    CREATE,
    DELETE,
    NEVER,
    REPLACE,
    DamagedFile,
    RestoreOptions,
    RestoreStats,
)
from repofs.restorewrite import EntryWriter


@dataclass
class _Frame:
    """A directory being restored: where it goes, its entry, the subdirectories left."""

    dir: TargetDir
    entry: Entry
    subdirs: list[Entry]
    tree: bytes


class Restorer:
    """Restore a snapshot (or a part of it) under a target directory."""

    def __init__(self, repo: Repository, target: Path, options: RestoreOptions,
                 progress: Callable[[RestoreStats], None] | None = None) -> None:
        self.repo = repo
        self.target = target
        self.opts = options
        self.w = EntryWriter(repo, target, options, progress)
        self.stats = self.w.stats
        self.warn = self.w.warn
        self._base = b"/"

    def run(self, entry: Entry, path: bytes) -> RestoreStats:
        """Restore ``entry`` (found at ``path`` in the snapshot): a directory's contents go
        straight into the target, a single file goes into the target under its name.
        Raises if the tree of ``entry`` itself does not verify: nothing asked is usable."""
        if self.opts.dry_run and not self.target.exists():
            root = TargetDir(None, b"", None, os.fsencode(self.target))
            root.missing = True
        else:
            if not self.opts.dry_run:
                self.target.mkdir(parents=True, exist_ok=True)
            root_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            root = TargetDir(None, b"", root_fd, os.fsencode(self.target))
        root.dry, root.replace = self.opts.dry_run, self.opts.overwrite != NEVER
        self._base = path
        try:
            if entry.type == DIR:
                assert entry.subtree is not None
                self._walk(root, entry, self._load_tree(entry.subtree))
            elif self._selected(path):
                self.w.prefetch.plan([entry])
                self.w.restore_entry(root, entry, None)
        finally:
            root.close()
            self.w.prefetch.close()
        return self.stats

    # -- traversal -------------------------------------------------------------------
    def _selected(self, path: bytes) -> bool:
        if self.opts.excludes and self.opts.excludes.matches(path):
            return False
        return not self.opts.includes or self.opts.includes.matches_or_under(path)

    def _path(self, d: TargetDir, name: bytes) -> bytes:
        """The snapshot path of ``name`` in ``d``; only computed when patterns need it
        (kept on no frame: deep trees of long names would cost depth² bytes)."""
        if not self.opts.includes and not self.opts.excludes:
            return b""
        return b"/".join([self._base.rstrip(b"/"), *d.parts(), name])

    def _load_tree(self, tree_id: bytes) -> list[Entry]:
        try:
            self.w.prefetch.tree_loaded(tree_id)
            return self.repo.load_tree(tree_id)
        except (IntegrityError, OSError) as e:
            raise blob_failure(self.repo, e, tree_id, spec.BLOB_TREE) from None

    def _walk(self, root: TargetDir, entry: Entry, children: list[Entry]) -> None:
        assert entry.subtree is not None
        stack = [self._enter(root, entry, children)]
        while stack:
            top = stack[-1]
            if not top.subdirs:
                stack.pop()
                if stack:
                    self._leave(stack[-1].dir, top)
                continue
            child = top.subdirs.pop()
            assert child.subtree is not None
            sub = TargetDir(top.dir, child.name)
            try:
                if self._selected(self._path(top.dir, child.name)):
                    sub.fd()
                stack.append(self._enter(sub, child, self._children(sub, child, len(stack))))
            except UnsafePath as e:
                self.stats.warnings.append(str(e))
                self.stats.skipped += 1
                sub.close()
            except OSError as e:  # the target refused the directory (ENOSPC, EACCES, ...)
                self.warn(sub, None, f"not restored: {e.strerror}")
                self.stats.skipped += 1
                sub.close()

    def _children(self, sub: TargetDir, entry: Entry, depth: int) -> list[Entry]:
        """A subdirectory's entries; none if its tree does not verify (named, counted)."""
        assert entry.subtree is not None
        try:
            if depth > spec.MAX_TREE_DEPTH:
                raise IntegrityError("tree", entry.subtree.hex(), "nested too deep")
            return self._load_tree(entry.subtree)
        except IntegrityError as err:
            self.repo.damage.report(err, "the contents of its directory are not restored")
            self.stats.damaged_dirs.append(sub.path())
            self.warn(sub, None, "contents not restored: its tree is damaged")
            return []

    def _enter(self, d: TargetDir, entry: Entry, children: list[Entry]) -> _Frame:
        """Restore a directory's non-directories now; its subdirectories are left to the
        walk (files first, the order the prefetcher queues them in). A directory that was
        already there first loses the temporary names of an interrupted restore and, with
        ``delete``, what the snapshot does not hold."""
        assert entry.subtree is not None
        tree = entry.subtree
        if d.opened and not d.created:
            self._tidy(d, {c.name for c in children})
        files = [c for c in children if c.type == FILE
                 and self._selected(self._path(d, c.name))
                 and (c.hardlink is None or c.hardlink not in self.w.links)
                 and self.w.wanted(d, c)]
        self.w.prefetch.plan(files)
        subdirs = []
        for child in children:
            if child.type == DIR:
                if not (self.opts.excludes and self.opts.excludes.matches(
                        self._path(d, child.name))):
                    subdirs.append(child)
            elif self._selected(self._path(d, child.name)):
                self.w.restore_entry(d, child, tree)
        subdirs.reverse()  # popped from the end: restored in name order
        self.w.prefetch.trees([c.subtree for c in reversed(subdirs) if c.subtree])
        return _Frame(d, entry, subdirs, tree)

    def _backed_up(self, d: TargetDir) -> bool:
        """Whether ``d`` is at or below a path the snapshot backed up (``delete_roots``):
        the directories above those (``/``, ``/home`` of a backup of ``/home/alice``) hold
        only the way down in the snapshot, so --delete leaves their other names alone."""
        roots = self.opts.delete_roots
        if not roots:
            return True
        here = b"/".join([self._base.rstrip(b"/"), *d.parts()]) or b"/"
        return any(r == b"/" or here == r.rstrip(b"/") or here.startswith(r.rstrip(b"/") + b"/")
                   for r in roots)

    def _tidy(self, d: TargetDir, names: set[bytes]) -> None:
        try:
            dfd = d.fd()
            if not self.opts.dry_run:
                self.stats.temps_removed += restorenames.clean_temps(
                    dfd, restorenames.listing(dfd), names)
            if not self.opts.delete or not self._backed_up(d):
                return
            extra = sorted(set(restorenames.listing(dfd)) - names)
        except (UnsafePath, OSError) as e:
            self.warn(d, None, f"not cleaned up: {e}")
            return
        for name in extra:
            if restorenames.is_temp(name) or not self._selected(self._path(d, name)):
                continue
            parts = [*d.parts(), name]
            try:
                if not self.opts.dry_run:
                    restorenames.remove(dfd, name)
                self.w.did(DELETE, d, parts)
            except UnsafePath as e:
                self.warn(d, parts, f"not deleted: {e}")
            except OSError as e:
                self.warn(d, parts, f"not deleted: {e.strerror}")

    def _leave(self, parent: TargetDir, done: _Frame) -> None:
        """A directory's contents are done: its stored metadata now (read-only ones too),
        on one that was there before as well (a resumed restore made it 0700)."""
        sub = done.dir
        try:
            if sub.missing:
                self.stats.dirs += 1
                self.w.did(CREATE, sub, None)
            if sub.opened:
                parent.reopen_from(sub.fd())
                if sub.created:
                    self.stats.dirs += 1
                    self.w.did(REPLACE if sub.replaced else CREATE, sub, None)
                if not self.opts.dry_run:
                    self.w.apply(parent, done.entry, sub.fd(), sub.parts())
        except UnsafePath as e:
            self.stats.warnings.append(str(e))
        except OSError as e:
            self.warn(sub, None, f"metadata not set: {e.strerror}")
        finally:
            sub.close()


__all__ = ["DamagedFile", "RestoreOptions", "RestoreStats", "Restorer"]
