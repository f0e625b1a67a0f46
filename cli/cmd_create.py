"""``repofs create``: back up paths, standard input, or a command's output."""

from __future__ import annotations

import os
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
from repofs.session import WriteSession


@click.command("create", context_settings={"ignore_unknown_options": False})
@repo_option
@click.argument("paths", nargs=-1)
@click.option("-e", "--exclude", "excludes", multiple=True, metavar="PATTERN",
              help="Skip paths matching PATTERN (repeatable).")
@click.option("--exclude-from", "exclude_from", multiple=True,
              type=LocalPath(exists=True, dir_okay=False, path_type=Path),
              help="Read exclude patterns from FILE, one a line.")
@click.option("--exclude-caches", is_flag=True,
              help="Skip the contents of directories holding a CACHEDIR.TAG.")
@click.option("-x", "--one-file-system", is_flag=True,
              help="Do not cross file system boundaries.")
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("--host", help="Host name to record (default: this machine's).")
@click.option("--name", help="Unique name for the snapshot.")
@click.option("--stdin-name", metavar="NAME",
              help="Back up standard input as one file called NAME.")
@click.option("--stdin-from-command", is_flag=True,
              help="Back up the output of the command given after --; fail if it fails.")
@click.option("--compression", default="zstd,3", show_default=True,
              help="zstd[,LEVEL] or none.")
@click.option("--no-cache", is_flag=True, help="Read every file, ignoring the files cache.")
@json_option
def create(repo: Path, paths: tuple[str, ...], excludes: tuple[str, ...],
           exclude_from: tuple[Path, ...], exclude_caches: bool, one_file_system: bool,
           tags: tuple[str, ...], host: str | None, name: str | None, stdin_name: str | None,
           stdin_from_command: bool, compression: str, no_cache: bool, as_json: bool) -> Outcome:
    """Back up PATHS (or stdin, or a command's output) as a new snapshot.

    \b
    Examples:
      repofs create /home /etc --exclude '*.tmp' --tag daily
      pg_dump db | repofs create --stdin-name db.sql
      repofs create --stdin-name db.sql --stdin-from-command -- pg_dump db
    """
    try:
        codec = Codec.parse(compression)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--compression") from None
    command = None
    if stdin_from_command:
        if not paths:
            raise click.UsageError("--stdin-from-command needs a command after --")
        command = list(paths)
        stdin_name = stdin_name or "stdin"
    elif "" in paths:  # paths, not a command's words (which may well be empty)
        raise click.BadParameter(EMPTY_PATH, param_hint="PATHS")
    elif stdin_name is None and not paths:
        raise click.UsageError("nothing to back up: give PATHS, or --stdin-name")
    elif stdin_name is not None and paths:
        raise click.UsageError("give either PATHS or --stdin-name, not both")
    if stdin_name is not None and ("/" in stdin_name or stdin_name in ("", ".", "..")):
        raise click.BadParameter("must be a plain file name", param_hint="--stdin-name")
    patterns = [os.fsencode(p) for p in excludes]
    for f in exclude_from:
        patterns += read_pattern_file(f.read_bytes())
    opts = CreateOptions(
        paths=[os.fsencode(os.path.abspath(p)) for p in paths] if command is None else [],
        excludes=PatternSet(patterns), exclude_caches=exclude_caches,
        one_file_system=one_file_system, host=host, tags=tags, name=name,
        stdin_name=os.fsencode(stdin_name) if stdin_name is not None else None,
        stdin_command=command, use_files_cache=not no_cache,
    )
    r = open_repo(repo)
    progress = output.Progress()

    def show(stats: CreateStats, _name: bytes) -> None:
        progress.show(f"{stats.files} files, {output.human_size(stats.bytes_read)} read, "
                      f"{stats.files_unchanged} unchanged")

    with WriteSession(r, codec) as session:
        archiver = Archiver(session, opts, show if progress.enabled else None)
        snap = archiver.run()
    progress.done()
    st, ws = archiver.stats, session.stats
    audit.event("create", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                snapshot=snap.id, name=name, tags=tags, files=st.files,
                bytes_added=ws.bytes_stored, warnings=len(st.warnings),
                paths=[str(p) for p in paths] if command is None else None,
                stdin_name=stdin_name)
    for w in st.warnings:
        output.warn(w)
    if as_json:
        output.emit_json({
            "snapshot": snap.id, "short_id": snap.short_id, "time": output.local_time(
                snap.head.time_ns), "seq": snap.head.seq,
            "files": st.files, "dirs": st.dirs, "others": st.others,
            "files_unchanged": st.files_unchanged, "files_read": st.files_read,
            "bytes_total": st.bytes_total, "bytes_read": st.bytes_read,
            "blobs_new": ws.blobs_new, "bytes_new": ws.bytes_new_raw,
            "bytes_added": ws.bytes_stored, "warnings": st.warnings,
        })
    else:
        click.echo(f"snapshot {snap.short_id} saved")
        click.echo(f"  files: {st.files} ({st.files_unchanged} unchanged), dirs: {st.dirs}, "
                   f"other: {st.others}")
        click.echo(f"  processed {output.human_size(st.bytes_total)}, read "
                   f"{output.human_size(st.bytes_read)}, new data "
                   f"{output.human_size(ws.bytes_new_raw)}, added to repository "
                   f"{output.human_size(ws.bytes_stored)}")
    return Outcome.WARNINGS if st.warnings else Outcome.OK


COMMANDS = [create]
