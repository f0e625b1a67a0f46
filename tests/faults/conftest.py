"""Report how many fault-injection points the run exercised (the issue asks for the number)."""

from __future__ import annotations

import re

import pytest

from tests.faults.faulty import POINTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if POINTS:
        kinds = sorted({p.split(":")[0] for p in POINTS})
        ops = sorted({re.sub(r"-gen\d+$", "", p.split(":")[1]) for p in POINTS
                      if p.count(":") >= 2})
        terminalreporter.write_line(
            f"fault injection: {len(POINTS)} injection points exercised ({', '.join(kinds)}) "
            f"over {', '.join(ops)}")
