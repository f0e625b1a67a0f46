"""``repofs forget``: remove snapshots by a retention policy (or by id), with an admin key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from repofs_cli import output
from repofs_cli.common import json_option, open_repo, repo_option

from repofs import audit, forget, retention, signed
from repofs.adminstore import open_admin_store
from repofs.errors import RemoteError
from repofs.location import is_s3
from repofs.model import Snapshot

_GROUPS = {"host,paths": ("host", "paths"), "host": ("host",), "paths": ("paths",),
           "none": ()}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    if value is None:
        return 0
    try:
        return retention.parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _group_name(g: retention.Group) -> str:
    parts = []
    if g.host is not None:
        parts.append(f"host {g.host}")
    if g.paths is not None:
        parts.append("paths " + " ".join(output.show_path(p) for p in g.paths))
    return ", ".join(parts) or "all snapshots"


def _time(s: Snapshot) -> str:
    """A snapshot's time; an object forgotten by name whose head does not decode has none."""
    return "unknown" if signed.is_unknown(s.id, s.head) else output.local_time(s.head.time_ns)


def _verdict_json(v: retention.Verdict) -> dict[str, Any]:
    s = v.snapshot
    return {"id": s.id, "short_id": s.short_id, "time": _time(s),
            "seq": s.head.seq, "keep": v.keep, "reasons": list(v.reasons)}


@click.command("forget")
@repo_option
@click.argument("snapshots", nargs=-1)
@click.option("--keep-last", type=click.IntRange(0), default=0, help="Keep the N newest.")
@click.option("--keep-hourly", type=click.IntRange(0), default=0,
              help="Keep the newest of each of the N newest hours.")
@click.option("--keep-daily", type=click.IntRange(0), default=0,
              help="Keep the newest of each of the N newest days.")
@click.option("--keep-weekly", type=click.IntRange(0), default=0,
              help="Keep the newest of each of the N newest ISO weeks.")
@click.option("--keep-monthly", type=click.IntRange(0), default=0,
              help="Keep the newest of each of the N newest months.")
@click.option("--keep-yearly", type=click.IntRange(0), default=0,
              help="Keep the newest of each of the N newest years.")
@click.option("--keep-within", metavar="DURATION", callback=_duration,
              help="Keep every snapshot at most DURATION (e.g. 7d, 2w, 1y6m) older than "
                   "the group's newest.")
@click.option("--keep-tag", "keep_tags", multiple=True, metavar="TAG",
              help="Keep every snapshot with TAG (repeatable).")
@click.option("--group-by", type=click.Choice(sorted(_GROUPS)), default="host,paths",
              show_default=True, help="Apply the policy to each group separately.")
@click.option("--host", "hosts", multiple=True, help="Only consider snapshots of HOST.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would go, and why; change nothing.")
@json_option
def forget_cmd(repo: Path, snapshots: tuple[str, ...], keep_last: int, keep_hourly: int,
               keep_daily: int, keep_weekly: int, keep_monthly: int, keep_yearly: int,
               keep_within: int, keep_tags: tuple[str, ...], group_by: str,
               hosts: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Remove SNAPSHOTS, or every snapshot the --keep rules do not keep.

    Writes one removal record signed with the admin key (REPOFS_ADMIN_PASSPHRASE);
    no snapshot is rewritten or deleted: readers hide the removed ones at once,
    `repofs prune` frees their space later. Snapshots whose date or place in the
    history cannot be believed are kept and not counted (see repofs-forget(1)).
    """
    policy = retention.Policy(last=keep_last, hourly=keep_hourly, daily=keep_daily,
                              weekly=keep_weekly, monthly=keep_monthly, yearly=keep_yearly,
                              within_ns=keep_within, tags=frozenset(keep_tags))
    if snapshots and (not policy.empty or hosts):
        raise click.UsageError("give either SNAPSHOTS or --keep rules, not both")
    if not snapshots and policy.empty:
        raise click.UsageError("no --keep rule and no SNAPSHOTS: that would remove everything")
    r = open_repo(repo, admin=True)
    plan = (forget.plan_ids(r, snapshots) if snapshots else
            forget.plan_policy(r, policy, _GROUPS[group_by], hosts))
    names = [] if dry_run else forget.commit(r, plan)
    renewed = 0
    if is_s3(repo) and not dry_run:  # Object Lock: with the admin's S3 credentials
        progress = output.Progress()
        try:
            renewed = forget.renew_locks(r, open_admin_store(repo, "forget"),
                                         progress.show if progress.enabled else None)
        except RemoteError as e:  # the removal is written: say what is left undone
            output.warn(f"the Object Lock was not renewed (the admin's S3 profile: "
                        f"REPOFS_S3_ADMIN_PROFILE): {e}")
        progress.done()
        if renewed:
            output.note(f"renewed the Object Lock of {renewed} objects")
    audit.event("forget", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                removed=sorted(plan.remove), records=names, dry_run=dry_run)
    if as_json:
        output.emit_json({"dry_run": dry_run, "removed": sorted(plan.remove),
                          "records": names, "groups": [
                              {"host": g.host, "paths": None if g.paths is None else
                               [output.json_path(p) for p in g.paths],
                               "snapshots": [_verdict_json(v) for v in g.verdicts]}
                              for g in plan.groups]})
        return
    for g in plan.groups:
        click.echo(_group_name(g))
        for v in g.verdicts:
            s = v.snapshot
            click.echo(f"  {'keep  ' if v.keep else 'remove'}  {s.short_id}  "
                       f"{_time(s)}  {'; '.join(v.reasons)}")
    n = len(plan.remove)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {n} snapshot{'' if n == 1 else 's'}"
               + (f" (removal record {names[0][:8]}); run repofs prune to free space"
                  if names else ""))


COMMANDS = [forget_cmd]
