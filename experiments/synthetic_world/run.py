"""rDPO vs DPO in a synthetic world with exact ground truth, end to end, on CPU (issue #12).

    python experiments/synthetic_world/run.py --seeds 3 --jobs 3 --out results/   # the study (see docs for the time)
    python experiments/synthetic_world/run.py --smoke --out /tmp/smoke            # 1 seed, tiny sizes (CI, ~1 min)
    python experiments/synthetic_world/run.py --seeds 3 --out lever/ --reuse results/ --set beta=0.5  # arms only

Per seed, cached and resumable stage by stage (a killed run picks up at the unfinished stage): world -> tiny
open_clip trained contrastively + knowledge base -> SFT of a tiny LLaVA (TRL's SFT, then the verdict phase) -> two
realign-data builds from training images -> five preference arms (the last in on-policy rounds, study_onpolicy.py)
-> POPE + CHAIR on held-out images. Then the invariants, ``tables.md``, ``results.json`` and ``figure.png`` in
``--out``. See docs/synthetic_world.md.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import typer
from study_sizes import FULL, SMOKE, STAGE_FIELDS, Sizes, with_overrides

logger = logging.getLogger("synthetic_world")
RESULTS, TABLES, FIGURE, SIZES_FILE = "results.json", "tables.md", "figure.png", "sizes.json"
CURVES = "sft_curve.png"
# the stages before the arms, with the SFT model's evaluations: what --reuse links (each when its sizes match)
UPSTREAM = tuple(STAGE_FIELDS)


def setup_logging() -> None:
    """The stages at INFO; the libraries (open_clip logs on the root logger) warnings only."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)


