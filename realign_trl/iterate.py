"""``realign-trl iterate``: on-policy rounds, each one build -> train -> evaluate, resumable per round.

    realign-trl iterate --rounds 3 --policy llava-hf/llava-1.5-7b-hf --out rounds \\
        --dpo-config examples/rdpo_llava.yaml \\
        --build-args "--coco-root data/coco --num-responses 4 --temperature 0.7" \\
        --eval-args "--coco-root data/coco --split val2014 --num-images 500"

The starting policy is evaluated once (``OUT/start/eval``). Then round ``r`` (``OUT/round-r``):

1. ``data``: ``realign-data build --responses-from POLICY --responses-backend transformers --round r`` plus
   ``--build-args`` (:mod:`realign_data.building.onpolicy`: the policy's own answers, corrected where they
   hallucinate);
2. ``train``: ``realign-trl dpo --config DPO_CONFIG --model_name_or_path POLICY --dataset_name data`` (the recipe
   is the YAML's: ``loss_type: rdpo``, its weights, steps, LoRA...);
3. ``policy``: the trained model as a standalone checkpoint (a PEFT adapter is merged into its base), the policy
   of round ``r + 1``;
4. ``eval``: ``realign-trl eval --model policy`` plus ``--eval-args`` (POPE and CHAIR on held-out images).

Each step leaves its result where the next run finds it: a finished round has ``OUT/round-r/round.json`` and is
skipped; in an unfinished one the build and the evaluation resume from their own checkpoints, a finished training
(``train/trained.json``) and merge (``policy/``, renamed into place) are kept, and an interrupted training starts
again. ``OUT/iterate.json`` records the arguments: a re-run with others is refused (more ``--rounds`` is fine).
The end prints every round's POPE and CHAIR side by side (:func:`realign_trl.eval.compare.compare_table`).

The build and the evaluation run in this process (their command lines, so their checks and messages are the ones
a user knows); the training runs as ``realign-trl dpo`` does, through ``accelerate launch`` in a child process.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

STATE_FILE = "iterate.json"
ROUND_FILE = "round.json"
OWN_BUILD_FLAGS = ("--out", "--responses-from", "--responses-backend", "--round")
OWN_EVAL_FLAGS = ("--model", "--out", "--adapter", "--base-url")


class IterateError(ValueError):
    """The rounds cannot run as asked (a user mistake, one sentence; exit 2)."""


class StepFailed(RuntimeError):
    """A step of a round failed at run time (exit 1); its own message was printed by the step."""


def _split(args: str, own: tuple, what: str) -> list[str]:
    try:
        parts = shlex.split(args or "")
    except ValueError as e:
        raise IterateError(f"--{what} {args!r} cannot be read as command-line arguments ({e})") from None
    taken = sorted({p.split("=", 1)[0] for p in parts} & set(own))
    if taken:
        raise IterateError(f"--{what} must leave {', '.join(taken)} to iterate (it sets them for every round)")
    return parts


def check(rounds: int, policy: str, out: Path, dpo_config: Path, build_args: str, eval_args: str) -> dict:
    """The state recorded in ``OUT/iterate.json`` (or an :class:`IterateError` naming the bad value)."""
    if rounds < 1:
        raise IterateError(f"--rounds must be >= 1, got {rounds}")
    if str(policy).startswith(("/", ".", "~")) and not Path(policy).expanduser().is_dir():
        raise IterateError(f"--policy {policy!r} is a local path that does not exist; give a checkpoint directory")
    if not Path(dpo_config).is_file():
        raise IterateError(f"--dpo-config {str(dpo_config)!r} is not a file: give the training recipe (a YAML)")
    state = {
        "policy": str(policy),
        "dpo_config": str(Path(dpo_config).resolve()),
        "build_args": _split(build_args, OWN_BUILD_FLAGS, "build-args"),
        "eval_args": _split(eval_args, OWN_EVAL_FLAGS, "eval-args"),
    }
    path = out / STATE_FILE
    if path.is_file():
        have = json.loads(path.read_text())
        differ = sorted(k for k in state if have.get(k) != state[k])
        if differ:
            raise IterateError(
                f"{out} holds rounds made with other arguments (differs in: {', '.join(differ)}); use a new --out or "
                "the same arguments to resume"
            )
    elif out.exists() and any(out.iterdir()):
        raise IterateError(f"output directory {out} exists and holds no rounds; choose an empty or new --out")
    return state


def run_rounds(
    rounds: int,
    policy: str,
    out: Path,
    dpo_config: Path,
    build_args: str = "",
    eval_args: str = "",
    say: Callable[[str], None] = print,
    evaluate: Optional[Callable[[list[str]], int]] = None,
    train: Optional[Callable[[list[str]], int]] = None,
) -> str:
    """Run (or resume) ``rounds`` rounds into ``out``; returns the table of every round's POPE and CHAIR.

    ``evaluate``: how ``realign-trl eval ARGS`` is run, its exit code (the command line passes its own ``eval``
    command, run in this process); ``train``: how ``realign-trl dpo ARGS`` is run (default: a child process)."""
    from realign_data.cli import app as data_app
    from realign_data.runtime.atomic import atomic_write_json

    out = Path(out).expanduser().resolve()
    state = check(rounds, policy, out, dpo_config, build_args, eval_args)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / STATE_FILE, state)
    train = train or _train_in_child
    evaluate = evaluate or _eval_in_child
    current = state["policy"]
    _evaluate(evaluate, current, out / "start" / "eval", state["eval_args"], say, "start")
    evals = [out / "start" / "eval"]
    for r in range(rounds):
        where = out / f"round-{r}"
        done = where / ROUND_FILE
        if done.is_file():
            current = json.loads(done.read_text())["policy"]
            say(f"round {r}: done earlier ({current})")
            evals.append(where / "eval")
            continue
        data = where / "data"
        _step(
            "build",
            f"round {r}",
            run_app(data_app, ["build", *state["build_args"], "--responses-from", current,
                               "--responses-backend", "transformers", "--round", str(r), "--out", str(data)]),
        )  # fmt: skip
        report = json.loads((data / "build_report.json").read_text())
        say(f"round {r}: {report['pairs_written']} pairs from {report.get('onpolicy', {}).get('answers', 0)} answers")
        if not report["pairs_written"]:
            raise StepFailed(f"round {r}: the build made no pairs (see {data / 'build_report.json'}); nothing to train")
        trained = where / "train"
        if not (trained / "trained.json").is_file():
            args = ["--config", state["dpo_config"], "--model_name_or_path", current, "--dataset_name", str(data)]
            _step("train", f"round {r}", train(args + ["--output_dir", str(trained)]))
            atomic_write_json(trained / "trained.json", {"policy": current, "data": str(data)})
        current = standalone_policy(current, trained, where / "policy")
        _evaluate(evaluate, current, where / "eval", state["eval_args"], say, f"round {r}")
        atomic_write_json(done, {"round": r, "policy": current, "data": str(data), "eval": str(where / "eval")})
        evals.append(where / "eval")
    from realign_trl.eval.compare import compare_table, load_results

    return compare_table(load_results(evals), ["start"] + [f"round {r}" for r in range(rounds)])


def run_app(app, args: list[str]) -> int:
    """Run a typer ``app`` (``realign-data``, ``realign-trl``) with ``args`` in this process; its exit code."""
    import typer

    try:
        code = typer.main.get_command(app).main(args=args, standalone_mode=False)
    except SystemExit as e:  # pragma: no cover - a command that exits on its own
        code = e.code
    return int(code or 0)


def _step(what: str, label: str, code: int) -> None:
    if code:
        raise StepFailed(f"{label}: the {what} step failed (exit {code}); fix it and run the same command to resume")


def _evaluate(evaluate, policy: str, where: Path, eval_args: list[str], say, label: str) -> None:
    if not (where / "eval_results.json").is_file():
        _step("eval", label, evaluate(["eval", *eval_args, "--model", policy, "--out", str(where), "--quiet"]))
    flat = json.loads((where / "eval_results.json").read_text())["flat"]
    shown = ", ".join(f"{k} {v:.4f}" for k, v in flat.items() if k.endswith(("_f1", "chair_s", "chair_i")))
    say(f"{label}: {shown}")


def _eval_in_child(args: list[str]) -> int:
    """``realign-trl ARGS`` in a child process."""
    return subprocess.call([sys.executable, "-c", "from realign_trl.cli import main; main()", *args])


def _train_in_child(args: list[str]) -> int:
    """``realign-trl dpo ARGS`` in a child process (it launches its own training processes with accelerate)."""
    return subprocess.call([sys.executable, "-c", "from realign_trl.cli import main; main()", "dpo", *args])


def standalone_policy(base: str, trained: str | Path, policy: str | Path) -> str:
    """The trained policy as a checkpoint of its own: ``trained`` itself, or a PEFT adapter merged into ``base``
    (written to a temporary folder, then renamed into ``policy``)."""
    trained, policy = Path(trained), Path(policy)
    if not (trained / "adapter_config.json").is_file():
        return str(trained)
    if (policy / "config.json").is_file():
        return str(policy)
    from realign_trl.eval.backends import load_model

    model, processor = load_model(base, adapter=str(trained))
    tmp = policy.with_name(policy.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tmp.rename(policy)
    return str(policy)
