"""Quiet by default, loud with ``-v``: where the libraries' chatter goes.

The package's own messages are log records on the ``realign_data`` / ``realign_trl`` loggers, printed as plain lines
(``Warning: ...`` for warnings) by :class:`StderrLines`. What the libraries say — Python ``warnings``
(``FutureWarning``...), records of ``open_clip`` (which logs on the root logger), ``transformers``, ``datasets``,
``accelerate`` — is routed through :mod:`logging` by :func:`route_library_logs`: hidden at the default verbosity
(the package says what matters in its own words), shown once each, prefixed with the library's logger name, with
``-v`` (``realign-data -v ...``, ``realign-trl dpo -v ...``) or ``REALIGN_VERBOSE=1``.
"""

from __future__ import annotations

import logging
import os
import sys

VERBOSE_ENV = "REALIGN_VERBOSE"
"""Set to 1 by ``-v`` (and inherited by the processes a command launches): library warnings are shown."""


def verbose() -> bool:
    """True when ``-v`` was given to this command (or ``REALIGN_VERBOSE=1`` is set)."""
    return os.environ.get(VERBOSE_ENV, "").strip() not in ("", "0", "false", "False")


def set_verbose(on: bool) -> None:
    """Record ``-v`` for this process and the processes it starts (training workers read it)."""
    if on:
        os.environ[VERBOSE_ENV] = "1"


class StderrLines(logging.Handler):
    """Log records as lines on the current ``sys.stderr``: ``Warning: ...`` / ``Error: ...``, plain for info."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = {logging.WARNING: "Warning: ", logging.ERROR: "Error: "}.get(record.levelno, "")
        print(prefix + record.getMessage(), file=sys.stderr, flush=True)


class _LibraryLines(logging.Handler):
    """A library's record, once per distinct message: ``[open_clip root] WARNING: ...``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, int, str]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.name == "py.warnings":  # "path:line: FutureWarning: text\n  source line" -> the warning itself
            msg = next((part.strip() for part in msg.splitlines()[:1]), msg)
        key = (record.name, record.levelno, msg)
        if key in self.seen:
            return
        self.seen.add(key)
        print(f"[{record.name}] {record.levelname}: {msg}", file=sys.stderr, flush=True)


_LIBRARY = _LibraryLines()
# libraries that keep their own handlers (and so bypass the root logger): told through their verbosity variables
_OWN_HANDLERS = {"TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error"}


def route_library_logs(loud: bool | None = None) -> None:
    """Route the libraries' warnings through :mod:`logging`: hidden unless ``loud`` (default: :func:`verbose`).

    Installs one handler on the root logger (so ``logging.warning()`` calls of libraries such as open_clip no
    longer print ``WARNING:root:...`` through ``basicConfig``), captures Python ``warnings`` into it, and (quiet)
    sets ``TRANSFORMERS_VERBOSITY``/``DATASETS_VERBOSITY`` to ``error`` for this process and those it launches
    unless the user set them. Errors are always shown.
    """
    loud = verbose() if loud is None else loud
    root = logging.getLogger()
    if _LIBRARY not in root.handlers:
        root.addHandler(_LIBRARY)
    _LIBRARY.setLevel(logging.WARNING if loud else logging.ERROR)
    logging.captureWarnings(True)
    if not loud:
        for name, level in _OWN_HANDLERS.items():
            os.environ.setdefault(name, level)
        for name in ("transformers", "datasets"):  # already imported: their verbosity variable was read then
            if name in sys.modules:
                logging.getLogger(name).setLevel(logging.ERROR)


def show_package_logs(name: str, level: int = logging.INFO) -> None:
    """Print the records of the package logger ``name`` (``realign_data``, ``realign_trl``) as plain lines."""
    logger = logging.getLogger(name)
    if not any(isinstance(h, StderrLines) for h in logger.handlers):
        logger.addHandler(StderrLines())
        logger.propagate = False
    logger.setLevel(level)
