"""Where a passphrase comes from: never argv.

Order: ``REPOFS_PASSPHRASE``, ``REPOFS_PASSPHRASE_FILE``, ``REPOFS_PASSCOMMAND``
(run without a shell; its first output line), then a prompt on a TTY.
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


def get(confirm: bool = False) -> bytes:
    env = os.environ.get("REPOFS_PASSPHRASE")
    if env:  # an empty variable counts as unset, never as an empty passphrase
        return env.encode()
    path = os.environ.get("REPOFS_PASSPHRASE_FILE")
    if path:
        try:
            with open(path, "rb") as f:
                return f.readline().rstrip(b"\r\n")
        except OSError as e:
            raise NoPassphrase(f"cannot read REPOFS_PASSPHRASE_FILE: {e.strerror}") from None
    cmd = os.environ.get("REPOFS_PASSCOMMAND")
    if cmd:
        try:
            out = subprocess.run(shlex.split(cmd), stdout=subprocess.PIPE, check=True,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError) as e:
            raise NoPassphrase(f"REPOFS_PASSCOMMAND failed ({type(e).__name__})") from None
        return out.stdout.split(b"\n", 1)[0].rstrip(b"\r")
    if sys.stdin.isatty():
        value: str = click.prompt("Passphrase", hide_input=True,
                                  confirmation_prompt="Repeat passphrase" if confirm else False,
                                  err=True)
        return value.encode()
    raise NoPassphrase("no passphrase: set REPOFS_PASSPHRASE, REPOFS_PASSPHRASE_FILE or "
                       "REPOFS_PASSCOMMAND, or run on a terminal")
