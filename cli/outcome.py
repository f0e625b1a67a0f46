"""What a command reports at its end; ``repofs_cli.main`` alone turns it into an exit code.

Why an enum and not numbers: one rule, one place. A command says how it ended; the
exit status for that is chosen in ``main`` (repofs(1), EXIT STATUS), so no command
can drift from the documented codes.
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    """How a command ended.

    ``OK``: everything asked was done. ``WARNINGS``: the command finished, but left
    something out or could not do part of it; each is named on standard error (a
    warning printed with ``output.warn`` makes any outcome at least this).
    ``FAILED``: what was asked could not be done, or what the user asked for is itself
    unusable; the reason is one line on standard error.
    """

    OK = "ok"
    WARNINGS = "warnings"
    FAILED = "failed"


__all__ = ["Outcome"]
