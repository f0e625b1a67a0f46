"""``repofs restore`` and ``repofs dump``: get data back out."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click
from repofs_cli import output
from repofs_cli.common import LocalPath, filter_options, json_option, open_repo, repo_option
from repofs_cli.outcome import Outcome

from repofs import audit, dumper, tarexport
from repofs.dumper import dump
from repofs.model import DIR
from repofs.patterns import PatternSet
from repofs.restoreopts import OVERWRITE_MODES
from repofs.restorer import RestoreOptions, Restorer, RestoreStats
from repofs.snapshots import SnapshotFilter


@click.command("restore")
@repo_option
@click.argument("snapshot", metavar="SNAPSHOT[:PATH]")
@filter_options
@click.option("-t", "--target", required=True, type=LocalPath(path_type=Path),
              help="Directory to restore into (created if missing).")
@click.option("-i", "--include", "includes", multiple=True, metavar="PATTERN",
              help="Restore only paths matching PATTERN (repeatable).")
@click.option("-e", "--exclude", "excludes", multiple=True, metavar="PATTERN",
              help="Do not restore paths matching PATTERN (repeatable).")
@click.option("--numeric-ids", is_flag=True,
              help="Restore stored uid/gid numbers, not the local ids of stored names.")
@click.option("--partial", is_flag=True,
              help="Keep what verified of a damaged file, its damaged ranges left as holes "
                   "(default: a damaged file is not created).")
@click.option("--special", is_flag=True,
              help="Also restore set-user-ID/set-group-ID bits, file capabilities and device "
                   "nodes (default: not recreated, each named in a warning).")
@click.option("--overwrite", type=click.Choice(OVERWRITE_MODES), default="never",
              show_default=True,
              help="What to do with an existing entry that differs from the snapshot: keep "
                   "it (never), replace it if content or metadata differ (if-changed), "
                   "replace every entry (always).")
@click.option("--delete", is_flag=True,
              help="Remove what the snapshot does not hold from the restored directories "
                   "(only below the target).")
@click.option("-n", "--dry-run", is_flag=True,
              help="Say what would be created, overwritten, deleted, skipped; write nothing.")
@click.option("--verify", is_flag=True,
              help="Read every restored file back and compare it with the snapshot.")
@click.option("-v", "--verbose", is_flag=True, help="List each path acted on.")
@json_option
def restore(repo: Path, snapshot: str, target: Path, includes: tuple[str, ...],
            excludes: tuple[str, ...], numeric_ids: bool, partial: bool, special: bool,
            overwrite: str, delete: bool, dry_run: bool, verify: bool, verbose: bool,
            as_json: bool, where: SnapshotFilter) -> Outcome:
    """Restore SNAPSHOT (or PATH inside it) into --target.

    A directory's contents are restored into the target; a single file is
    restored into the target under its name. Each file is written under a
    temporary name and renamed into place when complete, so an interrupted
    restore can be run again: what is there and identical is kept. Existing
    files are overwritten only as --overwrite says; nothing is written outside
    the target.
    """
    ref, _, path = snapshot.partition(":")
    r = open_repo(repo)
    snap = r.snapshots.resolve(ref, where=where)
    if snap.body is None:
        raise click.ClickException("this key cannot read snapshot contents")
    bpath = os.fsencode(path)
    entry = r.lookup_path(snap.body.tree, bpath)
    opts = RestoreOptions(includes=PatternSet(os.fsencode(p) for p in includes),
                          excludes=PatternSet(os.fsencode(p) for p in excludes),
                          numeric_ids=numeric_ids, partial=partial, special=special,
                          overwrite=overwrite, delete=delete, delete_roots=snap.body.paths,
                          dry_run=dry_run,
                          verify=verify, record=verbose or (as_json and dry_run))
    progress = output.Progress()

    def show(st: RestoreStats) -> None:
        progress.show(f"{st.files} files, {output.human_size(st.bytes_written)} restored")

    where = b"/" + bpath.strip(b"/") if entry.type == DIR else bpath
    stats = Restorer(r, target, opts, show if progress.enabled and not dry_run else None).run(
        entry, where)
    progress.done()
    if verbose and not as_json:
        for action, p in stats.actions:
            click.echo(f"{action} {os.fsdecode(p)}")
    if not dry_run:
        audit.event("restore", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                    snapshot=snap.id, source=path or "/", target=target.absolute(),
                    files=stats.files, bytes=stats.bytes_written, damaged=len(stats.damaged),
                    damaged_dirs=len(stats.damaged_dirs), warnings=len(stats.warnings))
    for w in stats.warnings:
        output.warn(w)
    if as_json:
        output.emit_json({"snapshot": snap.id, "files": stats.files, "dirs": stats.dirs,
                          "others": stats.others, "bytes_written": stats.bytes_written,
                          "damaged": [{"path": output.json_path(d.path), "kept": d.kept,
                                       "ranges": [list(x) for x in d.ranges]}
                                      for d in stats.damaged],
                          "damaged_dirs": [output.json_path(p) for p in stats.damaged_dirs],
                          "skipped": stats.skipped, "dry_run": dry_run,
                          "created": stats.created, "overwritten": stats.replaced,
                          "updated": stats.updated, "unchanged": stats.unchanged,
                          "deleted": stats.deleted, "temps_removed": stats.temps_removed,
                          "verified": stats.verified,
                          "mismatches": [{"path": output.json_path(p), "problem": m}
                                         for p, m in stats.mismatches],
                          "actions": [{"action": a, "path": output.json_path(p)}
                                      for a, p in stats.actions],
                          "warnings": stats.warnings})
    elif dry_run:
        click.echo(f"would create {stats.created}, overwrite {stats.replaced}, update "
                   f"{stats.updated}, delete {stats.deleted}; {stats.unchanged} unchanged, "
                   f"{stats.skipped} skipped (nothing written to {target}){_verified(stats)}")
    else:
        click.echo(f"restored {stats.files} files, {stats.dirs} dirs, {stats.others} other "
                   f"({output.human_size(stats.bytes_written)}) from {snap.short_id} "
                   f"to {target}{_changes(stats)}{_losses(stats)}{_verified(stats)}")
    damaged = stats.damaged or stats.damaged_dirs
    return Outcome.WARNINGS if stats.warnings or damaged else Outcome.OK


def _changes(stats: RestoreStats) -> str:
    """What a restore into a non-empty target did besides creating (nothing: no text)."""
    out = [text for n, text in ((stats.replaced, f"{stats.replaced} overwritten"),
                                (stats.updated, f"{stats.updated} updated"),
                                (stats.unchanged, f"{stats.unchanged} unchanged"),
                                (stats.deleted, f"{stats.deleted} deleted"),
                                (stats.temps_removed, f"{stats.temps_removed} left by an "
                                 "interrupted restore removed")) if n]
    return f" ({', '.join(out)})" if out else ""


def _verified(stats: RestoreStats) -> str:
    if not stats.verified:
        return ""
    bad = len(stats.mismatches)
    return f"; verified {stats.verified} files, {bad} differ" + (
        "" if bad else " (all match)")


def _losses(stats: RestoreStats) -> str:
    """The summary's tail: what damage and the target cost (nothing when nothing did)."""
    kept = sum(1 for d in stats.damaged if d.kept)
    dropped = len(stats.damaged) - kept
    out = [text for n, text in (
        (dropped, f"{dropped} damaged file{'s' if dropped != 1 else ''} not restored"),
        (kept, f"{kept} damaged file{'s' if kept != 1 else ''} restored with holes"),
        (len(stats.damaged_dirs), f"{len(stats.damaged_dirs)} director"
         f"{'ies' if len(stats.damaged_dirs) != 1 else 'y'} with a damaged tree"),
        (stats.skipped, f"{stats.skipped} entr{'ies' if stats.skipped != 1 else 'y'} skipped"),
    ) if n]
    return f"; {', '.join(out)}" if out else ""


