"""Run an evaluation: generate every answer a suite needs once, score POPE and CHAIR, write the results.

    from realign_trl.eval import EvalSuite, evaluate

    suite = EvalSuite.from_coco("data/coco", split="val2014", num_images=500)
    for ckpt in ["run/checkpoint-100", "run/checkpoint-200"]:
        result = evaluate(ckpt, suite, batch_size=16, out=f"{ckpt}/hallucination")
        print(result.flat())          # {"pope_random_f1": ..., "chair_s": ..., "object_recall": ...}

The three POPE splits share their positive questions: each distinct (image, prompt) is generated once and
scored in every split that asks it. With ``out``, answers are appended to ``answers.jsonl`` as they come
(:mod:`realign_trl.eval.answer_store`), so an interrupted run resumes where it stopped (same model and settings),
and ``eval_results.json`` plus the per-question / per-caption records are written at the end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .answer_store import AnswerStore, answers_fingerprint
from .backends import EvalRuntimeError
from .config import CHAIR_MAX_NEW_TOKENS, POPE_MAX_NEW_TOKENS
from .records import EvalMetrics, EvalResultFile, PopeSplitMetrics
from .scoring import ChairScorer, chair_metrics, parse_pope_answer, pope_metrics
from .suite import EvalError, EvalSuite

RESULTS_FILE = "eval_results.json"


@dataclass
class EvalResult:
    """Metrics, per-question / per-caption records and the exact settings of one evaluation."""

    model: str
    settings: dict
    metrics: EvalMetrics  # pope, chair, amber: see realign_trl/eval/records.py
    records: dict = field(default_factory=dict)  # {"pope": {split: [...]}, "chair": [...]}
    seconds: float = 0.0

    def flat(self, prefix: str = "") -> dict[str, float]:
        """The headline numbers under flat names: ``pope_<split>_f1``, ``pope_yes_ratio``, ``chair_s``, ..."""
        out: dict[str, float] = {}
        pope = self.metrics.get("pope", {})
        for split, m in pope.get("splits", {}).items():
            for key in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
                out[f"{prefix}pope_{split}_{key}"] = m[key]
        if pope:
            out[f"{prefix}pope_yes_ratio"] = pope["yes_ratio"]
            out[f"{prefix}pope_unparseable"] = pope["unparseable"]
        chair = self.metrics.get("chair")
        if chair:
            for key in ("chair_s", "chair_i", "chair_i_unique", "object_recall"):
                if key in chair:
                    out[f"{prefix}{key}"] = chair[key]
        amber = self.metrics.get("amber", {})
        for key, value in amber.get("generative", {}).items():
            if key in ("chair", "cover", "hal", "cog"):
                out[f"{prefix}amber_{key}"] = value
        for dim, m in amber.get("discriminative", {}).items():
            for key in ("accuracy", "f1"):
                out[f"{prefix}amber_{dim}_{key}"] = m[key]
        return out

    def to_dict(self) -> EvalResultFile:
        from realign_trl import __version__

        return {
            "model": self.model,
            "metrics": self.metrics,
            "flat": self.flat(),
            "settings": self.settings,
            "seconds": round(self.seconds, 3),
            "realign_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``eval_results.json`` and the records (``pope_<split>.jsonl``, ``chair.jsonl``) into ``out``."""
        from realign_data.runtime.atomic import atomic_write_json, atomic_write_text

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = {}
        for split, rows in self.records.get("pope", {}).items():
            files[f"pope_{split}"] = f"pope_{split}.jsonl"
            atomic_write_text(out / files[f"pope_{split}"], _jsonl(rows))
        for bench in ("chair", "amber"):
            if bench in self.records:
                files[bench] = f"{bench}.jsonl"
                atomic_write_text(out / files[bench], _jsonl(self.records[bench]))
        atomic_write_json(out / RESULTS_FILE, {**self.to_dict(), "records": files})
        return out / RESULTS_FILE

    def table(self) -> str:
        """A short plain-text summary table."""
        lines = []
        pope = self.metrics.get("pope")
        if pope:
            lines.append(f"{'POPE':<13}{'accuracy':>9}{'precision':>10}{'recall':>8}{'f1':>8}{'yes':>7}{'n':>7}")
            for split, m in pope["splits"].items():
                lines.append(
                    f"  {split:<11}{m['accuracy']:>9.4f}{m['precision']:>10.4f}{m['recall']:>8.4f}"
                    f"{m['f1']:>8.4f}{m['yes_ratio']:>7.3f}{m['questions']:>7}"
                )
            rate, other = pope.get("parser_disagreement_rate", 0.0), pope.get("other_parser", {}).get("parser")
            notes = [
                f"{pope['unparseable']} answers could not be read as yes or no (given the reference's label, "
                "flagged 'unparseable' in pope_<split>.jsonl)"
                if pope["unparseable"]
                else "",
                f"the {pope.get('parser')} and {other} parsers disagree on {rate:.1%} of the answers (> 1%: "
                f"compare with published numbers under --pope-parser reference)"
                if rate > 0.01
                else "",
                f"{pope['failed']} requests failed (not scored)" if pope["failed"] else "",
            ]
            lines += [f"  note: {n}" for n in notes if n]
        chair = self.metrics.get("chair")
        if chair:
            lines.append(
                f"CHAIR  CHAIR_s {chair['chair_s']:.4f}  CHAIR_i {chair['chair_i']:.4f}  "
                f"CHAIR_i(unique) {chair.get('chair_i_unique', 0.0):.4f}  "
                f"recall {chair['object_recall']:.4f}  ({chair['captions']} captions, "
                f"{chair['mentions']} mentions, {chair['mean_words']:.1f} words/caption)"
            )
            if chair["most_hallucinated"]:
                lines.append(
                    "  most hallucinated: "
                    + ", ".join(f"{h['object']} ({h['mentions']})" for h in chair["most_hallucinated"][:5])
                )
            if chair.get("failed"):
                lines.append(f"  note: {chair['failed']} requests failed (not scored)")
        amber = self.metrics.get("amber", {})
        if amber.get("generative"):
            g = amber["generative"]
            lines.append(
                f"AMBER generative  CHAIR {g['chair']:.4f}  Cover {g['cover']:.4f}  Hal {g['hal']:.4f}  "
                f"Cog {g['cog']:.4f}  ({g['responses']} responses)"
            )
        for dim, m in amber.get("discriminative", {}).items():
            lines.append(
                f"AMBER {dim:<11} accuracy {m['accuracy']:.4f}  F1(no) {m['f1']:.4f}  ({m['questions']} "
                f"questions, {m['unparseable']} unparseable)"
            )
        return "\n".join(lines)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def make_backend(model: Any, *, processor: Any = None, **options: Any):
    """A backend from what the user has: a backend (returned as is), ``(model, processor)``, or an id/directory."""
    from .backends import TransformersBackend

    if hasattr(model, "generate") and hasattr(model, "describe") and hasattr(model, "kind"):
        return model
    if isinstance(model, tuple) and len(model) == 2:
        model, processor = model
    return TransformersBackend(model, processor, **options)


