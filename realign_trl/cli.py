"""``realign-trl``: the command line of the rdpo plugin.

``realign-trl dpo`` is a drop-in for ``trl dpo``: it takes the same arguments and ``--config`` YAML files
(parsed by TRL's own ``TrlParser``), splits off ``accelerate launch`` options the same way TRL does, and
launches :mod:`realign_trl.scripts.dpo` (TRL's DPO script with the plugin active and ``RDPOConfig`` fields).
``realign-trl eval`` measures hallucination (POPE, CHAIR) of a model or an endpoint, or compares results.
Everything heavy is imported inside the commands so ``realign-trl --help`` stays fast.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Optional

import typer

from realign_data.cli_common import with_options
from realign_trl.eval.config import EvalConfig

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
    (`realign-trl dpo --help` lists every flag, including the rdpo_* ones; -v/--verbose shows TRL's full
    per-step metrics and the libraries' warnings.)
    """
    import subprocess

    from accelerate.commands.launch import launch_command, launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    from .scripts import dpo as script

    all_args = [a for a in ctx.args if a not in ("-v", "--verbose")]
    _quiet_launch(verbose=len(all_args) < len(ctx.args))
    parser = script.make_parser(prog="realign-trl dpo")
    # Handles -h/--help (exits). Leftover strings are `accelerate launch` options, as in `trl dpo`.
    try:
        script_config, dpo_config, model_config, _, config_remaining, cli_remaining = parser.parse_args_and_config(
            all_args, return_remaining_strings=True, separate_remaining_strings=True
        )
        script.preflight(model_config, dpo_config, script_config)
        if dpo_config.curriculum:
            from .curriculum import check_curriculum_args

            check_curriculum_args(dpo_config, script=True)
        launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"realign-trl dpo: {err}", err=True)
        raise typer.Exit(2) from None
    except Exception as err:
        import yaml

        if not isinstance(err, yaml.YAMLError):
            raise
        typer.echo(f"realign-trl dpo: {_yaml_problem(all_args, err)}", err=True)
        raise typer.Exit(2) from None
    training_args = _subtract_subsequence(all_args, cli_remaining)
    accelerate_args = launch_command_parser().parse_args(launch_args + [script.__file__] + training_args)
    try:
        launch_command(accelerate_args)
    except subprocess.CalledProcessError as err:
        raise typer.Exit(err.returncode or 1) from None


def _quiet_launch(verbose: bool) -> None:
    """``-v``/``--verbose``: TRL's full per-step dicts, accelerate's defaults notice and the libraries' warnings;
    without it one line per logging step (:mod:`realign_trl.step_logs`) and only the package's own messages."""
    import logging

    from realign_data.runtime.logs import route_library_logs, set_verbose

    set_verbose(verbose)  # inherited by the training processes
    route_library_logs(verbose)
    if not verbose:  # "values were not passed to `accelerate launch` and had defaults used instead" (4 lines)
        logging.getLogger("accelerate.commands.launch").setLevel(logging.ERROR)


def _yaml_problem(args: list[str], err) -> str:
    """One sentence for a ``--config`` file YAML cannot read (or would only read by running code: ``!!python``)."""
    path = next(
        (args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"),
        next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), "the --config file"),
    )
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if "python/" in problem or "!!python" in problem:
        return (
            f"{path} uses a !!python tag{where}, which is refused (it would run code); write plain YAML values "
            "(strings, numbers, lists, mappings)"
        )
    return f"{path} is not valid YAML ({problem}{where}); see examples/*.yaml for the expected layout"


