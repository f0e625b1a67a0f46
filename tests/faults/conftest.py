"""Report how many fault-injection points the run exercised (the issue asks for the number)."""

from __future__ import annotations

import pytest

from tests.faults.faulty import POINTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if POINTS:
        kinds = sorted({p.split(":")[0] for p in POINTS})
        terminalreporter.write_line(
            f"fault injection: {len(POINTS)} injection points exercised ({', '.join(kinds)})")
