"""Where a passphrase comes from: never argv.

Order: ``REPOFS_PASSPHRASE``, ``REPOFS_PASSPHRASE_FILE``, ``REPOFS_PASSCOMMAND``
(run without a shell; its first output line), then a prompt on a TTY.

The same three sources exist with the prefixes ``REPOFS_ADMIN_`` (the admin
key: init makes it, forget, prune and key remove use it, falling back to the
usual sources) and ``REPOFS_NEW_`` (the passphrase of a key file being added).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import click

from repofs.errors import RepofsError


class NoPassphrase(RepofsError):
    """No passphrase source is set and there is no terminal to ask on."""


def get(confirm: bool = False, prefix: str = "REPOFS", label: str = "Passphrase") -> bytes:
    found = _from_environment(prefix)
    if found is not None:
        return found
    if sys.stdin.isatty():
        value: str = click.prompt(label, hide_input=True,
                                  confirmation_prompt=f"Repeat {label.lower()}" if confirm
                                  else False, err=True)
        return value.encode()
    raise NoPassphrase(f"no passphrase: set {prefix}_PASSPHRASE, {prefix}_PASSPHRASE_FILE or "
                       f"{prefix}_PASSCOMMAND, or run on a terminal")


def _from_environment(prefix: str) -> bytes | None:
    env = os.environ.get(f"{prefix}_PASSPHRASE")
    if env:  # an empty variable counts as unset, never as an empty passphrase
        return env.encode()
    path = os.environ.get(f"{prefix}_PASSPHRASE_FILE")
    if path:
        try:
            with open(path, "rb") as f:
                return f.readline().rstrip(b"\r\n")
        except OSError as e:
            raise NoPassphrase(f"cannot read {prefix}_PASSPHRASE_FILE: {e.strerror}") from None
    cmd = os.environ.get(f"{prefix}_PASSCOMMAND")
    if cmd:
        try:
            out = subprocess.run(shlex.split(cmd), stdout=subprocess.PIPE, check=True,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError) as e:
            raise NoPassphrase(f"{prefix}_PASSCOMMAND failed ({type(e).__name__})") from None
        return out.stdout.split(b"\n", 1)[0].rstrip(b"\r")
    return None


def admin() -> bytes:
    """The passphrase of an admin command: the admin sources first, then the usual ones."""
    found = _from_environment("REPOFS_ADMIN")
    return found if found is not None else get(label="Admin passphrase")


def admin_for_init() -> bytes | None:
    """The admin passphrase for a new repository, or None: no admin key (never prunable)."""
    found = _from_environment("REPOFS_ADMIN")
    if found is not None or not sys.stdin.isatty():
        return found
    value: str = click.prompt("Admin passphrase, for forget and prune (empty: no admin key, "
                              "the repository can never be pruned)", hide_input=True,
                              default="", show_default=False,
                              confirmation_prompt="Repeat admin passphrase", err=True)
    return value.encode() or None


def new() -> bytes:
    """The passphrase of a key file being added (``REPOFS_NEW_*`` or a prompt, twice)."""
    return get(confirm=True, prefix="REPOFS_NEW", label="New passphrase")
