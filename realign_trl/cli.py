"""``realign-trl``: the command line of the rdpo plugin.

``realign-trl dpo`` is a drop-in for ``trl dpo``: it takes the same arguments and ``--config`` YAML files
(parsed by TRL's own ``TrlParser``), splits off ``accelerate launch`` options the same way TRL does, and
launches :mod:`realign_trl.scripts.dpo` (TRL's DPO script with the plugin active and ``RDPOConfig`` fields).
``realign-trl eval`` measures hallucination (POPE, CHAIR) of a model or an endpoint, or compares results.
Everything heavy is imported inside the commands so ``realign-trl --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

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
    path = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"),
                next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), "the --config file"))
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if "python/" in problem or "!!python" in problem:
        return (f"{path} uses a !!python tag{where}, which is refused (it would run code); write plain YAML values "
                "(strings, numbers, lists, mappings)")
    return f"{path} is not valid YAML ({problem}{where}); see examples/*.yaml for the expected layout"


def _fail(message: str, code: int = 2) -> None:
    """One sentence on stderr and an exit code: 2 = bad usage or input, 1 = runtime failure."""
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@app.command("eval")
def eval_(
    results: Optional[list[Path]] = typer.Argument(None, help="With --compare: eval_results.json files (or their directories).", show_default=False),
    model: Optional[str] = typer.Option(None, "--model", help="Checkpoint directory or Hub id (any AutoModelForImageTextToText); with --base-url, the model name the endpoint serves."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="PEFT adapter directory, loaded on --model and merged."),
    bench: str = typer.Option("pope,chair", "--bench", help="Benchmarks: pope, chair or pope,chair; or amber (with --amber-root)."),
    amber_root: Optional[Path] = typer.Option(None, "--amber-root", help="--bench amber: the AMBER release (data/annotations.json, data/query/, data/relation.json, data/safe_words.txt; images in data/image/ or --amber-images)."),
    amber_images: Optional[Path] = typer.Option(None, "--amber-images", help="--bench amber: the AMBER images folder (default: <amber-root>/data/image)."),
    pope_parser: str = typer.Option("robust", "--pope-parser", help="POPE answer reading: robust (a person's reading) or reference (POPE/LLaVA eval rule, for published numbers); both are computed."),
    chair_synonyms: str = typer.Option("reference", "--chair-synonyms", help="CHAIR object reading: reference (chair.py of Rohrbach et al.) or extended (more synonyms, colour 'orange')."),
    coco_root: Optional[Path] = typer.Option(None, "--coco-root", help="COCO-layout corpus with instances (and captions for CHAIR): MS-COCO, or `realign-data sample`."),
    split: Optional[str] = typer.Option(None, "--split", help="Annotated split, e.g. val2014 (default: the only one with instances)."),
    pope: Optional[str] = typer.Option(None, "--pope", help="A `realign-data pope` question set (directory or Hub id) instead of drawing one from --coco-root."),
    exclude_dataset: Optional[str] = typer.Option(None, "--exclude-dataset", help="Training dataset (build directory or Hub id): refuse (exit 2) when an evaluation image appears in it."),
    pope_splits: str = typer.Option("random,popular,adversarial", "--pope-splits", help="POPE samplings to evaluate."),
    num_images: Optional[int] = typer.Option(None, "--num-images", help="Held-out images: POPE asks about them, CHAIR describes them (default 500; --bench amber: all of the release).", show_default=False),
    min_objects: int = typer.Option(3, "--min-objects", help="Only images with at least this many annotated categories (POPE: 3)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the image order and of POPE's negatives (same seed = same inputs)."),
    vocabulary: str = typer.Option("annotated", "--vocabulary", help="CHAIR objects: annotated (the categories the annotation file declares) or coco (all 80)."),
    chair_prompt: str = typer.Option("Please describe this image in detail.", "--chair-prompt", help="CHAIR instruction."),
    pope_suffix: str = typer.Option("", "--pope-suffix", help="Text appended to each POPE question (LLaVA-1.5: ' Answer the question using a single word or phrase.')."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: eval-<model name>); a re-run resumes there."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (vLLM, TGI...), e.g. http://localhost:8000/v1."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="--base-url: environment variable holding the API key."),
    concurrency: int = typer.Option(16, "--concurrency", help="--base-url: requests in flight."),
    max_retries: int = typer.Option(5, "--max-retries", help="--base-url: retries on 429/5xx/timeouts/refused connections/empty answers."),
    request_timeout: float = typer.Option(60.0, "--request-timeout", help="--base-url: seconds one attempt may take in all (connecting, sending, reading the whole answer)."),
    max_failures: float = typer.Option(0.01, "--max-failures", help="Fraction of requests that may fail (error or empty answer; never scored); above it nothing is scored and the exit code is 1."),
    device: str = typer.Option("auto", "--device", help="auto (cuda:LOCAL_RANK, else MPS, else CPU), cpu, cuda, cuda:N or mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on GPUs that have it, else fp16; fp32 on CPU/MPS), bf16, fp16 or fp32."),
    device_map: Optional[str] = typer.Option(None, "--device-map", help="Spread a model too large for one GPU over several: auto, balanced, balanced_low_0 or sequential (accelerate)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generate call."),
    pope_max_new_tokens: int = typer.Option(32, "--pope-max-new-tokens", help="Length bound of POPE answers."),
    chair_max_new_tokens: int = typer.Option(256, "--chair-max-new-tokens", help="Length bound of CHAIR descriptions."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow checkpoint code (off unless you trust it)."),
    compare: bool = typer.Option(False, "--compare", help="Compare eval_results.json files (given as arguments) instead of evaluating."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With --compare: write a figure of the runs side by side (PNG, PDF or SVG; needs realign[plot])."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Measure hallucination (POPE, CHAIR) of a VLM checkpoint or an OpenAI-compatible endpoint.

    Writes eval_results.json (every metric, the exact settings, the model) and per-question / per-caption records (pope_<split>.jsonl, chair.jsonl) into --out.

    Examples: realign-trl eval --model llava-hf/llava-1.5-7b-hf --coco-root /data/coco --split val2014 --out eval-llava; realign-trl eval --compare eval-a eval-b --plot runs.png
    """
    from realign_data.runtime.logs import route_library_logs
    from realign_trl.eval.suite import EvalError

    route_library_logs()  # the libraries' warnings only with REALIGN_VERBOSE=1
    try:
        if compare:
            _compare(results or [], plot, quiet)
            return
        if results:
            raise EvalError(f"unexpected argument {str(results[0])!r} (files are only taken with --compare).")
        if plot is not None:
            raise EvalError("--plot goes with --compare (evaluate first, then compare the eval_results.json files).")
        if not model:
            raise EvalError("--model is required: a checkpoint directory or Hub id, or with --base-url the served "
                            "model name.")
        if base_url and adapter:
            raise EvalError("--adapter loads a PEFT adapter locally; with --base-url, serve the adapter from the "
                            "endpoint instead.")
        _evaluate(model=model, adapter=adapter, bench=bench, coco_root=coco_root, split=split, pope=pope,
                  exclude_dataset=exclude_dataset, pope_splits=pope_splits, num_images=num_images,
                  min_objects=min_objects, seed=seed,
                  vocabulary=vocabulary, chair_prompt=chair_prompt, pope_suffix=pope_suffix, out=out,
                  pope_parser=pope_parser, chair_synonyms=chair_synonyms, amber_root=amber_root,
                  amber_images=amber_images,
                  base_url=base_url, api_key_env=api_key_env, concurrency=concurrency, max_retries=max_retries,
                  request_timeout=request_timeout, max_failures=max_failures, device=device, dtype=dtype, device_map=device_map,
                  batch_size=batch_size, pope_max_new_tokens=pope_max_new_tokens,
                  chair_max_new_tokens=chair_max_new_tokens, trust_remote_code=trust_remote_code, quiet=quiet)
    except EvalError as e:
        _fail(str(e), 2)


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


