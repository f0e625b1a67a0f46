"""``repofs key list|add|passwd|remove``: the key files of a repository."""

from __future__ import annotations

import datetime
from pathlib import Path

import click
from repofs_cli import output, passphrase
from repofs_cli.common import json_option, open_repo, repo_option

from repofs import audit, keyring, keys
from repofs.adminstore import open_admin_store
from repofs.repository import Repository


@click.group("key")
@click.option("-r", "--repo", "repo", metavar="REPOSITORY",
              help="The repository, for every subcommand (as their own -r).")
@click.pass_context
def key(ctx: click.Context, repo: str | None) -> None:
    """Manage key files: list, add, change a passphrase, remove."""
    if repo is not None:  # `repofs key -r REPO add` as well as `repofs key add -r REPO`
        ctx.default_map = {name: {"repo": repo} for name in ("list", "add", "passwd", "remove")}


def _created(ts: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return "?"


@key.command("list")
@repo_option
@json_option
def list_cmd(repo: Path, as_json: bool) -> None:
    """List the key files, marking the one the passphrase opened.

    Capabilities and dates come from each file's outer record, which is only
    authenticated when the file is opened with its passphrase.
    """
    r = open_repo(repo, index=False)
    entries = keyring.list_keys(r)
    audit.event("key-list", repo=r.id, key=r.keys.key_name, path=repo.absolute())
    if as_json:
        output.emit_json([{
            "name": e.name, "current": e.current, "problem": e.problem,
            "capability": e.info.capability if e.info else None,
            "created": _created(e.info.created) if e.info else None,
            "kdf": {"alg": "argon2id", "t": e.info.t, "m": e.info.m, "p": e.info.p}
            if e.info else None} for e in entries])
        return
    for e in entries:
        mark = "*" if e.current else " "
        if e.info is None:
            click.echo(f"{mark} {e.name[:8]}  unusable: {e.problem}")
        else:
            i = e.info
            click.echo(f"{mark} {e.name[:8]}  {i.capability:<10}  {_created(i.created)}  "
                       f"argon2id t={i.t} m={i.m} KiB p={i.p}")
    click.echo(f"{len(entries)} key files (* = the one this passphrase opens)")


def _report(r: Repository, name: str, capability: str, as_json: bool, event: str,
            repo: Path) -> None:
    audit.event(event, repo=r.id, key=r.keys.key_name, path=repo.absolute(), new_key=name,
                capability=capability)
    if as_json:
        output.emit_json({"key": name, "capability": capability,
                          "opened_with": r.keys.key_name})
    else:
        click.echo(f"added {capability} key file {name[:8]}")


@key.command("add")
@repo_option
@click.option("--write-only", "capability", flag_value=keys.CAP_WRITE_ONLY,
              help="Can create snapshots (with dedup); cannot read any of them.")
@click.option("--full", "capability", flag_value=keys.CAP_FULL, default=True,
              help="Can read and write (the default).")
@click.option("--admin", "capability", flag_value=keys.CAP_ADMIN,
              help="Can also forget and prune (only an admin key can add one).")
@json_option
def add(repo: Path, capability: str, as_json: bool) -> None:
    """Add a key file under a new passphrase (REPOFS_NEW_PASSPHRASE, or asked twice).

    A key hands out at most its own capability. Nothing is re-encrypted.
    """
    r = open_repo(repo, index=False)
    name = keyring.add(r, passphrase.new(), capability)
    _report(r, name, capability, as_json, "key-add", repo)


@key.command("passwd")
@repo_option
@json_option
def passwd(repo: Path, as_json: bool) -> None:
    """Add a key file like the one in use under a new passphrase.

    The old key file keeps opening with the old passphrase until an admin
    removes it with `repofs key remove`; nothing is re-encrypted.
    """
    r = open_repo(repo, index=False)
    name = keyring.passwd(r, passphrase.new())
    _report(r, name, r.keys.capability, as_json, "key-passwd", repo)
    if not as_json:
        click.echo(f"the old key file {r.keys.key_name[:8]} still opens with the old "
                   f"passphrase; an admin removes it with: repofs key remove "
                   f"{r.keys.key_name[:8]}")


@key.command("remove")
@repo_option
@click.argument("name")
@json_option
def remove(repo: Path, name: str, as_json: bool) -> None:
    """Delete the key file NAME (full name or prefix of at least 4 digits).

    Needs an admin key (REPOFS_ADMIN_PASSPHRASE) and direct access to the
    repository's files: it refuses ssh:// repositories.
    """
    store = open_admin_store(repo, "key remove")
    r = open_repo(repo, index=False, admin=True)
    r.store = store
    target = keyring.resolve_name(r, name)
    keyring.remove(r, store, target)
    audit.event("key-remove", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                removed_key=target)
    if as_json:
        output.emit_json({"removed": target})
    else:
        click.echo(f"removed key file {target[:8]}")


COMMANDS = [key]
