"""Entry point: the command group, global options, and the one place exit codes are chosen.

Exit codes: 0 success; 1 finished with warnings (some files not saved or
restored); 2 error (nothing was changed that could be mistaken for success);
130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback

import click
from repofs_cli import (
    cmd_check,
    cmd_create,
    cmd_forget,
    cmd_init,
    cmd_key,
    cmd_mount,
    cmd_prune,
    cmd_read,
    cmd_restore,
    cmd_serve,
)

from repofs import __version__
from repofs.errors import RepofsError

EXIT_OK, EXIT_WARNINGS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="repofs")
def cli() -> None:
    """repofs: deduplicating, encrypted, append-only backups."""


for module in (cmd_init, cmd_create, cmd_read, cmd_restore, cmd_mount, cmd_serve,
               cmd_check, cmd_key, cmd_forget, cmd_prune):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    try:
        rc = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("repofs: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("\nrepofs: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except RepofsError as e:
        click.echo(f"repofs: error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_ERROR)
    except OSError as e:
        where = f" ({os.fsdecode(e.filename)})" if e.filename else ""
        click.echo(f"repofs: error: {e.strerror or e}{where}", err=True)
        sys.exit(EXIT_ERROR)
    except Exception as e:  # a bug: one line, the traceback only on request
        click.echo(f"repofs: internal error: {type(e).__name__}: {e}", err=True)
        if os.environ.get("REPOFS_DEBUG"):
            traceback.print_exc()
        else:
            click.echo("repofs: set REPOFS_DEBUG=1 for a traceback, and please report it",
                       err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)


if __name__ == "__main__":
    main()
