"""Options every command shares, and opening the repository they name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from repofs_cli import passphrase

from repofs.repository import Repository

F = TypeVar("F", bound=Callable[..., Any])


def repo_option(f: F) -> F:
    return click.option(
        "-r", "--repo", "repo", envvar="REPOFS_REPO", required=True,
        type=click.Path(path_type=Path), help="Repository path (default: $REPOFS_REPO).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def open_repo(path: Path) -> Repository:
    return Repository.open(path, passphrase.get())
