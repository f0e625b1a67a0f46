"""``repofs prune``: free the space of forgotten snapshots and unreferenced data (admin only)."""

from __future__ import annotations

from pathlib import Path

import click
from repofs_cli import output
from repofs_cli.common import json_option, open_repo, repo_option

from repofs import audit, retention
from repofs.adminstore import open_admin_store
from repofs.prune import DEFAULT_GRACE_NS, prune


def _grace(ctx: click.Context, param: click.Parameter, value: str) -> int:
    if value.strip() in ("0", "0h", "0d"):
        return 0
    try:
        return retention.parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command("prune")
@repo_option
@click.option("--grace", default=f"{DEFAULT_GRACE_NS // 3600 // 10**9}h", show_default=True,
              callback=_grace, metavar="DURATION",
              help="Delete only what a prune condemned at least this long ago (0: at the "
                   "next run; safe only when no create can be running).")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@json_option
def prune_cmd(repo: Path, grace: int, dry_run: bool, as_json: bool) -> None:
    """Delete what no kept snapshot needs: run it on the storage host, with the admin key.

    Each run deletes what an earlier run condemned at least --grace ago (unless
    a snapshot made since needs it), then repacks mostly-empty packs and
    condemns what is unused now. Creates may run meanwhile. See repofs-prune(1).
    """
    store = open_admin_store(repo, "prune")
    r = open_repo(repo, admin=True)
    r.store = store
    progress = output.Progress()
    report = prune(r, grace_ns=grace, dry_run=dry_run,
                   progress=progress.show if progress.enabled else None)
    progress.done()
    audit.event("prune", repo=r.id, key=r.keys.key_name, path=repo.absolute(), dry_run=dry_run,
                deleted_packs=len(report.deleted_packs), bytes_deleted=report.bytes_deleted,
                deleted_snapshots=len(report.deleted_snapshots),
                condemned_packs=len(report.condemned_packs), record=report.condemn_record)
    for note in report.notes:
        output.warn(note)
    if as_json:
        output.emit_json({"dry_run": dry_run, **{k: v for k, v in vars(report).items()
                                                  if k != "notes"}, "notes": report.notes})
        return
    would = "would " if dry_run else ""
    click.echo(f"{would}delete {len(report.deleted_snapshots)} forgotten snapshots, "
               f"{len(report.deleted_packs)} packs ({output.human_size(report.bytes_deleted)})"
               f" and {len(report.deleted_segments)} index segments")
    if report.reprieved:
        click.echo(f"kept {len(report.reprieved)} condemned packs that snapshots made since "
                   "still need (their data is repacked)")
    click.echo(f"{would}repack {len(report.repacked)} packs; {would}condemn "
               f"{len(report.condemned_packs)} packs "
               f"({output.human_size(report.bytes_condemned)}) and "
               f"{len(report.condemned_segments)} index segments"
               + (f" (record {report.condemn_record[:8]}): a prune after the grace period "
                  "deletes them" if report.condemn_record else ""))


COMMANDS = [prune_cmd]