@click.command("dump")
@repo_option
@click.argument("snapshot")
@click.argument("path", required=False)
@filter_options
@click.option("--archive", type=click.Choice(["tar"]),
              help="Write PATH (a directory, or the whole snapshot) as a tar archive.")
@click.option("-o", "--output", "out_file", type=LocalPath(path_type=Path, dir_okay=False),
              help="Write to FILE (replaced only when complete), not standard output.")
def dump_cmd(repo: Path, snapshot: str, path: str | None, archive: str | None,
             out_file: Path | None, where: SnapshotFilter) -> Outcome:
    """Write the file PATH of SNAPSHOT to standard output; with --archive tar,
    PATH (default: the whole snapshot) and everything below it as a tar archive.

    Never writes a byte that did not verify: a damaged file of up to 64 MiB writes
    nothing; a larger one stops after the verified bytes before the damage. Either way
    the exit status is 2. In an archive a damaged file is left out (exit status 1).
    """
    if path is None and archive is None:
        raise click.UsageError("PATH is required (or --archive tar for the whole snapshot)")
    if out_file is None and archive is not None and sys.stdout.isatty():
        raise click.UsageError("not writing an archive to a terminal: use -o FILE or a pipe")
    r = open_repo(repo)
    snap = r.snapshots.resolve(snapshot, where=where)
    if snap.body is None:
        raise click.ClickException("this key cannot read snapshot contents")
    source = path or "/"
    entry = r.lookup_path(snap.body.tree, os.fsencode(source))
    with (dumper.output_file(out_file) if out_file is not None
          else contextlib.nullcontext(sys.stdout.buffer)) as out:
        if archive is None:
            dump(r, entry, out, source)
            stats = None
        else:
            stats = tarexport.export_tar(r, entry, os.fsencode(source), out)
    audit.event("dump", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                snapshot=snap.id, source=source, archive=archive or "",
                left_out=len(stats.left_out) if stats else 0)
    if stats is None:
        return Outcome.OK
    for w in stats.warnings:
        output.warn(w)
    for p in stats.left_out:
        output.warn(f"{p.decode('utf-8', 'backslashreplace')}: left out of the archive: damaged")
    return Outcome.WARNINGS if stats.warnings or stats.left_out else Outcome.OK


COMMANDS = [restore, dump_cmd]
