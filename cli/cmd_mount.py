"""``repofs mount`` and ``repofs umount``: browse every snapshot as a read-only file system."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from repofs_cli.common import LocalPath, filter_options, open_repo, repo_option

from repofs import audit
from repofs.snapshots import SnapshotFilter

# repofs.fuse pulls in pyfuse3 and trio (~0.1 s): imported by the two commands that use
# it, so every other command starts faster.


def _octal(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        mask = int(value, 8)
    except ValueError:
        raise click.BadParameter("must be an octal number such as 022") from None
    if not 0 <= mask <= 0o7777:
        raise click.BadParameter("must be between 0 and 7777")
    return mask


@click.command("mount")
@repo_option
@click.argument("mountpoint", type=LocalPath(file_okay=False, path_type=Path))
@click.option("--snapshot", "ref", metavar="SNAPSHOT",
              help="Show only this snapshot (id, id prefix, name or 'latest') at the root.")
@filter_options
@click.option("-f", "--foreground", is_flag=True,
              help="Stay attached and log to stderr; unmount on Ctrl-C.")
@click.option("--allow-other", is_flag=True,
              help="Let other users in (stored owners and modes still apply).")
@click.option("--uid", type=click.IntRange(0, 2**32 - 2), help="Show every file as owned by UID.")
@click.option("--gid", type=click.IntRange(0, 2**32 - 2), help="Show every file with group GID.")
@click.option("--umask", callback=_octal, metavar="OCTAL",
              help="Clear these permission bits of every file (e.g. 077).")
@click.option("--log-file", type=LocalPath(dir_okay=False, path_type=Path),
              help="Append the daemon's log lines here (default: syslog).")
def mount(repo: Path, mountpoint: Path, ref: str | None, where: SnapshotFilter,
          foreground: bool, allow_other: bool, uid: int | None, gid: int | None,
          umask: int | None, log_file: Path | None) -> None:
    """Mount the repository's snapshots read-only at MOUNTPOINT.

    Returns once the file system is ready; a daemon serves it until
    `repofs umount MOUNTPOINT`. The root holds ids/, snapshots/ (with
    latest), hosts/, tags/ and history/; see repofs-mount(1).

    \b
    Examples:
      repofs mount /mnt/backup && ls /mnt/backup/snapshots/latest/
      ls /mnt/backup/history/home/alice/notes.txt/
      repofs mount --snapshot latest --foreground /mnt/backup
    """
    from repofs import fuse
    from repofs.vfs import Presentation, SnapshotFS

    if ref is None and not where.empty:  # the layout shows all: hosts/ and tags/ choose
        raise click.UsageError("--host, --tag and --path choose the --snapshot to mount; "
                               "without it every snapshot is shown (see hosts/ and tags/)")

    if log_file is not None:  # here, not in the daemon: its errors reach no terminal
        try:
            with open(log_file, "a"):
                pass
        except OSError as e:
            raise click.BadParameter(f"cannot open {log_file}: {e.strerror}",
                                     param_hint="--log-file") from None
    r = open_repo(repo)
    if not r.can_read:
        raise click.ClickException("this key cannot read snapshot contents")
    snap = r.snapshots.resolve(ref, where=where) if ref is not None else None
    fs = SnapshotFS(r, Presentation(uid=uid, gid=gid, umask=umask or 0), snap)
    # from now on damage is met in the daemon, whose standard error goes nowhere: its log;
    # what was met while opening (printed already) is logged there too, for whoever reads
    # the log later
    met = tuple(d.line() for d in r.damage) if not foreground else ()
    r.damage.listener = lambda d: logging.getLogger("repofs.mount").warning("%s", d.line())

    def audit_mount() -> None:  # logged once served: at once in the foreground, else when ready
        audit.event("mount", repo=r.id, key=r.keys.key_name, path=repo.absolute(),
                    mountpoint=mountpoint.absolute(), snapshot=snap.id if snap else None,
                    allow_other=allow_other, foreground=foreground)

    if foreground:
        audit_mount()
    fuse.mount(fs, str(mountpoint), fuse.MountConfig(
        allow_other=allow_other, foreground=foreground,
        log_file=str(log_file.absolute()) if log_file is not None else None,
        logged_at_start=met))
    if not foreground:
        audit_mount()


@click.command("umount")
@click.argument("mountpoint", type=LocalPath(path_type=Path))
def umount(mountpoint: Path) -> None:
    """Unmount a repofs mount (also when its daemon was killed)."""
    from repofs import fuse

    fuse.unmount(str(mountpoint))
    audit.event("umount", mountpoint=mountpoint.absolute())


COMMANDS = [mount, umount]