def evaluate(
    model: Any,
    suite: EvalSuite,
    *,
    processor: Any = None,
    pope_max_new_tokens: int = POPE_MAX_NEW_TOKENS,
    chair_max_new_tokens: int = CHAIR_MAX_NEW_TOKENS,
    out: Optional[str | os.PathLike] = None,
    progress: bool = False,
    max_failures: Optional[float] = None,
    **backend_options: Any,
) -> EvalResult:
    """Evaluate a model on a suite; return (and with ``out``, save) the metrics and records.

    Args:
        model: a checkpoint directory or Hub id, a loaded ``(model, processor)`` pair (or ``processor=``), or a
            backend (:class:`~realign_trl.eval.backends.OpenAIBackend`, ``TransformersBackend``).
        suite: the :class:`EvalSuite` (build it once, evaluate many models).
        pope_max_new_tokens / chair_max_new_tokens: generation bounds of POPE answers and CHAIR descriptions.
        out: a directory for ``eval_results.json``, the records and the resumable ``answers.jsonl``.
        max_failures: the fraction of requests that may fail (failed and empty answers are never scored); above
            it :class:`TooManyFailures` is raised and nothing is scored or written but the answers got (``None``:
            no limit, failures are counted in the metrics; ``realign-trl eval --max-failures`` defaults to 0.01).
        **backend_options: ``batch_size``, ``device``, ``dtype``, ``device_map``, ``adapter``, ``trust_remote_code``
            for a model loaded here.
    """
    started = time.time()
    if max_failures is not None and not 0 <= max_failures <= 1:
        raise EvalError(f"--max-failures is a fraction of the requests, from 0 to 1 (got {max_failures:g}).")
    backend = make_backend(model, processor=processor, **backend_options)
    store = None
    try:
        from realign_data.runtime.redact import redact_tree

        settings = redact_tree(
            {
                "backend": backend.describe(),
                "suite": suite.describe(),  # no URL credentials
                "generation": {
                    "pope_max_new_tokens": pope_max_new_tokens,
                    "chair_max_new_tokens": chair_max_new_tokens,
                    "do_sample": False,
                },
            }
        )
        store = AnswerStore(out, answers_fingerprint(settings), suite) if out is not None else None
        answers = generate_answers(
            backend,
            suite,
            pope_max_new_tokens=pope_max_new_tokens,
            chair_max_new_tokens=chair_max_new_tokens,
            progress=progress,
            store=store,
        )
    finally:
        if store is not None:
            store.close()
        if backend is not model:  # made here: release its threads (a loaded model stays the caller's)
            backend.close()
    if max_failures is not None:
        _check_failures(answers, suite, max_failures, backend.describe(), out)
    result = score(suite, answers, model=backend.describe()["model"], settings=settings)
    result.seconds = time.time() - started
    if out is not None:
        result.save(out)
    return result