def run_seed(out: Path, sizes: Sizes, seed: int, threads: int = 0, arms: Optional[tuple] = None) -> dict:
    """Every stage of one seed under ``out/seed-<seed>`` (of the preference arms, only ``arms`` when given);
    returns the seed's record (also ``record.json``)."""
    import torch
    from study_clip import build_index, model_paths, retrieval_quality, train_clip
    from study_eval import evaluate_model, heldout_suite, training_questions
    from study_onpolicy import ARM as ONPOLICY_ARM
    from study_onpolicy import ROUNDS_DIR as ONPOLICY_ROUNDS
    from study_onpolicy import train_onpolicy_arm
    from study_prefs import ARMS, build_preferences, train_arm
    from study_report import check_invariants
    from study_sft import train_sft
    from study_stages import stage
    from study_verdict import train_verdict
    from study_world import corpus_roots, make_world

    if threads:  # a --jobs worker process
        torch.set_num_threads(threads)
        setup_logging()
    root = out / f"seed-{seed}"
    root.mkdir(parents=True, exist_ok=True)
    train_root, all_root = corpus_roots(root / "world")
    record: dict = {"seed": seed}
    record["world"] = stage(root / "world", f"seed {seed} world", lambda d: make_world(d, sizes, seed))
    record["clip"] = stage(
        root / "clip",
        f"seed {seed} encoder + knowledge base",
        lambda d: {
            **train_clip(d, train_root, sizes, seed),
            **build_index(d, train_root, d),
            "retrieval": retrieval_quality(d / "index", seed),
        },
    )
    record["retrieval"] = record["clip"]["retrieval"]
    clip_paths = model_paths(root / "clip")
    record["sft"] = stage(
        root / "sft", f"seed {seed} SFT", lambda d: train_sft(d, train_root, sizes, seed, root / "clip")
    )
    sft_model = str(root / "sft" / "model")
    if sizes.verdict_steps:
        record["sft_verdict"] = stage(
            root / "sft_verdict",
            f"seed {seed} SFT verdict phase",
            lambda d: train_verdict(d, str(root / "sft" / "model"), train_root, sizes, seed),
        )
        sft_model = str(root / "sft_verdict" / "model")
    suite = None

    def evaluated(arm: str, model: str) -> dict:
        def work(d):
            nonlocal suite
            suite = suite or heldout_suite(all_root, sizes, seed)
            return evaluate_model(d, model, suite, sizes)

        return stage(root / "eval" / arm, f"seed {seed} eval {arm}", work)

    record["eval"] = {"sft": evaluated("sft", sft_model)}  # first: the base model's hallucination, early
    record["sft_fit"] = stage(
        root / "eval" / "sft_training_questions",
        f"seed {seed} SFT on its training questions",
        lambda d: training_questions(sft_model, train_root, sizes, seed),
    )
    record["prefs"] = stage(
        root / "prefs",
        f"seed {seed} preference builds",
        lambda d: build_preferences(d, train_root, root / "clip" / "index", clip_paths, seed),
    )
    record["arms"] = {}
    for arm in arms or ARMS:
        if arm == ONPOLICY_ARM:  # rounds of its own builds, each a stage; the last round's model is the arm's
            work = lambda d: train_onpolicy_arm(root, sft_model, train_root, root / "clip", sizes, seed, evaluated)  # noqa: E731
            model = str(root / "arms" / ONPOLICY_ROUNDS / f"round-{sizes.onpolicy_rounds}" / "model")
        else:
            work = lambda d, arm=arm: train_arm(d, arm, sft_model, root / "prefs", sizes, seed)  # noqa: E731
            model = str(root / "arms" / arm / "model")
        record["arms"][arm] = stage(root / "arms" / arm, f"seed {seed} arm {arm}", work)
        record["eval"][arm] = evaluated(arm, model)
    record["invariants"] = check_invariants(root, record, sizes)
    (root / "record.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    return record


def main(
    out: Path = typer.Option(..., "--out", help="Results directory (created; re-running resumes from it)."),
    seeds: Optional[int] = typer.Option(
        None,
        "--seeds",
        min=1,
        help="Number of seeds (--first-seed and on): each a "
        "new world, encoder, SFT, preference data and training seed. [default: 3; 1 "
        "with --smoke]",
    ),
    first_seed: int = typer.Option(
        0,
        "--first-seed",
        min=0,
        help="The first seed: fresh seeds for a recipe chosen on others (e.g. --first-seed 3 after choosing on 0-2).",
    ),
    smoke: bool = typer.Option(
        False,
        "--smoke",
        help="Tiny sizes (and 1 seed unless --seeds): checks the pipeline (CI), says nothing about the method.",
    ),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Seeds run in parallel (each gets cores / jobs threads)."),
    report_only: bool = typer.Option(
        False,
        "--report-only",
        help="Train nothing: write the outputs from the stages "
        "finished so far (a run still going, or killed), marking what is missing.",
    ),
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        help="Override a size, e.g. --set pref_steps=400 "
        "(repeatable; names in study_sizes.py). Recorded in sizes.json.",
    ),
    arms: Optional[str] = typer.Option(
        None,
        "--arms",
        help="Train only these preference arms, comma-separated "
        "(dpo, rdpo, rdpo_anchor, rdpo_region_noise, rdpo_onpolicy; a cheaper lever sweep); the "
        "tables show the others as missing. [default: all]",
    ),
    reuse: Optional[Path] = typer.Option(
        None,
        "--reuse",
        help="A finished run whose stages before the arms (world, encoder, SFT, "
        "verdict phase, preference builds) this run links instead of redoing, "
        "each where the sizes it depends on match: a sweep over the arms' settings "
        "(beta, pref_steps, ...) trains only the arms, a new verdict phase reuses the SFT.",
    ),
) -> None:
    """Run the synthetic-world study end to end and write tables.md, results.json and figure.png into --out."""
    setup_logging()
    try:
        overrides = dict(item.split("=", 1) for item in set_ or [])
        sizes = with_overrides(SMOKE if smoke else FULL, overrides)
    except ValueError as e:
        typer.secho(f"Error: bad --set ({e}).", err=True, fg="red")
        raise typer.Exit(2) from None
    seed_list = list(range(first_seed, first_seed + (seeds or (1 if smoke else 3))))
    if smoke:
        typer.echo(SMOKE_NOTE)
    from study_prefs import ARMS

    chosen = tuple(a.strip() for a in arms.split(",") if a.strip()) if arms else None
    if chosen is not None and (not chosen or set(chosen) - set(ARMS)):
        typer.secho(f"Error: --arms takes names from {', '.join(ARMS)} (got {arms!r}).", err=True, fg="red")
        raise typer.Exit(2)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / SIZES_FILE
    if saved.is_file() and json.loads(saved.read_text()) != sizes.to_dict():
        typer.secho(f"Error: {out} holds a run with other sizes ({saved}); use another --out.", err=True, fg="red")
        raise typer.Exit(2)
    if reuse is not None:
        try:
            linked, differ = link_upstream(out, reuse, sizes, seed_list)
        except ValueError as e:
            typer.secho(f"Error: cannot reuse {reuse}: {e}.", err=True, fg="red")
            raise typer.Exit(2) from None
        logger.info("reusing %d finished stages of %s", linked, reuse)
        for name, fields in differ.items():
            logger.info("redoing %s: its sizes differ from %s's (%s)", name, reuse, ", ".join(fields))
    saved.write_text(json.dumps(sizes.to_dict(), indent=1))
    if report_only:
        from study_report import collect_record

        records = [collect_record(out / f"seed-{s}", s) for s in seed_list if (out / f"seed-{s}").is_dir()]
        write_outputs(out, records, sizes)
        typer.echo(
            f"Wrote {out / TABLES}, {out / RESULTS} and {out / FIGURE} from the finished stages of "
            f"{len(records)} seed(s)."
        )
        return
    if jobs > 1 and len(seed_list) > 1:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            n = len(seed_list)
            records = list(pool.map(run_seed, [out] * n, [sizes] * n, seed_list, [threads] * n, [chosen] * n))
    else:
        records = [run_seed(out, sizes, s, arms=chosen) for s in seed_list]
    write_outputs(out, records, sizes)
    failed = [f"seed {r['seed']}: {f}" for r in records for f in r["invariants"]["failures"]]
    if failed:
        typer.secho("Error: invariants failed: " + "; ".join(failed) + ".", err=True, fg="red")
        raise typer.Exit(1)
    typer.echo(f"Wrote {out / TABLES}, {out / RESULTS} and {out / FIGURE}; invariants hold for every seed.")
    if smoke:
        typer.echo(SMOKE_NOTE)


