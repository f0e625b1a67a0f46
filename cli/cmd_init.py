"""``repofs init``: create an encrypted repository."""

from __future__ import annotations

from pathlib import Path

import click
from repofs_cli import output, passphrase
from repofs_cli.common import json_option, repo_option

from repofs import audit
from repofs.repository import Repository


@click.command("init")
@repo_option
@json_option
def init(repo: Path, as_json: bool) -> None:
    """Create a new, empty, encrypted repository at --repo."""
    r = Repository.init(repo, passphrase.get(confirm=True))
    audit.event("init", repo=r.id, key=r.keys.key_name, path=repo.absolute())
    if as_json:
        output.emit_json({"repository": str(repo), "id": r.id, "key": r.keys.key_name})
    else:
        click.echo(f"created repository {r.id[:8]} at {repo}")
        click.echo("keep the passphrase safe: without it the backups cannot be read")


COMMANDS = [init]