def _fail(message: str, code: int = 2) -> None:
    """One sentence on stderr and an exit code: 2 = bad usage or input, 1 = runtime failure."""
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _eval_command_options(
    results: Optional[list[Path]] = typer.Argument(
        None, help="With --compare: eval_results.json files (or their directories).", show_default=False
    ),
    *,
    compare: bool = typer.Option(
        False, "--compare", help="Compare eval_results.json files (given as arguments) instead of evaluating."
    ),
    plot: Optional[Path] = typer.Option(
        None,
        "--plot",
        help="With --compare: write a figure of the runs side by side (PNG, PDF or SVG; needs realign[plot]).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """The options of ``realign-trl eval`` that are not evaluation settings (comparing runs, the progress bar);
    the settings are :class:`~realign_trl.eval.config.EvalConfig`'s fields."""


def eval_(**values) -> None:
    """Measure hallucination (POPE, CHAIR) of a VLM checkpoint or an OpenAI-compatible endpoint.

    Writes eval_results.json (every metric, the exact settings, the model) and per-question / per-caption records (pope_<split>.jsonl, chair.jsonl) into --out.

    Examples: realign-trl eval --model llava-hf/llava-1.5-7b-hf --coco-root /data/coco --split val2014 --out eval-llava; realign-trl eval --compare eval-a eval-b --plot runs.png
    """
    from realign_data.runtime.logs import route_library_logs
    from realign_trl.eval.suite import EvalError

    results, compare, plot, quiet = (values.pop(k) for k in ("results", "compare", "plot", "quiet"))
    config = EvalConfig(**values)
    route_library_logs()  # the libraries' warnings only with REALIGN_VERBOSE=1
    try:
        if compare:
            _compare(results or [], plot, quiet)
            return
        if results:
            raise EvalError(f"unexpected argument {str(results[0])!r} (files are only taken with --compare).")
        if plot is not None:
            raise EvalError("--plot goes with --compare (evaluate first, then compare the eval_results.json files).")
        if not config.model:
            raise EvalError(
                "--model is required: a checkpoint directory or Hub id, or with --base-url the served model name."
            )
        if config.base_url and config.adapter:
            raise EvalError(
                "--adapter loads a PEFT adapter locally; with --base-url, serve the adapter from the endpoint instead."
            )
        _evaluate(config, quiet)
    except EvalError as e:
        _fail(str(e), 2)


def _eval_options() -> list[inspect.Parameter]:
    """``results``, then one option per :class:`EvalConfig` field (:func:`realign_data.cli_common.config_options`),
    then ``--compare``, ``--plot`` and ``--quiet``."""
    from realign_data.cli_common import config_options

    own = list(inspect.signature(_eval_command_options, eval_str=True).parameters.values())
    return own[:1] + config_options(EvalConfig) + own[1:]


app.command("eval")(with_options(eval_, _eval_options()))


def _compare(paths: list[Path], plot: Optional[Path], quiet: bool) -> None:
    from realign_trl.eval.compare import compare_table, load_results, plot_comparison, run_labels

    runs = load_results(paths)
    labels = run_labels(runs)
    if not quiet:
        typer.echo(compare_table(runs, labels))
    if plot is not None:
        path = plot_comparison(runs, plot, labels)
        if not quiet:
            typer.echo(f"Figure: {path}")


def _evaluate(config: EvalConfig, quiet: bool) -> None:
    import dataclasses
    import time

    from realign_trl.eval.backends import check_model_args
    from realign_trl.eval.config import too_small
    from realign_trl.eval.suite import EvalError, parse_benches

    started = time.time()
    benches = parse_benches(config.bench)
    if "amber" in benches and len(benches) > 1:
        raise EvalError(
            "--bench amber runs on its own (it reads the AMBER release, not the COCO corpus): "
            "run pope/chair and amber as two commands."
        )
    if "amber" not in benches and config.amber_root is not None:
        raise EvalError("--amber-root goes with --bench amber.")
    if config.num_images is None and "amber" not in benches:
        config = dataclasses.replace(config, num_images=500)
    for name, value, low in too_small(config):
        raise EvalError(f"--{name.replace('_', '-')} must be at least {low} (got {value}).")
    splits = [s.strip() for s in config.pope_splits.split(",") if s.strip()]
    from realign_data.evalsets.pope import POPE_SPLITS

    bad = [s for s in splits if s not in POPE_SPLITS]
    if bad or not splits:
        raise EvalError(f"unknown POPE sampling {', '.join(bad) or '(none)'}; valid: {', '.join(POPE_SPLITS)}.")
    for bad, message in (
        (config.max_retries < 0, "--max-retries must be 0 or more (got {max_retries})"),
        (not config.request_timeout > 0, "--request-timeout must be more than 0 seconds (got {request_timeout:g})"),
        (
            not 0 <= config.max_failures <= 1,
            "--max-failures is a fraction of the requests, from 0 to 1 (got {max_failures:g})",
        ),
    ):
        if bad:
            raise EvalError(message.format(**dataclasses.asdict(config)) + ".")
    if not config.base_url:
        check_model_args(config.model, adapter=config.adapter, dtype=config.dtype, device=config.device)
    out = config.out or Path(f"eval-{Path(config.model.rstrip('/')).name or 'model'}")
    from realign_data.runtime.locks import LockHeld, OutputError, output_lock

    try:
        with output_lock(out, "realign-trl eval"):
            _evaluate_locked(config, out=out, quiet=quiet, benches=benches, started=started)
    except OutputError as e:
        raise EvalError(f"{e}.") from None
    except LockHeld as e:
        _fail(f"{e} (two evaluations into one --out would ask every question twice).", 1)
    except OSError as e:
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        _fail(
            f"the disk holding {out} is full ({e.strerror}): the answers saved so far in {out / 'answers.jsonl'} "
            "are kept; free some space and run the same command to resume (only the missing answers are asked).",
            1,
        )


def _evaluate_locked(config: EvalConfig, *, out: Path, quiet: bool, benches, started) -> None:
    import time

    from realign_trl.eval.backends import EvalRuntimeError, OpenAIBackend, TransformersBackend
    from realign_trl.eval.runner import TooManyFailures, evaluate
    from realign_trl.eval.suite import EvalSuite, refuse_training_images

    suite = EvalSuite.from_config(config, progress=not quiet) if "amber" not in benches else _amber_suite(config)
    if config.exclude_dataset:
        refuse_training_images(suite, config.exclude_dataset)
    try:
        if config.base_url:
            backend = OpenAIBackend(
                config.model,
                base_url=config.base_url,
                api_key_env=config.api_key_env,
                concurrency=config.concurrency,
                max_retries=config.max_retries,
                timeout=config.request_timeout,
            )
        else:
            backend = TransformersBackend(
                config.model,
                adapter=config.adapter,
                device=config.device,
                dtype=config.dtype,
                device_map=config.device_map,
                batch_size=config.batch_size,
                trust_remote_code=config.trust_remote_code,
            )
    except EvalRuntimeError as e:
        _fail(str(e), 1)
    try:
        result = evaluate(
            backend,
            suite,
            pope_max_new_tokens=config.pope_max_new_tokens,
            chair_max_new_tokens=config.chair_max_new_tokens,
            out=out,
            progress=not quiet,
            max_failures=config.max_failures,
        )
    except TooManyFailures as e:
        _fail(str(e), 1)
    except KeyboardInterrupt:
        typer.echo(f"Interrupted: the answers so far are saved in {out}; run the same command to resume.", err=True)
        raise typer.Exit(130) from None
    except RuntimeError as e:
        if type(e).__name__ != "OutOfMemoryError":
            raise
        _fail(
            f"out of memory at --batch-size {config.batch_size}: lower it and run the same command (the answers "
            f"so far are saved in {out} and are reused).",
            1,
        )
    finally:
        backend.close()
    if not quiet:
        typer.echo(
            f"{run_name(result.model, config.adapter)}: {len(suite.images)} images in {time.time() - started:.1f} s"
        )
        typer.echo(result.table())
        typer.echo(f"Results: {out / 'eval_results.json'} (records next to it)")


def run_name(model: str, adapter: Optional[str]) -> str:
    """What was evaluated, as the summary names it: ``base-model + adapter out/rdpo`` for an ``--adapter`` run."""
    return f"{model} + adapter {adapter}" if adapter else model


def _amber_suite(config: EvalConfig):
    from realign_trl.eval.amber import amber_suite
    from realign_trl.eval.suite import POPE_PARSERS, EvalError

    if config.amber_root is None:
        raise EvalError("--bench amber needs --amber-root: the AMBER release (its data/ folder).")
    if config.pope_parser not in POPE_PARSERS:
        raise EvalError(f"unknown POPE parser {config.pope_parser!r}; valid: {', '.join(POPE_PARSERS)}.")
    suite = amber_suite(config.amber_root, config.amber_images, config.num_images)
    suite.pope_parser = config.pope_parser
    return suite


@app.command("iterate")
def iterate(
    rounds: int = typer.Option(..., "--rounds", help="On-policy rounds (build, train, evaluate) to run or resume."),
    policy: str = typer.Option(..., "--policy", help="The starting policy: a checkpoint directory or Hub id."),
    out: Path = typer.Option(..., "--out", help="Directory of the rounds (start/, round-0/, ...; resumable)."),
    dpo_config: Path = typer.Option(..., "--dpo-config", help="The training recipe: a `realign-trl dpo` YAML."),
    build_args: str = typer.Option("", "--build-args", help="Arguments of every `realign-data build` (quoted)."),
    eval_args: str = typer.Option("", "--eval-args", help="Arguments of every `realign-trl eval` (quoted)."),
) -> None:
    """On-policy rounds: build from the policy's own answers, train, evaluate; then the next round from the
    trained policy. Ends with every round's POPE and CHAIR (docs/building.md, On-policy rounds).

    Example: realign-trl iterate --rounds 3 --policy llava-hf/llava-1.5-7b-hf --out rounds --dpo-config
    examples/rdpo_llava.yaml --build-args "--coco-root data/coco --num-responses 4" --eval-args "--coco-root
    data/coco --split val2014"
    """
    from .iterate import IterateError, StepFailed, run_app, run_rounds

    try:
        table = run_rounds(
            rounds, policy, out, dpo_config, build_args, eval_args, say=typer.echo, evaluate=lambda a: run_app(app, a)
        )
    except IterateError as e:
        _fail(str(e), 2)
    except StepFailed as e:
        _fail(str(e), 1)
    typer.echo(table)


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
