"""``repofs check``: verify a repository's structure, history and (optionally) all its data."""

from __future__ import annotations

from pathlib import Path

import click
from repofs_cli import output
from repofs_cli.common import json_option, open_repo, repo_option

from repofs import audit
from repofs.chain import HeadsGuard
from repofs.checker import Checker


@click.command("check")
@repo_option
@click.option("--read-data", is_flag=True,
              help="Also read every pack whole: re-hash it, decrypt and verify every blob.")
@json_option
def check(repo: Path, read_data: bool, as_json: bool) -> int:
    """Check that every snapshot, the history, every tree and every chunk are intact.

    Prints one line per problem, naming the object and the snapshots it
    affects; exits 0 only when nothing is wrong, 2 when something is.
    """
    r = open_repo(repo, index=False)
    progress = output.Progress()
    report = Checker(r, read_data=read_data,
                     progress=progress.show if progress.enabled else None,
                     record=HeadsGuard(r.id, warn=output.warn)).run()
    progress.done()
    audit.event("check", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                read_data=read_data, problems=len(report.problems))
    if as_json:
        output.emit_json({"intact": report.intact, "read_data": read_data,
                          "problems": [p.to_json() for p in report.problems],
                          "notes": [n.to_json() for n in report.notes],
                          "counts": report.counts})
    else:
        for p in report.problems:
            click.echo(p.line())
        for n in report.notes:
            click.echo(f"note: {n.line()}")
        counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
        if report.intact:
            click.echo(f"no problems found ({counts})")
        else:
            click.echo(f"{len(report.problems)} problem{'s' if len(report.problems) > 1 else ''}"
                       f" found ({counts})")
    return 0 if report.intact else 2


COMMANDS = [check]
