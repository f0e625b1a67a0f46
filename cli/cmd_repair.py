"""``repofs repair``: list again, in new index segments, the packs no usable segment lists."""

from __future__ import annotations

from pathlib import Path

import click
from repofs_cli import output
from repofs_cli.common import json_option, open_repo, repo_option
from repofs_cli.outcome import Outcome

from repofs import audit
from repofs.recovery import repair


@click.command("repair")
@repo_option
@click.option("-n", "--dry-run", is_flag=True,
              help="Show what would be listed again; write nothing.")
@json_option
def repair_cmd(repo: Path, dry_run: bool, as_json: bool) -> Outcome:
    """Make blob locations recovered from the packs permanent: append-only.

    Packs that no usable index segment lists (their segment was damaged, planted
    over or lost, or a create was interrupted) are read by their trailers, and
    written into new index segments. Nothing is deleted or rewritten: check
    keeps naming a damaged segment. See repofs-repair(1).
    """
    r = open_repo(repo)
    report = repair(r, dry_run=dry_run)
    audit.event("repair", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                dry_run=dry_run, packs=len(report.recovered),
                segments=len(report.segments_written))
    blobs = sum(report.recovered.values())
    if as_json:
        output.emit_json({"dry_run": dry_run, "damaged_segments": report.damaged_segments,
                          "unlisted_packs": report.unlisted,
                          "recovered_packs": report.recovered, "blobs": blobs,
                          "bad_packs": report.bad_packs, "sealed_packs": report.sealed,
                          "segments_written": report.segments_written})
    elif not report.unlisted:
        click.echo("every pack is listed by a usable index segment: nothing to repair")
    else:
        would = "would list" if dry_run else "listed"
        segs = (f" in {len(report.segments_written)} new index segment"
                f"{'s' if len(report.segments_written) != 1 else ''}"
                if report.segments_written else "")
        click.echo(f"{would} {len(report.recovered)} packs ({blobs} blobs) again{segs}")
        if report.bad_packs:
            click.echo(f"{len(report.bad_packs)} packs left out: their trailers do not verify")
        if report.sealed:
            click.echo(f"{len(report.sealed)} format 1 packs left out: their trailers need a "
                       "full or admin key")
    return Outcome.WARNINGS if report.bad_packs or report.sealed else Outcome.OK


COMMANDS = [repair_cmd]