SMOKE_NOTE = (
    "--smoke: tiny sizes that only check the pipeline runs end to end; its numbers (CHAIR, POPE, "
    "rewards) mean nothing: do not read or report them (run without --smoke for the study)."
)


def link_upstream(out: Path, source: Path, sizes: Sizes, seeds: list[int]) -> tuple[int, dict[str, list[str]]]:
    """Symlink into ``out`` each finished stage before the arms of ``source``'s seeds whose sizes
    (:data:`study_sizes.STAGE_FIELDS`) equal ``sizes`` (the stage cache then reuses them). Returns how many were
    linked and, per stage left to redo, the sizes that differ."""
    from study_stages import done

    try:
        theirs = json.loads((source / SIZES_FILE).read_text())
    except (OSError, ValueError):
        raise ValueError(f"it holds no readable {SIZES_FILE}") from None
    ours, defaults = sizes.to_dict(), Sizes().to_dict()
    # a size the source's record lacks is newer than that run, which therefore ran with its default
    differ = {
        name: [k for k in fields if theirs.get(k, defaults[k]) != ours[k]] for name, fields in STAGE_FIELDS.items()
    }
    differ = {name: fields for name, fields in differ.items() if fields}
    if "world" in differ:
        raise ValueError(f"its world differs ({', '.join(differ['world'])}): no stage of it can be reused")
    linked = 0
    for seed in seeds:
        for name in UPSTREAM:
            src, dst = source / f"seed-{seed}" / name, out / f"seed-{seed}" / name
            if name in differ or done(src) is None or dst.exists() or dst.is_symlink():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src.resolve(), target_is_directory=True)
            linked += 1
    if not linked and not any((out / f"seed-{s}" / "world").exists() for s in seeds):
        raise ValueError("it has no finished stage to reuse")
    return linked, differ


def write_outputs(out: Path, records: list[dict], sizes: Sizes) -> None:
    """``tables.md`` (mean ± std, paired differences and their bootstrap intervals), ``results.json`` (every seed's
    record, the intervals, versions), ``figure.png`` and ``sft_curve.png`` (the SFT learning curves)."""
    from study_bootstrap import paired_intervals
    from study_report import PAIRED_COMPARISONS, figure, learning_curves, tables
    from study_world import world_partners

    intervals = paired_intervals(out, records, PAIRED_COMPARISONS, world_partners(sizes))
    (out / TABLES).write_text(tables(records, sizes, intervals))
    (out / RESULTS).write_text(
        json.dumps(
            {"sizes": sizes.to_dict(), "versions": versions(), "seeds": records, "bootstrap": intervals},
            indent=1,
            sort_keys=True,
        )
    )
    figure(records, out / FIGURE)
    learning_curves(records, out / CURVES)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("realign", "torch", "transformers", "trl", "open_clip_torch", "datasets", "faiss-cpu", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    typer.run(main)
