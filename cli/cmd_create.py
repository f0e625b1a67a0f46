"""``repofs create``: back up paths, standard input, or a command's output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from repofs_cli import output
from repofs_cli.common import (
    EMPTY_PATH,
    LocalPath,
    json_option,
    open_repo,
    repo_option,
)
from repofs_cli.outcome import Outcome

from repofs import audit
from repofs.archiver import Archiver, CreateOptions, CreateStats
from repofs.compression import Codec
from repofs.patterns import PatternSet, read_pattern_file
from repofs.selection import (
    NODUMP,
    SOCKET,
    TAGGED,
    TOO_LARGE,
    CasefoldPatterns,
    Selection,
    parse_size,
    read_path_list,
)
from repofs.session import WriteSession, WriteStats
from repofs.snapshots import split_tags


@click.command("create", context_settings={"ignore_unknown_options": False})
@repo_option
@click.argument("paths", nargs=-1)
@click.option("-e", "--exclude", "excludes", multiple=True, metavar="PATTERN",
              help="Skip paths matching PATTERN (repeatable).")
@click.option("--exclude-from", "exclude_from", multiple=True,
              type=LocalPath(exists=True, dir_okay=False, path_type=Path),
              help="Read exclude patterns from FILE, one a line.")
@click.option("--iexclude", "iexcludes", multiple=True, metavar="PATTERN",
              help="Like --exclude, ignoring case (repeatable).")
@click.option("--exclude-caches", is_flag=True,
              help="Skip the contents of directories holding a CACHEDIR.TAG.")
@click.option("--exclude-if-present", "if_present", multiple=True, metavar="NAME",
              help="Skip directories holding an entry called NAME (repeatable).")
@click.option("--exclude-larger-than", "larger_than", metavar="SIZE",
              help="Skip files larger than SIZE (bytes, or with K, M, G, T: binary units).")
@click.option("--exclude-nodump", is_flag=True,
              help="Skip files and directories with the nodump flag (chattr +d).")
@click.option("--files-from", "files_from", multiple=True, metavar="FILE",
              type=LocalPath(dir_okay=False, readable=False, allow_dash=True, path_type=Path),
              help="Back up the paths listed in FILE, one a line, as well (- for stdin).")
@click.option("--files-from0", "files_from0", multiple=True, metavar="FILE",
              type=LocalPath(dir_okay=False, readable=False, allow_dash=True, path_type=Path),
              help="Back up the NUL-separated paths listed in FILE as well (- for stdin).")
@click.option("-x", "--one-file-system", is_flag=True,
              help="Do not cross file system boundaries.")
@click.option("--tag", "tags", multiple=True, metavar="TAG[,TAG...]",
              help="Tag the snapshot (repeatable; 'a,b' is two tags).")
@click.option("--host", help="Host name to record (default: this machine's).")
@click.option("--name", help="Unique name for the snapshot.")
@click.option("--stdin-name", metavar="NAME",
              help="Back up standard input as one file called NAME.")
@click.option("--stdin-from-command", is_flag=True,
              help="Back up the output of the command given after --; fail if it fails.")
@click.option("--compression", default="zstd,3", show_default=True,
              help="zstd[,LEVEL] or none.")
@click.option("--no-cache", is_flag=True, help="Read every file, ignoring the files cache.")
@click.option("-n", "--dry-run", is_flag=True,
              help="Read and count everything, but write nothing to the repository.")
@json_option
def create(repo: Path, paths: tuple[str, ...], excludes: tuple[str, ...],
           exclude_from: tuple[Path, ...], iexcludes: tuple[str, ...], exclude_caches: bool,
           if_present: tuple[str, ...], larger_than: str | None, exclude_nodump: bool,
           files_from: tuple[Path, ...], files_from0: tuple[Path, ...], one_file_system: bool,
           tags: tuple[str, ...], host: str | None, name: str | None, stdin_name: str | None,
           stdin_from_command: bool, compression: str, no_cache: bool, dry_run: bool,
           as_json: bool) -> Outcome:
    """Back up PATHS (or stdin, or a command's output) as a new snapshot.

    \b
    Examples:
      repofs create /home /etc --exclude '*.tmp' --tag daily
      pg_dump db | repofs create --stdin-name db.sql
      repofs create --stdin-name db.sql --stdin-from-command -- pg_dump db
      find /srv -name '*.conf' -print0 | repofs create --files-from0 -
    """
    tags = split_tags(tags)
    try:
        codec = Codec.parse(compression)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--compression") from None
    selection = _selection(excludes, exclude_from, iexcludes, if_present, larger_than,
                           exclude_nodump)
    listed = _listed_paths(files_from, files_from0, stdin_name is not None)
    if listed and stdin_from_command:
        raise click.UsageError("--files-from cannot be combined with --stdin-from-command")
    command = None
    if stdin_from_command:
        if not paths:
            raise click.UsageError("--stdin-from-command needs a command after --")
        command = list(paths)
        stdin_name = stdin_name or "stdin"
    elif "" in paths:  # paths, not a command's words (which may well be empty)
        raise click.BadParameter(EMPTY_PATH, param_hint="PATHS")
    elif stdin_name is None and not paths and not listed:
        raise click.UsageError("nothing to back up: give PATHS, --files-from, or --stdin-name")
    elif stdin_name is not None and (paths or listed):
        raise click.UsageError("give either PATHS or --stdin-name, not both")
    if stdin_name is not None and ("/" in stdin_name or stdin_name in ("", ".", "..")):
        raise click.BadParameter("must be a plain file name", param_hint="--stdin-name")
    opts = CreateOptions(
        paths=[os.path.abspath(os.fsencode(p)) for p in paths] + [os.path.abspath(p)
                                                                  for p in listed]
        if command is None else [],
        selection=selection, exclude_caches=exclude_caches,
        one_file_system=one_file_system, host=host, tags=tags, name=name,
        stdin_name=os.fsencode(stdin_name) if stdin_name is not None else None,
        stdin_command=command, use_files_cache=not no_cache, dry_run=dry_run,
    )
    r = open_repo(repo)
    progress = output.Progress()

    def show(stats: CreateStats, _name: bytes) -> None:
        progress.show(f"{stats.files} files, {output.human_size(stats.bytes_read)} read, "
                      f"{stats.files_unchanged} unchanged")

    with WriteSession(r, codec, dry_run=dry_run) as session:
        archiver = Archiver(session, opts, show if progress.enabled else None)
        snap = archiver.run()
    progress.done()
    st, ws = archiver.stats, session.stats
    for w in st.warnings:
        output.warn(w)
    if snap is None:
        _report_dry_run(st, ws, as_json)
        return Outcome.WARNINGS if st.warnings else Outcome.OK
    audit.event("create", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                snapshot=snap.id, name=name, tags=tags, files=st.files,
                bytes_added=ws.bytes_stored, warnings=len(st.warnings),
                paths=[str(p) for p in paths] if command is None else None,
                stdin_name=stdin_name)
    if as_json:
        output.emit_json({
            "snapshot": snap.id, "short_id": snap.short_id, "time": output.local_time(
                snap.head.time_ns), "seq": snap.head.seq, "dry_run": False, **_counts(st, ws)})
    else:
        click.echo(f"snapshot {snap.short_id} saved")
        _summary(st, ws, "new data", "added to repository")
    return Outcome.WARNINGS if st.warnings else Outcome.OK


def _selection(excludes: tuple[str, ...], exclude_from: tuple[Path, ...],
               iexcludes: tuple[str, ...], if_present: tuple[str, ...],
               larger_than: str | None, nodump: bool) -> Selection:
    patterns = [os.fsencode(p) for p in excludes]
    for f in exclude_from:
        patterns += read_pattern_file(f.read_bytes())
    for n in if_present:
        if n in ("", ".", "..") or "/" in n:
            raise click.BadParameter("must be a plain file name", param_hint="--exclude-if-present")
    try:
        limit = parse_size(larger_than) if larger_than is not None else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--exclude-larger-than") from None
    return Selection(excludes=PatternSet(patterns),
                     iexcludes=CasefoldPatterns(os.fsencode(p) for p in iexcludes),
                     if_present=[os.fsencode(n) for n in if_present], larger_than=limit,
                     nodump=nodump)


def _listed_paths(files_from: tuple[Path, ...], files_from0: tuple[Path, ...],
                  stdin_taken: bool) -> list[bytes]:
    """The paths of every --files-from and --files-from0 file, in order; ``-`` is standard
    input (once, and not when standard input is the data to back up)."""
    out: list[bytes] = []
    dashes = 0
    for option, files, nul in (("--files-from", files_from, False),
                               ("--files-from0", files_from0, True)):
        for f in files:
            if str(f) == "-":
                dashes += 1
                if stdin_taken or dashes > 1:
                    raise click.UsageError(f"{option} -: standard input is already taken")
                data = sys.stdin.buffer.read()
            else:
                try:
                    data = f.read_bytes()
                except OSError as e:
                    raise click.BadParameter(f"{os.fsdecode(bytes(f))}: {e.strerror}",
                                             param_hint=option) from None
            out += read_path_list(data, nul)
    return out


_SKIPPED = {SOCKET: "sockets", TOO_LARGE: "files over the size limit",
            NODUMP: "marked nodump", TAGGED: "directories tagged to exclude"}


def _counts(st: CreateStats, ws: WriteStats) -> dict[str, object]:
    return {
        "files": st.files, "dirs": st.dirs, "others": st.others,
        "files_unchanged": st.files_unchanged, "files_read": st.files_read,
        "bytes_total": st.bytes_total, "bytes_read": st.bytes_read,
        "blobs_new": ws.blobs_new, "bytes_new": ws.bytes_new_raw,
        "bytes_added": ws.bytes_stored, "packs_adopted": ws.packs_adopted,
        "skipped": dict(st.skipped), "warnings": st.warnings,
    }


def _summary(st: CreateStats, ws: WriteStats, new: str, added: str) -> None:
    click.echo(f"  files: {st.files} ({st.files_unchanged} unchanged), dirs: {st.dirs}, "
               f"other: {st.others}")
    skipped = ", ".join(f"{n} {_SKIPPED[reason]}" for reason, n in st.skipped.items() if n)
    if skipped:
        click.echo(f"  skipped: {skipped}")
    click.echo(f"  processed {output.human_size(st.bytes_total)}, read "
               f"{output.human_size(st.bytes_read)}, {new} "
               f"{output.human_size(ws.bytes_new_raw)}, {added} "
               f"{output.human_size(ws.bytes_stored)}")
    if ws.packs_adopted:
        click.echo(f"  reused {ws.packs_adopted} packs an interrupted create left")


def _report_dry_run(st: CreateStats, ws: WriteStats, as_json: bool) -> None:
    if as_json:
        output.emit_json({"snapshot": None, "short_id": None, "time": None, "seq": None,
                          "dry_run": True, **_counts(st, ws)})
    else:
        click.echo("dry run: no snapshot saved, nothing written to the repository")
        _summary(st, ws, "new data", "added")


COMMANDS = [create]
