"""``repofs init``: create an encrypted repository."""

from __future__ import annotations

from pathlib import Path

import click
from repofs_cli import output, passphrase
from repofs_cli.common import json_option, repo_option

from repofs import audit, keyring, keys
from repofs.location import is_s3, set_object_lock
from repofs.repository import Repository


@click.command("init")
@repo_option
@click.option("--object-lock", "lock_days", type=click.IntRange(1, 36500), metavar="DAYS",
              help="s3:// only: lock every object for DAYS from its creation (the bucket's "
                   "default Object Lock retention; needs the admin's S3 credentials).")
@click.option("--governance", is_flag=True,
              help="With --object-lock: GOVERNANCE mode instead of COMPLIANCE.")
@json_option
def init(repo: Path, lock_days: int | None, governance: bool, as_json: bool) -> None:
    """Create a new, empty, encrypted repository at --repo.

    Writes a full key file under the passphrase and, if an admin passphrase is
    given (REPOFS_ADMIN_PASSPHRASE, or asked on a terminal), an admin key file
    for forget and prune. Without one, nobody can ever forget or prune.
    """
    secret = passphrase.get(confirm=True)
    admin = passphrase.admin_for_init()
    if admin is not None and admin == secret:
        raise click.UsageError("the admin passphrase must differ from the passphrase: "
                               "backup hosts hold the passphrase, and must not hold admin")
    if governance and lock_days is None:
        raise click.UsageError("--governance goes with --object-lock DAYS")
    if lock_days is not None:
        if not is_s3(str(repo)):
            raise click.UsageError("--object-lock needs an s3:// repository")
        set_object_lock(str(repo), lock_days, governance)  # before the first object
    r = Repository.init(repo, secret, admin_passphrase=admin)
    admin_key = next((k.name for k in keyring.list_keys(r)
                      if k.info is not None and k.info.capability == keys.CAP_ADMIN), None)
    audit.event("init", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                admin_key=admin_key)
    if admin_key is None:
        output.note("no admin passphrase (REPOFS_ADMIN_PASSPHRASE): this repository has no "
                    "admin key, so snapshots can never be forgotten or pruned")
    if as_json:
        output.emit_json({"repository": str(repo), "id": r.id, "key": r.keys.key_name,
                          "admin_key": admin_key})
    else:
        click.echo(f"created repository {r.id[:8]} at {repo}")
        local = isinstance(repo, Path)
        where = repo / "keys" / r.keys.key_name if local else \
            f"keys/{r.keys.key_name} (in the repository, on the server)"
        click.echo(f"key file: {where}")
        click.echo("Reading the backups needs both this key file and the passphrase: "
                   "without\neither there is no recovery. Keep the passphrase safe, and a "
                   "copy of the key file\napart from the repository (it is useless without "
                   "the passphrase), for example:")
        click.echo(f"  cp {where} /media/usb/" if local else
                   f"  scp SERVER:REPOSITORY/keys/{r.keys.key_name} /media/usb/")
        if admin_key is not None:
            click.echo(f"admin key {admin_key[:8]}: give its passphrase to no backup host")


COMMANDS = [init]
