"""``repofs check``: verify a repository's structure, history and (optionally) all its data."""

from __future__ import annotations

import os
from pathlib import Path

import click
from repofs_cli import output
from repofs_cli.common import json_option, open_repo, repo_option
from repofs_cli.outcome import Outcome

from repofs import audit
from repofs.chain import HeadsGuard
from repofs.checker import Checker, CheckReport, Lost
from repofs.location import open_store
from repofs.storagecheck import StorageReport, check_storage


def _share(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        share = float(value.strip().rstrip("%")) / 100
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise click.BadParameter("give a percentage above 0 and at most 100, e.g. 10%")
    return share


@click.command("check")
@repo_option
@click.option("--read-data", is_flag=True,
              help="Also read every pack whole: re-hash it, decrypt and verify every blob.")
@click.option("--read-data-subset", "subset", metavar="N%", callback=_share,
              help="Like --read-data, for a random N percent of the packs (e.g. 10%).")
@click.option("--storage-only", is_flag=True,
              help="Without any key: re-hash every object against its name and check what "
                   "is readable in clear (for the storage host, or any s3:// or ssh:// "
                   "location).")
@json_option
def check(repo: Path, read_data: bool, subset: float | None, storage_only: bool,
          as_json: bool) -> Outcome:
    """Check that every snapshot, the history, every tree and every chunk are intact.

    Prints one line per problem, naming the object and the snapshots it
    affects; exits 0 only when nothing is wrong, 2 when something is.
    """
    progress = output.Progress()
    show = progress.show if progress.enabled else None
    report: CheckReport | StorageReport
    if storage_only:
        if read_data or subset is not None:
            raise click.UsageError("--storage-only reads no data: it holds no key")
        report = check_storage(open_store(repo), show)
        progress.done()
        audit.event("check", path=repo.absolute(), storage_only=True,
                    problems=len(report.problems))
    else:
        r = open_repo(repo, index=False)
        report = Checker(r, read_data=read_data or subset is not None, progress=show,
                         record=HeadsGuard(r.id, warn=output.warn),
                         read_share=1.0 if subset is None else subset).run()
        progress.done()
        audit.event("check", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                    read_data=read_data, read_share=None if subset is None else str(subset),
                    problems=len(report.problems))
    read_data = read_data or subset is not None
    lost = report.lost if isinstance(report, CheckReport) else {}
    if as_json:
        doc = {"intact": report.intact, "read_data": read_data,
               "problems": [p.to_json() for p in report.problems],
               "notes": [n.to_json() for n in report.notes],
               "counts": report.counts}
        if isinstance(report, CheckReport):
            doc["lost_blobs"] = [{"type": t, "id": i, "problem": idx}
                                 for (t, i), idx in report.lost_blobs.items()]
            doc["lost"] = {snap: [x.to_json() for x in xs] for snap, xs in lost.items()}
        output.emit_json(doc)
    else:
        for p in report.problems:
            click.echo(p.line())
        for snap, xs in lost.items():
            _show_losses(snap, xs)
        for n in report.notes:
            click.echo(f"note: {n.line()}")
        counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
        if report.intact:
            click.echo(f"no problems found ({counts})")
        else:
            click.echo(f"{len(report.problems)} problem{'s' if len(report.problems) > 1 else ''}"
                       f" found ({counts})")
    return Outcome.OK if report.intact else Outcome.FAILED


def _show_losses(snap: str, lost: list[Lost]) -> None:
    """What a restore of one snapshot would lose: a "lost:" line per path (the first 20),
    set apart from problems as notes are."""
    for x in lost[:_SHOWN]:
        shown = output.show_path(os.fsencode(x.path))
        what = f"{shown.rstrip('/')}/ (the directory's contents)" if x.kind == "dir" else shown
        click.echo(f"lost: snapshot {snap[:8]}: {what}")
    if len(lost) > _SHOWN:
        click.echo(f"lost: snapshot {snap[:8]}: and {len(lost) - _SHOWN} more (--json lists "
                   "all)")


_SHOWN = 20
COMMANDS = [check]
