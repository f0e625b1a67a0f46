"""Entry point: the command group, global options, and the one place exit codes are chosen.

Exit codes (repofs(1), EXIT STATUS): 0 success; 1 finished with warnings
(something was left out, skipped or not done, each named on standard error);
2 error (what was asked is unusable or could not be done; one line on
standard error, nothing was changed that could be mistaken for success);
130 interrupted. Commands return an ``Outcome``; ``exit_code`` maps it, and a
command that printed a warning never exits 0.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click
from repofs_cli import (
    cmd_check,
    cmd_create,
    cmd_forget,
    cmd_init,
    cmd_inspect,
    cmd_key,
    cmd_mount,
    cmd_prune,
    cmd_read,
    cmd_repair,
    cmd_replicate,
    cmd_restore,
    cmd_s3policy,
    cmd_serve,
    output,
)
from repofs_cli.outcome import Outcome

from repofs import __version__
from repofs.errors import RepofsError

EXIT_OK, EXIT_WARNINGS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
_CODES = {Outcome.OK: EXIT_OK, Outcome.WARNINGS: EXIT_WARNINGS, Outcome.FAILED: EXIT_ERROR}


def exit_code(result: object) -> int:
    """The exit status of a command that returned ``result`` (an Outcome; None is OK; an
    int is click's own, for --help and --version). Any warning shown makes it at least 1."""
    if isinstance(result, Outcome):
        code = _CODES[result]
    elif isinstance(result, int) and not isinstance(result, bool):
        code = result
    else:
        code = EXIT_OK
    if code == EXIT_OK and output.warnings_shown():
        code = EXIT_WARNINGS
    return code


class StdoutClosed(Exception):
    """Standard output was closed early (``repofs dump ... | head``): what was asked was
    not done. click would turn the EPIPE into exit 1 itself, which a script reads as "done,
    with warnings"; carried past click as this, it becomes exit 2 in ``main``."""


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:
            raise StdoutClosed from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="repofs")
def cli() -> None:
    """repofs: deduplicating, encrypted, append-only backups."""


for module in (cmd_init, cmd_create, cmd_read, cmd_restore, cmd_mount, cmd_serve,
               cmd_check, cmd_repair, cmd_key, cmd_forget, cmd_prune, cmd_inspect,
               cmd_replicate, cmd_s3policy):
    for command in module.COMMANDS:
        cli.add_command(command)


class _Notes(logging.Handler):
    """What the library logs about local caches (an index cache ignored and rebuilt):
    shown as notes, since it costs time, never correctness, and leaves the exit status."""

    def emit(self, record: logging.LogRecord) -> None:
        output.note(record.getMessage())


def main() -> None:
    cache_log = logging.getLogger("repofs.blobcache")
    cache_log.addHandler(_Notes(logging.WARNING))
    cache_log.propagate = False
    try:
        rc = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("repofs: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.NoArgsIsHelpError as e:  # a group without its command
        path = e.ctx.command_path if e.ctx is not None else "repofs"
        output.error(f"no command given (see '{path} --help')")
        sys.exit(EXIT_ERROR)
    except click.UsageError as e:
        where = f"repofs {e.ctx.command_path.split(' ', 1)[1]}" if (
            e.ctx is not None and " " in e.ctx.command_path) else "repofs"
        output.error(f"{e.format_message()} (see '{where} --help')")
        sys.exit(EXIT_ERROR)
    except click.ClickException as e:
        output.error(e.format_message())
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("\nrepofs: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except RepofsError as e:
        output.error(str(e))
        sys.exit(EXIT_ERROR)
    except (BrokenPipeError, StdoutClosed):
        _quiet_stdout()
        sys.exit(EXIT_ERROR)
    except OSError as e:
        where = f" ({os.fsdecode(e.filename)})" if e.filename else ""
        output.error(f"{e.strerror or e}{where}")
        sys.exit(EXIT_ERROR)
    except Exception as e:  # a bug: one line, the traceback only on request
        click.echo(f"repofs: internal error: {type(e).__name__}: {e}", err=True)
        if os.environ.get("REPOFS_DEBUG"):
            traceback.print_exc()
        else:
            click.echo("repofs: set REPOFS_DEBUG=1 for a traceback, and please report it",
                       err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(exit_code(rc))


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush of a closed pipe
    prints nothing (and changes no exit status)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    main()
