"""``realign-trl``: the command line of the rdpo plugin.

``realign-trl dpo`` is a drop-in for ``trl dpo``: it takes the same arguments and ``--config`` YAML files
(parsed by TRL's own ``TrlParser``), splits off ``accelerate launch`` options the same way TRL does, and
launches :mod:`realign_trl.scripts.dpo` (TRL's DPO script with the plugin active and ``RDPOConfig`` fields).
Everything heavy is imported inside the commands so ``realign-trl --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="realign-trl",
    help="Train vision-language models with Re-Align's rDPO (loss_type='rdpo') through TRL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Train vision-language models with Re-Align's rDPO (loss_type='rdpo') through TRL."""


def _subtract_subsequence(lst: list[str], subseq: list[str]) -> list[str]:
    """``lst`` without the ordered subsequence ``subseq`` (same rule as TRL's CLI)."""
    it = iter(subseq)
    current = next(it, None)
    out = []
    for item in lst:
        if current is not None and item == current:
            current = next(it, None)
        else:
            out.append(item)
    return out


@app.command(
    "dpo",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def dpo(ctx: typer.Context) -> None:
    """Run TRL's DPO script with rDPO available: same flags and --config YAML as `trl dpo`.

    Example: realign-trl dpo --config examples/rdpo_llava.yaml
    (`realign-trl dpo --help` lists every flag, including the rdpo_* ones.)
    """
    import subprocess

    from accelerate.commands.launch import launch_command, launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    from .scripts import dpo as script

    all_args = list(ctx.args)
    parser = script.make_parser(prog="realign-trl dpo")
    # Handles -h/--help (exits). Leftover strings are `accelerate launch` options, as in `trl dpo`.
    try:
        _, dpo_config, model_config, _, config_remaining, cli_remaining = parser.parse_args_and_config(
            all_args, return_remaining_strings=True, separate_remaining_strings=True
        )
        script.preflight(model_config, dpo_config)
        if dpo_config.curriculum:
            from .curriculum import check_curriculum_args

            check_curriculum_args(dpo_config, script=True)
        launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"realign-trl dpo: {err}", err=True)
        raise typer.Exit(2) from None
    training_args = _subtract_subsequence(all_args, cli_remaining)
    accelerate_args = launch_command_parser().parse_args(launch_args + [script.__file__] + training_args)
    try:
        launch_command(accelerate_args)
    except subprocess.CalledProcessError as err:
        raise typer.Exit(err.returncode or 1) from None


@app.command("version")
def version() -> None:
    """Print the plugin version and the supported TRL range."""
    from . import SUPPORTED_TRL, __version__
    from ._compat import installed_trl_version

    typer.echo(f"realign_trl {__version__} (TRL {installed_trl_version()} installed, supported {SUPPORTED_TRL})")


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    main()
