"""What every ``realign-data`` command shares: one-sentence errors with exit codes, and the package's logs on stderr.

Kept apart from ``cli.py`` so that command groups living in their own modules (``cli_datasets.py``) use the same
words and codes without importing the whole command line.
"""

from __future__ import annotations

import logging

import click
import typer
from typer.core import TyperGroup


class Commands(TyperGroup):
    """Every command's runtime refusals that need no command-specific words: another process holds the output's
    lock, the disk is full (exit 1)."""

    def invoke(self, ctx):
        from realign_data.runtime.locks import LockHeld

        try:
            return super().invoke(ctx)
        except LockHeld as e:
            fail(str(e), 1)
        except Exception as e:
            full = None if isinstance(e, (typer.Exit, click.exceptions.Exit, click.ClickException)) else disk_full(e)
            if full is None:  # an exit already said (a nested group's own message) or another failure
                raise
            name = " ".join(n for n in (ctx.info_name if ctx.parent else None, ctx.invoked_subcommand) if n)
            fail(f"the disk is full ({full}): {RESUME_AFTER_FULL_DISK.get(name, RESUME_AFTER_FULL_DISK[''])}", 1)


# what survives a full disk, and how to go on (every file is written to a temporary name and renamed into place)
RESUME_AFTER_FULL_DISK = {
    "build": "the chunks it finished are kept under --out's .realign-build folder; free space (or move --out to a "
             "larger disk) and run the same command again: it resumes from them",
    "index build": "the embedding shards it finished are kept; free space and run the same command again: it "
                   "resumes from them",
    "sample": "free space and run the same command again with --overwrite (the corpus is drawn again, byte for "
              "byte)",
    "": "files already finished are kept and none is left half-written; free space and run the same command again",
}


def disk_full(exc: BaseException):
    """``"No space left on device, writing PATH"`` when ``exc`` (or what caused it) is ENOSPC/EDQUOT, else None."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or \
                "No space left on device" in str(exc):
            where = getattr(exc, "filename", None)
            return "No space left on device" + (f", writing {where}" if where else "")
        exc = exc.__cause__ or exc.__context__
    return None


def setup_logging(quiet: bool) -> None:
    """Show the package's logs: stage messages and summaries (info) unless ``--quiet``, warnings always; the
    libraries' warnings only with ``-v`` (:mod:`realign_data.runtime.logs`)."""
    from realign_data.runtime.logs import route_library_logs, show_package_logs

    show_package_logs("realign_data", logging.WARNING if quiet else logging.INFO)
    route_library_logs()


def fail(message: str, code: int = 2) -> None:
    """Print one clear sentence to stderr and exit (2 = bad usage/input, 1 = runtime failure)."""
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