def _evaluate(*, model: str, out: Optional[Path], base_url: Optional[str], quiet: bool, bench: str,
              pope_splits: str, **options) -> None:
    import time

    from realign_trl.eval.backends import check_model_args
    from realign_trl.eval.suite import EvalError, parse_benches

    started = time.time()
    benches = parse_benches(bench)
    if "amber" in benches and len(benches) > 1:
        raise EvalError("--bench amber runs on its own (it reads the AMBER release, not the COCO corpus): "
                        "run pope/chair and amber as two commands.")
    if "amber" not in benches and options["amber_root"] is not None:
        raise EvalError("--amber-root goes with --bench amber.")
    if options["num_images"] is None and "amber" not in benches:
        options["num_images"] = 500
    for name in ("num_images", "batch_size", "pope_max_new_tokens", "chair_max_new_tokens", "concurrency"):
        if options[name] is not None and options[name] < 1:
            raise EvalError(f"--{name.replace('_', '-')} must be at least 1 (got {options[name]}).")
    splits = [s.strip() for s in pope_splits.split(",") if s.strip()]
    from realign_data.evalsets.pope import POPE_SPLITS

    bad = [s for s in splits if s not in POPE_SPLITS]
    if bad or not splits:
        raise EvalError(f"unknown POPE sampling {', '.join(bad) or '(none)'}; valid: {', '.join(POPE_SPLITS)}.")
    for bad, message in ((options["max_retries"] < 0, "--max-retries must be 0 or more (got {max_retries})"),
                         (not options["request_timeout"] > 0,
                          "--request-timeout must be more than 0 seconds (got {request_timeout:g})"),
                         (not 0 <= options["max_failures"] <= 1,
                          "--max-failures is a fraction of the requests, from 0 to 1 (got {max_failures:g})")):
        if bad:
            raise EvalError(message.format(**options) + ".")
    if not base_url:
        check_model_args(model, adapter=options["adapter"], dtype=options["dtype"], device=options["device"])
    out = out or Path(f"eval-{Path(model.rstrip('/')).name or 'model'}")
    from realign_data.runtime.locks import LockHeld, OutputError, output_lock

    try:
        with output_lock(out, "realign-trl eval"):
            _evaluate_locked(model=model, out=out, base_url=base_url, quiet=quiet, benches=benches, splits=splits,
                             started=started, **options)
    except OutputError as e:
        raise EvalError(f"{e}.") from None
    except LockHeld as e:
        _fail(f"{e} (two evaluations into one --out would ask every question twice).", 1)
    except OSError as e:
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        _fail(f"the disk holding {out} is full ({e.strerror}): the answers saved so far in {out / 'answers.jsonl'} "
              "are kept; free some space and run the same command to resume (only the missing answers are asked).", 1)


