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
    if env is not None:  # set, even empty: an empty passphrase (repofs(1), ENVIRONMENT)
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
        return _run_passcommand(f"{prefix}_PASSCOMMAND", cmd)
    return None


def _run_passcommand(variable: str, cmd: str) -> bytes:
    """The first output line of the command (no shell); its failure said plainly: whether
    it could not run, died of a signal or exited non-zero (never its output: a secret)."""
    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        raise NoPassphrase(f"{variable} cannot be parsed: {e}") from None
    if not argv:
        raise NoPassphrase(f"{variable} holds no command")
    try:
        out = subprocess.run(argv, check=False, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise NoPassphrase(f"{variable}: cannot run {argv[0]!r}: "
                           f"{e.strerror or type(e).__name__}") from None
    if out.returncode < 0:
        raise NoPassphrase(f"{variable}: {argv[0]!r} was killed by signal {-out.returncode}")
    if out.returncode != 0:
        raise NoPassphrase(f"{variable}: {argv[0]!r} exited with status {out.returncode}")
    return out.stdout.split(b"\n", 1)[0].rstrip(b"\r")


def admin() -> bytes:
    """The passphrase of an admin command: the admin sources first, then the usual ones."""
    found = _from_environment("REPOFS_ADMIN")
    return found if found is not None else get(label="Admin passphrase")


def admin_for_init() -> bytes | None:
    """The admin passphrase for a new repository, or None: no admin key (never prunable)."""
    found = _from_environment("REPOFS_ADMIN")
    if found is not None or not sys.stdin.isatty():
        return found or None  # empty, like an empty answer: no admin key
    value: str = click.prompt("Admin passphrase, for forget and prune (empty: no admin key, "
                              "the repository can never be pruned)", hide_input=True,
                              default="", show_default=False,
                              confirmation_prompt="Repeat admin passphrase", err=True)
    return value.encode() or None


def new() -> bytes:
    """The passphrase of a key file being added (``REPOFS_NEW_*`` or a prompt, twice)."""
    return get(confirm=True, prefix="REPOFS_NEW", label="New passphrase")
