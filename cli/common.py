"""Options every command shares, and opening the repository they name."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from repofs_cli import output, passphrase

from repofs.chain import HeadsGuard
from repofs.damage import DamageLog
from repofs.location import RepoLocation, is_remote
from repofs.repository import Repository
from repofs.snapshots import SnapshotFilter

F = TypeVar("F", bound=Callable[..., Any])


class RemoteRepo(str):
    """An ssh:// location as text, with Path's ``absolute()`` (it is absolute), so commands
    that log or show ``repo.absolute()`` treat both kinds alike."""

    __slots__ = ()

    def absolute(self) -> RemoteRepo:
        return self


class Location(click.ParamType):
    """A repository path (as a Path), or an ssh:// URL kept as text (a Path would fold '//')."""

    name = "REPOSITORY"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> RepoLocation:
        if isinstance(value, Path):
            return value
        if not value:
            self.fail("the repository location is empty", param, ctx)
        return RemoteRepo(value) if is_remote(str(value)) else Path(value)


class LocalPath(click.Path):
    """A path on this machine that must not be empty: ``''`` (an unset variable in a
    script) would otherwise mean the current directory, to back up or restore into."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value == "":
            self.fail(EMPTY_PATH, param, ctx)
        return super().convert(value, param, ctx)


EMPTY_PATH = "an empty path is not allowed (an unset variable?)"


def _set_ssh(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        os.environ["REPOFS_SSH"] = value  # read by repofs.remote when it starts ssh


def _set_accept(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    ctx.meta["repofs.accept_rollback"] = value


def repo_option(f: F) -> F:
    """-r/--repo, plus the options that go with opening any repository (--ssh, rollbacks)."""
    f = click.option(
        "--accept-rollback", is_flag=True, expose_value=False, callback=_set_accept,
        help="Go on although snapshots this client saw are gone, or the history is damaged "
             "(a loud warning per problem); remember the history as it is now.")(f)
    f = click.option(
        "--ssh", metavar="COMMAND", expose_value=False, callback=_set_ssh,
        help="ssh command, or options for ssh, for ssh:// repositories (default: $REPOFS_SSH).",
    )(f)
    return click.option(
        "-r", "--repo", "repo", envvar="REPOFS_REPO", required=True, type=Location(),
        help="Repository: a path, ssh://[user@]host[:port]/path or "
             "s3://host[:port]/bucket[/prefix] (default: $REPOFS_REPO).",
    )(f)


def filter_options(f: F) -> F:
    """--host, --tag and --path (restic's): the command gets them as one ``where``
    (a ``SnapshotFilter``, the library's one rule), never as three loose values."""

    @functools.wraps(f)
    def wrapper(*args: Any, hosts: tuple[str, ...], tags: tuple[str, ...],
                paths: tuple[str, ...], **kwargs: Any) -> Any:
        where = SnapshotFilter.of(hosts, tags, (os.fsencode(os.path.abspath(p)) for p in paths))
        return f(*args, where=where, **kwargs)

    w: Any = wrapper
    w = click.option("--path", "paths", multiple=True, metavar="PATH", type=LocalPath(),
                     help="Only snapshots that backed up PATH (made absolute; repeatable: "
                          "any of them).")(w)
    w = click.option("--tag", "tags", multiple=True, metavar="TAG[,TAG...]",
                     help="Only snapshots with every TAG of the list (repeatable: any of "
                          "the lists).")(w)
    w = click.option("--host", "hosts", multiple=True, metavar="HOST",
                     help="Only snapshots of HOST (repeatable: any of them); with the "
                          "other two, 'latest' is the newest snapshot that matches.")(w)
    return w  # type: ignore[no-any-return]


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def open_repo(path: RepoLocation, index: bool = True, admin: bool = False) -> Repository:
    """Open the repository with this client's chain guard: every listing is checked against
    the heads this client saw before (repofs.chain), and damage found on the way is shown.
    ``admin``: an admin command, whose passphrase comes from REPOFS_ADMIN_* first."""
    secret = passphrase.admin() if admin else passphrase.get()
    repo = Repository.open(path, secret, index=index,
                           damage=DamageLog(lambda d: output.warn(d.line())))
    ctx = click.get_current_context(silent=True)
    accept = bool(ctx is not None and ctx.meta.get("repofs.accept_rollback"))
    repo.snapshots.guard = HeadsGuard(repo.id, accept_rollback=accept, warn=output.warn)
    return repo
