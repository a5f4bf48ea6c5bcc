"""What every ``realign-data`` command shares: one-sentence errors with exit codes, and the package's logs on stderr.

Kept apart from ``cli.py`` so that command groups living in their own modules (``cli_datasets.py``) use the same
words and codes without importing the whole command line.
"""

from __future__ import annotations

import logging
import sys

import typer
from typer.core import TyperGroup


class Commands(TyperGroup):
    """Every command's runtime refusals that need no command-specific words: another process holds the output's
    lock (exit 1)."""

    def invoke(self, ctx):
        from realign_data.locks import LockHeld

        try:
            return super().invoke(ctx)
        except LockHeld as e:
            fail(str(e), 1)


class _Stderr(logging.Handler):
    """Log records as lines on the current ``sys.stderr``: ``Warning: ...`` / ``Error: ...``, plain for info."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = {logging.WARNING: "Warning: ", logging.ERROR: "Error: "}.get(record.levelno, "")
        print(prefix + record.getMessage(), file=sys.stderr, flush=True)


_HANDLER = _Stderr()


def setup_logging(quiet: bool) -> None:
    """Show the package's logs: stage messages and summaries (info) unless ``--quiet``, warnings always."""
    logger = logging.getLogger("realign_data")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def fail(message: str, code: int = 2) -> None:
    """Print one clear sentence to stderr and exit (2 = bad usage/input, 1 = runtime failure)."""
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
