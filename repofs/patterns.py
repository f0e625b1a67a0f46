"""Exclude and include patterns: shell globs over absolute paths (as restic and borg take them).

- A pattern without ``/`` matches any single path component: ``*.o``, ``.cache``.
- A pattern with ``/`` matches a whole path from the root: ``/home/*/.cache``.
- ``*`` and ``?`` never cross ``/``; ``**`` crosses any number of directories.
- A matching directory is excluded with everything under it.
Paths and patterns are bytes, so names that are not UTF-8 match too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def _translate(pattern: bytes) -> bytes:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i : i + 1]
        if pattern[i : i + 3] == b"**/":
            out.append(b"(?:.*/)?")
            i += 3
            continue
        if pattern[i : i + 2] == b"**":
            out.append(b".*")
            i += 2
            continue
        if c == b"*":
            out.append(b"[^/]*")
        elif c == b"?":
            out.append(b"[^/]")
        elif c == b"[":
            j = pattern.find(b"]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j].replace(b"\\", b"\\\\").replace(b"[", b"\\[")
                if body.startswith(b"!"):
                    body = b"^/" + body[1:]  # like * and ?, a class never matches '/'
                cls = b"[" + body + b"]"
                try:
                    re.compile(cls)
                except re.error:  # "[]", "[z-a]": no usable class, so the bracket is literal
                    cls = re.escape(pattern[i : j + 1])
                out.append(cls)
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return b"".join(out)


class PatternSet:
    """A set of patterns; ``matches(path)`` is true if any matches the path."""

    def __init__(self, patterns: Iterable[bytes]) -> None:
        anchored, component = [], []
        for p in patterns:
            p = p.rstrip(b"/") or p
            if not p:
                continue
            if b"/" in p:
                anchored.append(_translate(p if p.startswith(b"/") else b"/" + p))
            else:
                component.append(_translate(p))
        self._anchored = re.compile(b"|".join(anchored), re.DOTALL) if anchored else None
        self._component = re.compile(b"|".join(component), re.DOTALL) if component else None
        self.patterns_count = len(anchored) + len(component)

    def __bool__(self) -> bool:
        return self.patterns_count > 0

    def matches(self, path: bytes) -> bool:
        """``path`` is absolute, e.g. ``b"/home/alice/x.o"``."""
        if self._component is not None:
            name = path.rsplit(b"/", 1)[-1]
            if self._component.fullmatch(name):
                return True
        return self._anchored is not None and self._anchored.fullmatch(path) is not None

    def matches_or_under(self, path: bytes) -> bool:
        """True if the path or any of its parent directories matches."""
        parts = path.split(b"/")
        return any(self.matches(b"/".join(parts[:i]) or b"/") for i in range(2, len(parts) + 1))


def read_pattern_file(data: bytes) -> list[bytes]:
    """One pattern a line; blank lines and lines starting with ``#`` are skipped."""
    return [ln.strip() for ln in data.splitlines()
            if ln.strip() and not ln.strip().startswith(b"#")]
