"""``repofs replicate SRC DST``: copy a repository without any key (repofs.replicate)."""

from __future__ import annotations

import click
from repofs_cli import output
from repofs_cli.common import Location, json_option
from repofs_cli.outcome import Outcome

from repofs import audit
from repofs.damage import DamageLog
from repofs.location import RepoLocation
from repofs.replicate import replicate


@click.command("replicate")
@click.argument("src", type=Location())
@click.argument("dst", type=Location())
@json_option
def replicate_cmd(src: RepoLocation, dst: RepoLocation, as_json: bool) -> Outcome:
    """Copy every object DST lacks from SRC, each verified against its name first.

    Needs no passphrase. Creates only: never deletes or overwrites at DST, so it is
    safe to run again (a second run copies nothing) and an interrupted run resumes.
    SRC and DST are each a path, ssh:// or s3://. See repofs-replicate(1).
    """
    progress = output.Progress()
    damage = DamageLog(lambda d: output.warn(d.line()))
    report = replicate(src, dst, damage, progress.show if progress.enabled else None)
    progress.done()
    copied = sum(report.copied.values())
    audit.event("replicate", src=str(src), dst=str(dst), copied=copied,
                bytes_copied=report.bytes_copied, skipped=len(report.skipped))
    if as_json:
        output.emit_json({"created": report.created, "copied": report.copied,
                          "present": report.present, "bytes_copied": report.bytes_copied,
                          "skipped": [{"namespace": ns, "name": n, "detail": why}
                                      for ns, n, why in report.skipped]})
    else:
        present = sum(report.present.values())
        click.echo(f"copied {copied} objects ({output.human_size(report.bytes_copied)}) to "
                   f"{dst}; {present} were there already"
                   + (f"; skipped {len(report.skipped)} that did not verify"
                      if report.skipped else ""))
    return Outcome.WARNINGS if report.skipped else Outcome.OK


COMMANDS = [replicate_cmd]
