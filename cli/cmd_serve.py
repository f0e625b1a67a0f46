"""``repofs serve``: the server end of ssh:// repositories, run by ssh (a forced command)."""

from __future__ import annotations

import os
import sys

import click
from repofs_cli import output
from repofs_cli.outcome import Outcome

from repofs import audit
from repofs.server import Server, ServeRefused, select_path


@click.command("serve")
@click.argument("path", required=False)
@click.option("--restrict-to-path", "restrict", metavar="DIR",
              help="Serve only DIR, or the directory below it the client asks for.")
@click.option("--immutable", is_flag=True,
              help="Set the immutable flag (chattr +i) on every object once it is complete; "
                   "refuse to start without CAP_LINUX_IMMUTABLE.")
def serve(path: str | None, restrict: str | None, immutable: bool) -> Outcome:
    """Serve the repository at PATH over standard input and output, append-only.

    Meant as an SSH forced command in authorized_keys:

    \b
      command="repofs serve --restrict-to-path /srv/repofs/web1",restrict ssh-ed25519 AAAA...

    The client can create new objects, read, list and stat; nothing can be
    deleted, renamed or overwritten. See repofs-serve(1).
    """
    # The protocol owns stdout: anything printed by mistake goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        root = select_path(path, restrict, os.environ.get("SSH_ORIGINAL_COMMAND"))
        server = Server(root, sys.stdin.buffer, out, make_immutable=immutable)
        server.prepare()
    except ServeRefused as e:
        audit.refusal("serve", reason="start", detail=str(e)[:300])
        output.error(f"serve: {e}")
        return Outcome.FAILED
    try:
        return Outcome.OK if server.run() else Outcome.FAILED
    except BrokenPipeError:
        return Outcome.OK  # the client went away


COMMANDS = [serve]