class TooManyFailures(EvalRuntimeError):
    """More requests failed (an error, or an empty answer) than ``max_failures`` allows; nothing was scored."""

    def __init__(self, message: str, failed: int, total: int) -> None:
        super().__init__(message)
        self.failed, self.total = failed, total


def _check_failures(answers: dict, suite: EvalSuite, max_failures: float, backend: dict, out) -> None:
    wanted = [(bench, *k) for bench, keys in work_items(suite).items() for k in keys]
    errors = [answers[k][1] for k in wanted if answers[k][1] is not None]
    if not errors or len(errors) <= max_failures * len(wanted):
        return
    from realign_data.runtime.redact import redact_url

    where = redact_url(backend["base_url"]) if backend.get("base_url") else backend.get("model")
    saved = f"the {len(wanted) - len(errors)} answers got are saved in {out}; " if out is not None else ""
    if len(errors) == len(wanted):
        head = f"no request was answered by {where} ({errors[0]})"
    else:
        head = (
            f"{len(errors)} of {len(wanted)} requests to {where} failed (e.g. {errors[0]}), more than "
            f"--max-failures {max_failures:g} allows"
        )
    raise TooManyFailures(
        f"{head}: nothing was scored; {saved}run the same command once the model answers again "
        "(only the failed requests are asked again).",
        len(errors),
        len(wanted),
    )


def work_items(suite: EvalSuite) -> dict[str, list[tuple[int, str]]]:
    """The distinct ``(image_id, prompt)`` pairs each benchmark needs, grouped by image in the suite's order."""
    order = {image_id: k for k, image_id in enumerate(suite.images)}
    work = {}
    if "pope" in suite.benches:
        asked = dict.fromkeys(
            (q["image_id"], q["question"] + suite.pope_suffix) for questions in suite.pope.values() for q in questions
        )
        work["pope"] = sorted(asked, key=lambda key: order[key[0]])  # stable: first-asked order within an image
    if "chair" in suite.benches:
        work["chair"] = [(image_id, suite.chair_prompt) for image_id in suite.images]
    if "amber" in suite.benches:
        from .amber import work as amber_work

        work.update(amber_work(suite.amber))
    return work


def generate_answers(
    backend,
    suite: EvalSuite,
    *,
    pope_max_new_tokens: int = POPE_MAX_NEW_TOKENS,
    chair_max_new_tokens: int = CHAIR_MAX_NEW_TOKENS,
    progress: bool = False,
    store: Optional[AnswerStore] = None,
) -> dict[tuple[str, int, str], tuple]:
    """``{(bench, image_id, prompt): (text, error)}`` for every item of :func:`work_items` (cached ones reused).

    A backend with ``stream`` (the endpoint client) answers in the order requests finish, with a bounded window in
    flight; others yield batches in order. Each answer is saved to ``store`` as it arrives; failures are not."""
    answers: dict[tuple[str, int, str], tuple] = dict(store.known) if store is not None else {}
    bounds = {
        "pope": pope_max_new_tokens,
        "chair": chair_max_new_tokens,
        "amber_discriminative": pope_max_new_tokens,
        "amber_generative": chair_max_new_tokens,
    }
    work = {bench: [(bench, *k) for k in keys] for bench, keys in work_items(suite).items()}
    if hasattr(backend, "stream"):  # one window over every benchmark's prompts: no barrier between them either
        work = {"answers": [key for keys in work.values() for key in keys]}
    for name, keys in work.items():
        todo = [k for k in keys if k not in answers]
        bar = None
        if progress and keys:
            from tqdm import tqdm

            desc = "Answers" if name == "answers" else f"{name.upper()} answers"
            bar = tqdm(total=len(keys), initial=len(keys) - len(todo), desc=desc, unit="ans")
        items = [
            (prompt, _loader(suite, image_id), _bytes(suite, image_id), bounds[bench])
            for bench, image_id, prompt in todo
        ]
        if hasattr(backend, "stream"):
            answered = backend.stream(items)
        else:
            answered = _numbered(backend.generate([item[:3] for item in items], bounds[name]))
        try:
            for batch in answered:
                fresh = {todo[k]: a for k, a in batch}
                answers.update(fresh)
                if store is not None:
                    store.add(fresh)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if hasattr(answered, "close"):
                answered.close()  # an interruption: requests not started yet are cancelled
            if bar is not None:
                bar.close()
    return answers


