"""What every ``realign-data`` command shares: one-sentence errors with exit codes, and the package's logs on stderr.

Kept apart from ``cli.py`` so that command groups living in their own modules (``cli_datasets.py``) use the same
words and codes without importing the whole command line.
"""

from __future__ import annotations

import inspect
import logging
from typing import Callable, Optional, Sequence

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
    "sample": "free space and run the same command again with --overwrite (the corpus is drawn again, byte for byte)",
    "": "files already finished are kept and none is left half-written; free space and run the same command again",
}


def disk_full(exc: BaseException):
    """``"No space left on device, writing PATH"`` when ``exc`` (or what caused it) is ENOSPC/EDQUOT, else None."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (
            isinstance(exc, OSError)
            and exc.errno in (errno.ENOSPC, errno.EDQUOT)
            or "No space left on device" in str(exc)
        ):
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


# ------------------------------------------------------------------ one way to declare a command's options
def config_options(cls: type, *, sections: Optional[Sequence[str]] = None) -> list[inspect.Parameter]:
    """One typer option per field of the dataclass ``cls``, from the field's metadata: the one generator behind
    ``realign-data build`` (:class:`~realign_data.building.config.BuildConfig`), ``realign-data sample``
    (:class:`~realign_data.testing.sample_options.SampleConfig`) and ``realign-trl eval``
    (:class:`~realign_trl.eval.config.EvalConfig`).

    Metadata keys: ``help``; ``choices`` (appended to the help as "One of: ..."); ``section`` (the ``--help`` panel;
    with ``sections``, options are ordered by it); ``flag`` (the declarations when not ``--field-name``: a string or
    a tuple); ``default_text`` (shown for a ``None`` default); ``cli`` (False: not an option); ``cli_default`` and
    ``cli_help`` (the command line's own default and a sentence added to the help, where they differ from the
    Python API's). A field without a default is a required option.
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
    if sections is not None:
        fields.sort(key=lambda f: sections.index(f.metadata["section"]))
    params = []
    for f in fields:
        meta, typ = f.metadata, hints[f.name]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        base = args[0] if typing.get_origin(typ) is typing.Union else typ
        if typing.get_origin(base) is list or base is list:
            base = list[str]
        decls = meta.get("flag", f"--{f.name.replace('_', '-')}")
        decls = (decls,) if isinstance(decls, str) else tuple(decls)
        help_text = meta["help"] + (f" One of: {', '.join(meta['choices'])}." if meta.get("choices") else "")
        help_text += meta.get("cli_help", "")
        default = meta.get("cli_default", f.default)
        if default is dataclasses.MISSING:
            default = ...
        show = True if default is not None else meta.get("default_text", False)
        option = typer.Option(default, *decls, help=help_text, show_default=show, rich_help_panel=meta.get("section"))
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=option,
                annotation=base if default is not None else Optional[base],
            )
        )
    return params


def with_options(command: Callable, params: Sequence[inspect.Parameter]) -> Callable:
    """``command`` (which takes ``**values``) with ``params`` (from :func:`config_options`, plus any of the command's
    own) as its signature, for typer to read."""
    own = [p for p in inspect.signature(command).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = inspect.Signature(own + list(params))
    command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
    return command
