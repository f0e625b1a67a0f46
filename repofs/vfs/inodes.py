"""The inode numbers the kernel holds, and what each stands for.

A number is allocated the first time the kernel meets a name (a lookup, or an
entry of a listing it accepts) and dropped when the kernel forgets it, so the
table follows what the kernel caches, not the size of the repository. Numbers
are never reused within a mount. A name keeps its number while the kernel
holds it: entries are keyed by (parent inode, name), and hardlinked files by
(snapshot, hardlink id), so every link of one file has one inode.

All methods take the table's lock; none of them reads the repository.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections.abc import Callable, Iterable

from repofs.vfs.nodes import Attr, Spec, Stored

ROOT = 1


class Node:
    """One inode. ``attr`` is kept only where computing it may block (history
    directories) or depends on the layout; a stored entry's is computed when asked,
    which keeps a node small: the kernel may hold millions."""

    __slots__ = ("attr", "ino", "key", "lookups", "spec")

    def __init__(self, ino: int, spec: Spec, key: tuple[object, ...],
                 attr: Attr | None) -> None:
        self.ino, self.spec, self.key, self.attr, self.lookups = ino, spec, key, attr, 0


class InodeTable:
    """Inode -> node, and (parent, name) or hardlink key -> node."""

    def __init__(self, root: Spec, attr: Attr, make_attr: Callable[[Spec], Attr]) -> None:
        self._make_attr = make_attr
        self._lock = threading.Lock()
        self._inos = itertools.count(ROOT + 1)
        node = Node(ROOT, root, ("root",), attr)
        node.lookups = 1  # the kernel never forgets the root
        self._nodes = {ROOT: node}
        self._by_key: dict[tuple[object, ...], Node] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def _get(self, ino: int) -> Node:
        node = self._nodes.get(ino)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, f"inode {ino} is not known")
        return node

    def spec(self, ino: int) -> Spec:
        with self._lock:
            return self._get(ino).spec

    def _attr(self, node: Node) -> Attr:
        return node.attr if node.attr is not None else self._make_attr(node.spec)

    def attr(self, ino: int) -> Attr:
        with self._lock:
            return self._attr(self._get(ino))

    def set_attr(self, ino: int, attr: Attr) -> None:
        with self._lock:
            self._get(ino).attr = attr

    def _obtain(self, parent: int, name: bytes, s: Spec, attr: Attr | None) -> Node:
        key = s.key(parent, name) if isinstance(s, Stored) else (parent, name)
        node = self._by_key.get(key)
        if node is None:
            if isinstance(s, Stored):
                attr = None
            elif attr is None:
                attr = self._make_attr(s)
            node = Node(next(self._inos), s, key, attr)
            self._nodes[node.ino] = node
            self._by_key[key] = node
        elif not isinstance(s, Stored):  # the layout may have changed since
            node.spec, node.attr = s, attr or self._make_attr(s)
        return node

    def _drop(self, node: Node) -> None:
        if node.lookups <= 0 and node.ino != ROOT:
            self._nodes.pop(node.ino, None)
            if self._by_key.get(node.key) is node:
                del self._by_key[node.key]

    def take(self, parent: int, name: bytes, s: Spec, attr: Attr | None) -> tuple[int, Attr]:
        """The node for a looked-up name; the kernel holds one more reference to it.
        ``attr`` is given when computing it would block (history directories)."""
        with self._lock:
            node = self._obtain(parent, name, s, attr)
            node.lookups += 1
            return node.ino, self._attr(node)

    def offer(self, parent: int, name: bytes, s: Spec, attr: Attr | None,
              reply: Callable[[int, Attr], bool]) -> bool:
        """Offer a listed name to the kernel; a reference only if ``reply`` accepts it."""
        with self._lock:
            node = self._obtain(parent, name, s, attr)
            if not reply(node.ino, self._attr(node)):
                self._drop(node)
                return False
            node.lookups += 1
            return True

    def forget(self, items: Iterable[tuple[int, int]]) -> None:
        with self._lock:
            for ino, n in items:
                node = self._nodes.get(ino)
                if node is not None and ino != ROOT:
                    node.lookups -= n
                    self._drop(node)

    def parent(self, ino: int) -> tuple[Spec, bytes] | None:
        """The spec of the directory ``ino`` was found in, and its name there."""
        return self.spec_and_parent(ino)[1]

    def spec_and_parent(self, ino: int) -> tuple[Spec, tuple[Spec, bytes] | None]:
        """``spec(ino)`` and ``parent(ino)`` at once (opening a file needs both)."""
        with self._lock:
            node = self._get(ino)
            key = node.key
            parent = self._nodes.get(key[0]) if isinstance(key[0], int) else None
            if parent is None or not isinstance(key[1], bytes):
                return node.spec, None
            return node.spec, (parent.spec, key[1])

    def ancestry(self, ino: int) -> list[tuple[Spec, bytes]]:
        """The directory ``ino`` was found in and its name there, then the same for that
        directory, and so on as far as the keys go (not through hardlinks)."""
        out: list[tuple[Spec, bytes]] = []
        with self._lock:
            node = self._nodes.get(ino)
            while node is not None and len(node.key) == 2 and isinstance(node.key[1], bytes) \
                    and isinstance(node.key[0], int):
                parent = self._nodes.get(node.key[0])
                if parent is None:
                    break
                out.append((parent.spec, node.key[1]))
                node = parent
        return out

    def path(self, ino: int) -> str:
        """Where an inode was found, for log lines (from the keys, as far as they go)."""
        names: list[bytes] = []
        with self._lock:
            node = self._nodes.get(ino)
            while node is not None and len(node.key) == 2 and isinstance(node.key[1], bytes):
                names.append(node.key[1])
                parent = node.key[0]
                node = self._nodes.get(parent) if isinstance(parent, int) else None
            if node is not None and node.ino != ROOT and isinstance(node.spec, Stored):
                names.append(node.spec.entry.name)  # a hardlink: the name it was met under
        return os.fsdecode(b"/".join(reversed(names)))
