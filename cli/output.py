"""Printing: human tables, JSON for scripts, and a progress line only on a terminal."""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
from typing import Any

import click


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def local_time(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def show_path(path: bytes) -> str:
    """A stored path as text; bytes that are not UTF-8 are shown escaped."""
    return path.decode("utf-8", errors="backslashreplace")


def json_path(path: bytes) -> str:
    """A stored path for JSON: bytes that are not UTF-8 become lone surrogates (PEP 383),
    written as \\udcXX, so every name is distinct and os.fsencode() gives its bytes back."""
    return path.decode("utf-8", errors="surrogateescape")


_SURROGATE = re.compile("[\udc80-\udcff]")


def emit_json(obj: Any) -> None:
    text = json.dumps(obj, ensure_ascii=False, sort_keys=False)
    click.echo(_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


_warned = 0


def warn(message: str) -> None:
    """One warning line on standard error; a command that printed one exits at least 1."""
    global _warned  # noqa: PLW0603 - one process, one command: the count main reads
    _warned += 1
    click.echo(f"repofs: warning: {message}", err=True)


def note(message: str) -> None:
    """Something the user should know that is no failure: it leaves the exit status alone."""
    click.echo(f"repofs: note: {message}", err=True)


def warnings_shown() -> int:
    return _warned


def error(message: str) -> None:
    """The one form of an error line (repofs(1), DIAGNOSTICS)."""
    click.echo(f"repofs: error: {message}", err=True)


class Progress:
    """A single status line rewritten in place on a TTY; silent otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty() and not os.environ.get("REPOFS_NO_PROGRESS")
        self._shown = False

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        width = 79
        click.echo("\r" + text[:width].ljust(width), err=True, nl=False)
        self._shown = True

    def done(self) -> None:
        if self._shown:
            click.echo("\r" + " " * 79 + "\r", err=True, nl=False)
            self._shown = False
