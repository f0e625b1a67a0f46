"""``repofs key list|add|passwd|remove|export|import``: the key files of a repository."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import click
from repofs_cli import output, passphrase
from repofs_cli.common import json_option, open_repo, repo_option

from repofs import audit, keyexport, keyring, keys
from repofs.adminstore import open_admin_store
from repofs.repository import Repository


@click.group("key")
@click.option("-r", "--repo", "repo", metavar="REPOSITORY",
              help="The repository, for every subcommand (as their own -r).")
@click.pass_context
def key(ctx: click.Context, repo: str | None) -> None:
    """Manage key files: list, add, change a passphrase, remove, export, import."""
    if repo is not None:  # `repofs key -r REPO add` as well as `repofs key add -r REPO`
        ctx.default_map = {name: {"repo": repo} for name in ("list", "add", "passwd", "remove",
                                                             "export", "import")}


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


@key.command("export")
@repo_option
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE (created with mode 0600, never overwritten); default: "
                   "standard output.")
@click.option("--paper", is_flag=True,
              help="Numbered lines of hex with a checksum each, to print and type back.")
def export_cmd(repo: Path, out: Path | None, paper: bool) -> None:
    """Export the key file the passphrase opens, still sealed under that passphrase.

    Keep it apart from the repository: with it and the passphrase, `repofs key
    import` makes a repository whose key files were lost readable again.
    """
    r = open_repo(repo, index=False)
    exported = keyexport.export(r)
    text = keyexport.to_paper(exported) if paper else keyexport.to_text(exported)
    if out is None:
        click.echo(text, nl=False)
    else:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    audit.event("key-export", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                paper=paper, output=str(out) if out else "-")


def _typed_paper() -> str:
    """The paper form typed at a terminal, each line checked as soon as it is entered."""
    click.echo(f"Type the lines of the paper form ({keyexport.PAPER_TITLE.split(':')[0]}), "
               "each with its number and checksum; an empty line ends.", err=True)
    lines: list[str] = []
    while True:
        line = click.prompt(f"line {len(lines) + 1:03d}", default="", show_default=False,
                            err=True)
        if not line.strip():
            return "\n".join(lines)
        try:
            keyexport.check_paper_line(line)
        except ValueError as e:
            click.echo(f"  {e}: type it again", err=True)
            continue
        lines.append(line)


@key.command("import")
@repo_option
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@json_option
def import_cmd(repo: Path, file: Path | None, as_json: bool) -> None:
    """Put an exported key file (FILE, or standard input) back into the repository.

    Either form of `repofs key export`; at a terminal without FILE, the paper
    form is typed line by line. The key file must belong to this repository
    and open with the passphrase. Needs no key file in the repository.
    """
    if file is not None and str(file) != "-":
        with open(file, "rb") as f:
            raw = f.read(keyexport.MAX_TEXT + 1)
        text = raw.decode("utf-8", errors="replace")
    elif sys.stdin.isatty():
        text = _typed_paper()
    else:
        text = sys.stdin.buffer.read(keyexport.MAX_TEXT + 1).decode("utf-8", errors="replace")
    exported = keyexport.parse(text)
    added = keyexport.restore(repo, exported, passphrase.get())
    audit.event("key-import", repo=exported.repo_id.hex(), path=repo.absolute(),
                imported_key=exported.name, added=added)
    if as_json:
        output.emit_json({"key": exported.name, "added": added})
    elif added:
        click.echo(f"imported key file {exported.name[:8]}")
    else:
        click.echo(f"key file {exported.name[:8]} is already in the repository")


COMMANDS = [key]
