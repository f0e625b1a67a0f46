"""``repofs diff``, ``repofs find`` and ``repofs stats``: looking into snapshots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from repofs_cli import output
from repofs_cli.common import filter_options, json_option, open_repo, repo_option
from repofs_cli.outcome import Outcome

from repofs import audit, finder, repostats, treediff
from repofs.errors import PathNotFound
from repofs.model import DIR, Entry, Snapshot
from repofs.patterns import PatternSet
from repofs.repository import Repository
from repofs.snapshots import SnapshotFilter

_TYPE_NAMES = {"f": "file", "d": "dir", "l": "symlink", "b": "blockdev", "c": "chardev",
               "p": "fifo"}
_MARK = {treediff.ADDED: "+", treediff.REMOVED: "-", treediff.CONTENT: "M",
         treediff.METADATA: "U", treediff.TYPE: "T"}


def _readable(r: Repository, ref: str, where: SnapshotFilter) -> Snapshot:
    snap = r.snapshots.resolve(ref, where=where)
    if snap.body is None:
        raise click.ClickException("this key cannot read snapshot contents (a write-only key)")
    return snap


def _entry_at(r: Repository, snap: Snapshot, path: bytes) -> Entry | None:
    assert snap.body is not None
    try:
        return r.lookup_path(snap.body.tree, path)
    except PathNotFound:
        return None


def _shown(path: bytes, e: Entry | None) -> str:
    return output.show_path(path or b"/") + ("/" if e is not None and e.type == DIR else "")


@click.command("diff")
@repo_option
@click.argument("snapshot1")
@click.argument("snapshot2")
@click.argument("path", required=False, default="/")
@filter_options
@json_option
def diff(repo: Path, snapshot1: str, snapshot2: str, path: str, where: SnapshotFilter,
         as_json: bool) -> Outcome:
    """Show what changed from SNAPSHOT1 to SNAPSHOT2 (below PATH).

    \b
    +  added            -  removed
    M  content changed  U  metadata changed (mode, owner, xattrs, mtime)
    T  type changed (a file became a directory, ...)
    Only subtrees whose contents differ are read.
    """
    r = open_repo(repo)
    old, new = _readable(r, snapshot1, where), _readable(r, snapshot2, where)
    bpath = os.fsencode(path)
    base = b"/" + bpath.strip(b"/") if bpath.strip(b"/") else b""
    a, b = _entry_at(r, old, bpath), _entry_at(r, new, bpath)
    if a is None and b is None:
        raise PathNotFound(f"{path}: in neither snapshot")
    audit.event("diff", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                snapshot=old.id, snapshot2=new.id, source=path)
    counts = dict.fromkeys(treediff.KINDS, 0)
    changes: list[dict[str, Any]] = []
    for c in treediff.diff(r, a, b, base):
        counts[c.kind] += 1
        if as_json:
            changes.append({"change": c.kind, "path": output.json_path(c.path or b"/"),
                            "old_type": _TYPE_NAMES[c.old.type] if c.old else None,
                            "new_type": _TYPE_NAMES[c.new.type] if c.new else None,
                            "old_size": c.old.size if c.old else None,
                            "new_size": c.new.size if c.new else None})
        else:
            click.echo(f"{_MARK[c.kind]}    {_shown(c.path, c.new or c.old)}")
    if as_json:
        output.emit_json({"snapshot1": old.id, "snapshot2": new.id,
                          "path": output.json_path(base or b"/"), "changes": changes,
                          "counts": counts})
    else:
        click.echo(f"{counts['added']} added, {counts['removed']} removed, "
                   f"{counts['content']} changed content, {counts['metadata']} changed "
                   f"metadata, {counts['type']} changed type")
    return Outcome.WARNINGS if r.damage else Outcome.OK


@click.command("find")
@repo_option
@click.argument("patterns", nargs=-1, required=True)
@click.option("-s", "--snapshot", "refs", multiple=True, metavar="SNAPSHOT",
              help="Search only this snapshot (repeatable; default: every snapshot that "
                   "--host, --tag and --path choose).")
@filter_options
@json_option
def find(repo: Path, patterns: tuple[str, ...], refs: tuple[str, ...], where: SnapshotFilter,
         as_json: bool) -> Outcome:
    """List the snapshots holding paths that match PATTERNS, with size and time.

    Patterns are those of --exclude: without '/' a pattern matches a name anywhere,
    with '/' a path from the root; '*' stops at '/', '**' does not.
    """
    r = open_repo(repo)
    snaps = ([r.snapshots.resolve(ref, where=where) for ref in refs] if refs
             else r.snapshots.select(where))
    if not r.can_read:
        raise click.ClickException("this key cannot read snapshot contents (a write-only key)")
    audit.event("find", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                patterns=list(patterns), snapshots=len(snaps))
    found = []
    for f in finder.find(r, PatternSet([os.fsencode(p) for p in patterns]), snaps):
        if not f.matches:
            continue
        found.append(f)
        if as_json:
            continue
        click.echo(f"snapshot {f.snapshot.short_id} of "
                   f"{output.local_time(f.snapshot.head.time_ns)}:")
        for p, e in f.matches:
            size = str(e.size) if e.type != DIR else "-"
            click.echo(f"  {_TYPE_NAMES[e.type]:<8} {size:>12}  "
                       f"{output.local_time(e.mtime_ns)}  {_shown(p, e)}")
    if as_json:
        output.emit_json([{
            "snapshot": f.snapshot.id, "short_id": f.snapshot.short_id,
            "time": output.local_time(f.snapshot.head.time_ns),
            "matches": [{"path": output.json_path(p), "type": _TYPE_NAMES[e.type],
                         "size": e.size, "mtime": output.local_time(e.mtime_ns),
                         "mtime_ns": e.mtime_ns} for p, e in f.matches]} for f in found])
    elif not found:
        click.echo("no matches")
    return Outcome.WARNINGS if r.damage else Outcome.OK


@click.command("stats")
@repo_option
@click.argument("snapshots", nargs=-1)
@filter_options
@json_option
def stats(repo: Path, snapshots: tuple[str, ...], where: SnapshotFilter,
          as_json: bool) -> Outcome:
    """Show how much the repository stores, and what SNAPSHOTS hold and alone hold.

    The repository's numbers come from its index, which every key reads (a
    write-only key too); SNAPSHOTS need a key that can read them. With --host,
    --tag or --path and no SNAPSHOTS: every snapshot that matches.
    """
    r = open_repo(repo)
    every = r.snapshots.list()
    wanted = ([r.snapshots.resolve(ref, every, where) for ref in snapshots] if snapshots
              else r.snapshots.select(where, every) if not where.empty else [])
    if wanted and not r.can_read:
        raise click.ClickException("this key cannot read snapshot contents (a write-only "
                                   "key): give no SNAPSHOT for the repository's numbers")
    total = repostats.repository(r, len(every))
    per = repostats.per_snapshot(r, wanted, every) if wanted else []
    audit.event("stats", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                snapshots=[s.id for s in wanted])
    if as_json:
        output.emit_json({"repository": vars(total), "snapshots": [
            {"id": s.snapshot.id, "short_id": s.snapshot.short_id,
             "time": output.local_time(s.snapshot.head.time_ns),
             **{k: v for k, v in vars(s).items() if k != "snapshot"}} for s in per]})
        return Outcome.WARNINGS if r.damage else Outcome.OK
    hs = output.human_size
    blobs = ", ".join(f"{n} {k}s" for k, n in sorted(total.blobs.items())) or "no blobs"
    click.echo(f"repository {r.id[:8]}: {total.snapshots} snapshots, {total.packs} packs "
               f"({hs(total.pack_bytes)} on disk), {total.index_segments} index segments")
    click.echo(f"  blobs: {blobs}")
    click.echo(f"  deduplicated size: {hs(total.raw_bytes)} (every blob once, uncompressed)")
    click.echo(f"  stored size: {hs(total.stored_bytes)} (compressed, encrypted, padded)")
    for s in per:
        click.echo(f"snapshot {s.snapshot.short_id} of "
                   f"{output.local_time(s.snapshot.head.time_ns)}:")
        click.echo(f"  restore size: {hs(s.restore_bytes)} in {s.files} files, {s.dirs} "
                   f"dirs, {s.others} others")
        click.echo(f"  references {s.blobs} blobs ({hs(s.raw_bytes)} deduplicated, "
                   "uncompressed)")
        click.echo(f"  alone holds {s.unique_blobs} blobs ({hs(s.unique_stored_bytes)} "
                   "stored): what forgetting only it would free")
    return Outcome.WARNINGS if r.damage else Outcome.OK


COMMANDS = [diff, find, stats]