def _evaluate_locked(*, model: str, out: Path, base_url: Optional[str], quiet: bool, benches, splits, started,
                     **options) -> None:
    import time

    from realign_trl.eval.backends import EvalRuntimeError, OpenAIBackend, TransformersBackend
    from realign_trl.eval.runner import TooManyFailures, evaluate
    from realign_trl.eval.suite import EvalSuite, refuse_training_images

    suite = EvalSuite.from_coco(options["coco_root"], split=options["split"], benches=benches,
                                num_images=options["num_images"], seed=options["seed"],
                                min_objects=options["min_objects"], pope=options["pope"], pope_splits=splits,
                                vocabulary=options["vocabulary"], chair_prompt=options["chair_prompt"],
                                pope_suffix=options["pope_suffix"], pope_parser=options["pope_parser"],
                                chair_synonyms=options["chair_synonyms"], progress=not quiet) \
        if "amber" not in benches else _amber_suite(options)
    if options["exclude_dataset"]:
        refuse_training_images(suite, options["exclude_dataset"])
    try:
        if base_url:
            backend = OpenAIBackend(model, base_url=base_url, api_key_env=options["api_key_env"],
                                    concurrency=options["concurrency"], max_retries=options["max_retries"],
                                    timeout=options["request_timeout"])
        else:
            backend = TransformersBackend(model, adapter=options["adapter"], device=options["device"],
                                          dtype=options["dtype"], device_map=options["device_map"],
                                          batch_size=options["batch_size"],
                                          trust_remote_code=options["trust_remote_code"])
    except EvalRuntimeError as e:
        _fail(str(e), 1)
    try:
        result = evaluate(backend, suite, pope_max_new_tokens=options["pope_max_new_tokens"],
                          chair_max_new_tokens=options["chair_max_new_tokens"], out=out, progress=not quiet,
                          max_failures=options["max_failures"])
    except TooManyFailures as e:
        _fail(str(e), 1)
    except KeyboardInterrupt:
        typer.echo(f"Interrupted: the answers so far are saved in {out}; run the same command to resume.", err=True)
        raise typer.Exit(130) from None
    except RuntimeError as e:
        if type(e).__name__ != "OutOfMemoryError":
            raise
        _fail(f"out of memory at --batch-size {options['batch_size']}: lower it and run the same command (the answers "
              f"so far are saved in {out} and are reused).", 1)
    finally:
        backend.close()
    if not quiet:
        typer.echo(f"{run_name(result.model, options['adapter'])}: {len(suite.images)} images in "
                   f"{time.time() - started:.1f} s")
        typer.echo(result.table())
        typer.echo(f"Results: {out / 'eval_results.json'} (records next to it)")


def run_name(model: str, adapter: Optional[str]) -> str:
    """What was evaluated, as the summary names it: ``base-model + adapter out/rdpo`` for an ``--adapter`` run."""
    return f"{model} + adapter {adapter}" if adapter else model


def _amber_suite(options: dict):
    from realign_trl.eval.amber import amber_suite
    from realign_trl.eval.suite import POPE_PARSERS, EvalError

    if options["amber_root"] is None:
        raise EvalError("--bench amber needs --amber-root: the AMBER release (its data/ folder).")
    if options["pope_parser"] not in POPE_PARSERS:
        raise EvalError(f"unknown POPE parser {options['pope_parser']!r}; valid: {', '.join(POPE_PARSERS)}.")
    suite = amber_suite(options["amber_root"], options["amber_images"], options["num_images"])
    suite.pope_parser = options["pope_parser"]
    return suite


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
