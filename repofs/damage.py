"""What a reader met and left out: the one rule for quarantining a damaged object.

Why one place: every reader meets objects it cannot verify (a key file, an index
segment, a snapshot, a signed record, a tree, a pack), and for all of them the rule
is the same (repofs-format(5), DAMAGE): leave the object out of what the command
works on, name it once (kind, object name, what is wrong, what was left out), and go
on with everything else. A command that finished having left something out ends
with warnings (exit 1); the CLI learns that from this log, not from each reader.
Refusing instead would let one planted or rotten object lock every reader out of
every backup (threat model A3, guarantee 11).

The library prints nothing: a ``listener`` (the CLI's warning printer) hears each
new report as it happens, so a long restore names damage when it meets it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from repofs.errors import IntegrityError


@dataclass(frozen=True, slots=True)
class Damage:
    """One object left out: ``kind`` and ``object_id`` name it, ``detail`` says what is
    wrong with it, ``consequence`` what the command did about it."""

    kind: str
    object_id: str
    detail: str
    consequence: str
    message: str = ""  # the error as it reads: "<kind> <id> is corrupt or tampered: ..."

    def line(self) -> str:
        said = self.message or f"{self.kind} {self.object_id} is corrupt or tampered: " \
                               f"{self.detail}"
        return f"{said} ({self.consequence})"


class DamageLog:
    """Every object one command left out, each reported once, in the order met.

    Thread-safe: restore and the mount read in worker threads.
    """

    def __init__(self, listener: Callable[[Damage], None] | None = None) -> None:
        self.listener = listener
        self._seen: dict[tuple[str, str, str], Damage] = {}
        self._lock = threading.Lock()

    def report(self, error: IntegrityError, consequence: str) -> Damage:
        """Record that the object ``error`` names was left out; tell the listener once."""
        key = (error.kind, error.object_id, error.detail)
        with self._lock:
            known = self._seen.get(key)
            if known is not None:
                return known
            damage = self._seen[key] = Damage(error.kind, error.object_id, error.detail,
                                              consequence, str(error))
        if self.listener is not None:
            self.listener(damage)
        return damage

    def __iter__(self) -> Iterator[Damage]:
        with self._lock:
            return iter(list(self._seen.values()))

    def __len__(self) -> int:
        return len(self._seen)

    def __bool__(self) -> bool:
        return bool(self._seen)


__all__ = ["Damage", "DamageLog"]
