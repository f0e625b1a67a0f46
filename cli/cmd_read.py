"""``repofs snapshots`` and ``repofs ls``: what is in the repository."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import click
from repofs_cli import output
from repofs_cli.common import filter_options, json_option, open_repo, repo_option

from repofs import audit
from repofs.model import DIR, Entry, Snapshot
from repofs.snapshots import SnapshotFilter

_TYPE_CHAR = {"f": "-", "d": "d", "l": "l", "b": "b", "c": "c", "p": "p"}
_TYPE_BITS = {"f": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK, "b": stat.S_IFBLK,
              "c": stat.S_IFCHR, "p": stat.S_IFIFO}


def snapshot_json(s: Snapshot) -> dict[str, Any]:
    d: dict[str, Any] = {"id": s.id, "short_id": s.short_id, "seq": s.head.seq,
                         "time": output.local_time(s.head.time_ns),
                         "prev": [p.hex() for p in s.head.prev]}
    if s.body is not None:
        b = s.body
        d.update(host=b.host, user=b.user, tags=list(b.tags), name=b.name,
                 paths=[output.json_path(p) for p in b.paths], tree=b.tree.hex(),
                 stats=b.stats)
    return d


@click.command("snapshots")
@repo_option
@filter_options
@json_option
def snapshots(repo: Path, where: SnapshotFilter, as_json: bool) -> None:
    """List snapshots, oldest first."""
    r = open_repo(repo)
    audit.event("snapshots", repo=r.id, key=r.keys.key_name, path=repo.absolute())
    snaps = r.snapshots.select(where)
    if as_json:
        output.emit_json([snapshot_json(s) for s in snaps])
        return
    rows = [("ID", "Time", "Host", "Tags", "Name", "Paths")]
    for s in snaps:
        b = s.body
        rows.append((s.short_id, output.local_time(s.head.time_ns),
                     b.host if b else "?", ",".join(b.tags) if b else "",
                     (b.name or "") if b else "",
                     " ".join(output.show_path(p) for p in b.paths) if b else "(sealed)"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                   + "  " + row[-1])
    click.echo(f"{len(snaps)} snapshots")


def entry_json(path: bytes, e: Entry) -> dict[str, Any]:
    d: dict[str, Any] = {"path": output.json_path(path), "name": output.json_path(e.name),
                         "type": {"f": "file", "d": "dir", "l": "symlink", "b": "blockdev",
                                  "c": "chardev", "p": "fifo"}[e.type],
                         "mode": e.mode, "uid": e.uid, "gid": e.gid, "user": e.user,
                         "group": e.group, "size": e.size, "mtime_ns": e.mtime_ns,
                         "ctime_ns": e.ctime_ns}
    if e.target is not None:
        d["target"] = output.json_path(e.target)
    if e.type in ("b", "c"):
        d["rdev"] = e.rdev
    if e.hardlink is not None:
        d["hardlink"] = e.hardlink
    return d


def long_line(path: bytes, e: Entry) -> str:
    mode = stat.filemode(_TYPE_BITS[e.type] | e.mode)
    owner = f"{e.user or e.uid}/{e.group or e.gid}"
    size = (f"{os.major(e.rdev)},{os.minor(e.rdev)}" if e.type in ("b", "c")
            else str(e.size))
    line = f"{mode} {owner:>17} {size:>12} {output.local_time(e.mtime_ns)} {output.show_path(path)}"
    if e.target is not None:
        line += f" -> {output.show_path(e.target)}"
    return line


@click.command("ls")
@repo_option
@click.argument("snapshot")
@click.argument("path", required=False, default="/")
@filter_options
@click.option("-l", "--long", "long_", is_flag=True, help="Show mode, owner, size and time.")
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="List everything below PATH, or only its direct entries.")
@json_option
def ls(repo: Path, snapshot: str, path: str, where: SnapshotFilter, long_: bool,
       recursive: bool, as_json: bool) -> None:
    """List the files of SNAPSHOT (id, id prefix, name or 'latest') below PATH.

    With --json, prints one JSON object per line (JSON Lines), so huge
    snapshots stream.
    """
    r = open_repo(repo)
    snap = r.snapshots.resolve(snapshot, where=where)
    if snap.body is None:
        raise click.ClickException("this key cannot read snapshot contents")
    bpath = os.fsencode(path)
    entry = r.lookup_path(snap.body.tree, bpath)
    audit.event("ls", repo=r.id, key=r.keys.key_name, path=repo.absolute(), snapshot=snap.id,
                source=path)
    base = b"/" + bpath.strip(b"/") if bpath.strip(b"/") else b""
    if entry.type != DIR:
        items = iter([(base, entry)])
    elif recursive:
        items = r.walk(entry, base or b"/")
    else:
        items = ((base + b"/" + e.name, e) for e in r.load_tree(entry.subtree or b""))
    for p, e in items:
        if as_json:
            output.emit_json(entry_json(p, e))
        elif long_:
            click.echo(long_line(p, e))
        else:
            click.echo(output.show_path(p))


COMMANDS = [snapshots, ls]