def _numbered(batches):
    done = 0
    for batch in batches:
        yield list(enumerate(batch, done))
        done += len(batch)


def _loader(suite: EvalSuite, image_id: int):
    return lambda: suite.image(image_id)


def _bytes(suite: EvalSuite, image_id: int):
    return lambda: suite.images[image_id]


def score(suite: EvalSuite, answers: dict, *, model: str = "", settings: Optional[dict] = None) -> EvalResult:
    """Score the answers of a suite (a pure function of its inputs: records and metrics)."""
    metrics: EvalMetrics = {}
    records: dict[str, Any] = {}
    if "pope" in suite.benches:
        per_split: dict[str, PopeSplitMetrics] = {}
        everything, failed, other_splits = [], 0, {}
        other = "reference" if suite.pope_parser == "robust" else "robust"  # both parsers run, one labels
        records["pope"] = {}
        for split, questions in suite.pope.items():
            rows = []
            for q in questions:
                prompt = q["question"] + suite.pope_suffix
                text, error = answers[("pope", q["image_id"], prompt)]
                row = {
                    "question_id": q["question_id"],
                    "image_id": q["image_id"],
                    "object": q["object"],
                    "question": prompt,
                    "label": q["label"],
                    "answer": text,
                }
                if error is None:
                    prediction, recognised = parse_pope_answer(text, suite.pope_parser, q["object"])
                    row.update(
                        prediction=prediction,
                        recognised=recognised,
                        correct=prediction == q["label"],
                        unparseable=not recognised,
                    )
                    row[f"prediction_{other}"] = parse_pope_answer(text, other, q["object"])[0]
                else:
                    row["error"] = error
                rows.append(row)
            scored = [r for r in rows if "error" not in r]
            per_split[split] = {**pope_metrics(scored), "failed": len(rows) - len(scored)}
            theirs = pope_metrics([{**r, "prediction": r[f"prediction_{other}"]} for r in scored])
            other_splits[split] = {k: theirs[k] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")}
            everything += scored
            failed += len(rows) - len(scored)
            records["pope"][split] = rows
        overall = pope_metrics(everything)
        disagree = sum(r["prediction"] != r[f"prediction_{other}"] for r in everything)
        metrics["pope"] = {
            "splits": per_split,
            "yes_ratio": overall["yes_ratio"],
            "unparseable": overall["unparseable"],
            "failed": failed,
            "parser": suite.pope_parser,
            "parser_disagreements": disagree,
            "parser_disagreement_rate": disagree / len(everything) if everything else 0.0,
            "other_parser": {"parser": other, "splits": other_splits},
        }
    if "chair" in suite.benches:
        scorer = ChairScorer(suite.source.get("chair_vocabulary"), synonyms=suite.chair_synonyms)
        rows = []
        for image_id in suite.images:
            text, error = answers[("chair", image_id, suite.chair_prompt)]
            row = {"image_id": image_id, "prompt": suite.chair_prompt, "answer": text}
            if error is None:
                row.update(scorer.score(text, suite.chair_truth[image_id]))
            else:
                row["error"] = error
            rows.append(row)
        scored = [r for r in rows if "error" not in r]
        metrics["chair"] = {
            **chair_metrics(scored),
            "failed": len(rows) - len(scored),
            "synonyms": suite.chair_synonyms,
        }
        records["chair"] = rows
    if "amber" in suite.benches:
        from .amber import score_amber

        metrics["amber"], records["amber"] = score_amber(suite.amber, answers, suite.pope_parser)
    return EvalResult(model=model, settings=settings or {}, metrics=metrics, records=records)
