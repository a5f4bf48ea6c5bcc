"""Run an evaluation: generate every answer a suite needs once, score POPE and CHAIR, write the results.

    from realign_trl.eval import EvalSuite, evaluate

    suite = EvalSuite.from_coco("data/coco", split="val2014", num_images=500)
    for ckpt in ["run/checkpoint-100", "run/checkpoint-200"]:
        result = evaluate(ckpt, suite, batch_size=16, out=f"{ckpt}/hallucination")
        print(result.flat())          # {"pope_random_f1": ..., "chair_s": ..., "object_recall": ...}

The three POPE splits share their positive questions: each distinct (image, prompt) is generated once and
scored in every split that asks it. With ``out``, answers are appended to ``answers.jsonl`` as they come, so an
interrupted run resumes where it stopped (same model and settings), and ``eval_results.json`` plus the
per-question / per-caption records are written at the end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .scoring import ChairScorer, chair_metrics, parse_pope_answer, pope_metrics
from .suite import EvalError, EvalSuite

RESULTS_FILE = "eval_results.json"
ANSWERS_FILE = "answers.jsonl"
POPE_MAX_NEW_TOKENS = 32  # the reference parser reads the first sentence only
CHAIR_MAX_NEW_TOKENS = 256


@dataclass
class EvalResult:
    """Metrics, per-question / per-caption records and the exact settings of one evaluation."""

    model: str
    settings: dict
    metrics: dict
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
            for key in ("chair_s", "chair_i", "object_recall"):
                out[f"{prefix}{key}"] = chair[key]
        return out

    def to_dict(self) -> dict:
        from realign_trl import __version__

        return {"model": self.model, "metrics": self.metrics, "flat": self.flat(), "settings": self.settings,
                "seconds": round(self.seconds, 3), "realign_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``eval_results.json`` and the records (``pope_<split>.jsonl``, ``chair.jsonl``) into ``out``."""
        from realign_data.atomic import atomic_write_json, atomic_write_text

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = {}
        for split, rows in self.records.get("pope", {}).items():
            files[f"pope_{split}"] = f"pope_{split}.jsonl"
            atomic_write_text(out / files[f"pope_{split}"], _jsonl(rows))
        if "chair" in self.records:
            files["chair"] = "chair.jsonl"
            atomic_write_text(out / "chair.jsonl", _jsonl(self.records["chair"]))
        atomic_write_json(out / RESULTS_FILE, {**self.to_dict(), "records": files})
        return out / RESULTS_FILE

    def table(self) -> str:
        """A short plain-text summary table."""
        lines = []
        pope = self.metrics.get("pope")
        if pope:
            lines.append(f"{'POPE':<13}{'accuracy':>9}{'precision':>10}{'recall':>8}{'f1':>8}{'yes':>7}{'n':>7}")
            for split, m in pope["splits"].items():
                lines.append(f"  {split:<11}{m['accuracy']:>9.4f}{m['precision']:>10.4f}{m['recall']:>8.4f}"
                             f"{m['f1']:>8.4f}{m['yes_ratio']:>7.3f}{m['questions']:>7}")
            notes = [f"{pope['unparseable']} answers had no yes/no word (scored yes, as the reference does)"
                     if pope["unparseable"] else "", f"{pope['failed']} requests failed (not scored)"
                     if pope["failed"] else ""]
            lines += [f"  note: {n}" for n in notes if n]
        chair = self.metrics.get("chair")
        if chair:
            lines.append(f"CHAIR  CHAIR_s {chair['chair_s']:.4f}  CHAIR_i {chair['chair_i']:.4f}  "
                         f"recall {chair['object_recall']:.4f}  ({chair['captions']} captions, "
                         f"{chair['mentions']} mentions, {chair['mean_words']:.1f} words/caption)")
            if chair["most_hallucinated"]:
                lines.append("  most hallucinated: " + ", ".join(
                    f"{h['object']} ({h['mentions']})" for h in chair["most_hallucinated"][:5]))
            if chair.get("failed"):
                lines.append(f"  note: {chair['failed']} requests failed (not scored)")
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


def evaluate(model: Any, suite: EvalSuite, *, processor: Any = None, pope_max_new_tokens: int = POPE_MAX_NEW_TOKENS,
             chair_max_new_tokens: int = CHAIR_MAX_NEW_TOKENS, out: Optional[str | os.PathLike] = None,
             progress: bool = False, **backend_options: Any) -> EvalResult:
    """Evaluate a model on a suite; return (and with ``out``, save) the metrics and records.

    Args:
        model: a checkpoint directory or Hub id, a loaded ``(model, processor)`` pair (or ``processor=``), or a
            backend (:class:`~realign_trl.eval.backends.OpenAIBackend`, ``TransformersBackend``).
        suite: the :class:`EvalSuite` (build it once, evaluate many models).
        pope_max_new_tokens / chair_max_new_tokens: generation bounds of POPE answers and CHAIR descriptions.
        out: a directory for ``eval_results.json``, the records and the resumable ``answers.jsonl``.
        **backend_options: ``batch_size``, ``device``, ``dtype``, ``device_map``, ``adapter``, ``trust_remote_code``
            for a model loaded here.
    """
    started = time.time()
    backend = make_backend(model, processor=processor, **backend_options)
    store = None
    try:
        from realign_data.redact import redact_tree

        settings = redact_tree({"backend": backend.describe(), "suite": suite.describe(),  # no URL credentials
                                "generation": {"pope_max_new_tokens": pope_max_new_tokens,
                                               "chair_max_new_tokens": chair_max_new_tokens, "do_sample": False}})
        store = _AnswerStore(out, _fingerprint(settings)) if out is not None else None
        answers = generate_answers(backend, suite, pope_max_new_tokens=pope_max_new_tokens,
                                   chair_max_new_tokens=chair_max_new_tokens, progress=progress, store=store)
    finally:
        if store is not None:
            store.close()
        if backend is not model:  # made here: release its threads (a loaded model stays the caller's)
            backend.close()
    result = score(suite, answers, model=backend.describe()["model"], settings=settings)
    result.seconds = time.time() - started
    if out is not None:
        result.save(out)
    return result


def work_items(suite: EvalSuite) -> dict[str, list[tuple[int, str]]]:
    """The distinct ``(image_id, prompt)`` pairs each benchmark needs, grouped by image in the suite's order."""
    order = {image_id: k for k, image_id in enumerate(suite.images)}
    work = {}
    if "pope" in suite.benches:
        asked = dict.fromkeys((q["image_id"], q["question"] + suite.pope_suffix)
                              for questions in suite.pope.values() for q in questions)
        work["pope"] = sorted(asked, key=lambda key: order[key[0]])  # stable: first-asked order within an image
    if "chair" in suite.benches:
        work["chair"] = [(image_id, suite.chair_prompt) for image_id in suite.images]
    return work


def generate_answers(backend, suite: EvalSuite, *, pope_max_new_tokens: int = POPE_MAX_NEW_TOKENS,
                     chair_max_new_tokens: int = CHAIR_MAX_NEW_TOKENS, progress: bool = False,
                     store: "Optional[_AnswerStore]" = None) -> dict[tuple[str, int, str], tuple]:
    """``{(bench, image_id, prompt): (text, error)}`` for every item of :func:`work_items` (cached ones reused)."""
    answers: dict[tuple[str, int, str], tuple] = dict(store.known) if store is not None else {}
    bounds = {"pope": pope_max_new_tokens, "chair": chair_max_new_tokens}
    for bench, keys in work_items(suite).items():
        todo = [k for k in keys if (bench, *k) not in answers]
        bar = None
        if progress and keys:
            from tqdm import tqdm

            bar = tqdm(total=len(keys), initial=len(keys) - len(todo), desc=f"{bench.upper()} answers", unit="ans")
        items = [(prompt, _loader(suite, image_id), _bytes(suite, image_id)) for image_id, prompt in todo]
        done = 0
        try:
            for batch in backend.generate(items, bounds[bench]):
                keys_done = todo[done:done + len(batch)]
                done += len(batch)
                fresh = {(bench, *k): a for k, a in zip(keys_done, batch)}
                answers.update(fresh)
                if store is not None:
                    store.add(fresh)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
    return answers


def _loader(suite: EvalSuite, image_id: int):
    return lambda: suite.image(image_id)


def _bytes(suite: EvalSuite, image_id: int):
    return lambda: suite.images[image_id]


def score(suite: EvalSuite, answers: dict, *, model: str = "", settings: Optional[dict] = None) -> EvalResult:
    """Score the answers of a suite (a pure function of its inputs: records and metrics)."""
    metrics: dict[str, Any] = {}
    records: dict[str, Any] = {}
    if "pope" in suite.benches:
        per_split, everything, failed = {}, [], 0
        records["pope"] = {}
        for split, questions in suite.pope.items():
            rows = []
            for q in questions:
                prompt = q["question"] + suite.pope_suffix
                text, error = answers[("pope", q["image_id"], prompt)]
                row = {"question_id": q["question_id"], "image_id": q["image_id"], "object": q["object"],
                       "question": prompt, "label": q["label"], "answer": text}
                if error is None:
                    prediction, recognised = parse_pope_answer(text)
                    row.update(prediction=prediction, recognised=recognised, correct=prediction == q["label"])
                else:
                    row["error"] = error
                rows.append(row)
            scored = [r for r in rows if "error" not in r]
            per_split[split] = {**pope_metrics(scored), "failed": len(rows) - len(scored)}
            everything += scored
            failed += len(rows) - len(scored)
            records["pope"][split] = rows
        overall = pope_metrics(everything)
        metrics["pope"] = {"splits": per_split, "yes_ratio": overall["yes_ratio"],
                           "unparseable": overall["unparseable"], "failed": failed}
    if "chair" in suite.benches:
        scorer = ChairScorer(suite.source.get("chair_vocabulary"))
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
        metrics["chair"] = {**chair_metrics(scored), "failed": len(rows) - len(scored)}
        records["chair"] = rows
    return EvalResult(model=model, settings=settings or {}, metrics=metrics, records=records)


def _fingerprint(settings: dict) -> dict:
    """What must match for saved answers to be reused: model, adapter, endpoint, dtype, prompts and bounds."""
    backend = {k: v for k, v in settings["backend"].items() if k in ("backend", "model", "adapter", "base_url", "dtype")}
    suite = {k: v for k, v in settings["suite"].items() if k in ("chair_prompt", "pope_suffix")}
    return {"backend": backend, "suite": suite, "generation": settings["generation"]}


class _AnswerStore:
    """``answers.jsonl`` in the output directory: appended batch by batch, read back to resume."""

    def __init__(self, out: str | os.PathLike, fingerprint: dict) -> None:
        from realign_data.atomic import atomic_write_json

        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / ANSWERS_FILE
        state = self.dir / "answers_settings.json"
        self.known: dict[tuple[str, int, str], tuple] = {}
        if self.path.exists():
            try:
                saved = json.loads(state.read_text())
            except (OSError, ValueError):
                saved = None
            if saved != json.loads(json.dumps(fingerprint)):
                raise EvalError(f"{str(self.dir)!r} holds answers of another evaluation (different model or settings: "
                                f"{state.name}); choose another output directory or delete it.")
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        a = json.loads(line)
                    except ValueError:  # a line torn by an interruption: that answer is generated again
                        continue
                    self.known[(a["bench"], a["image_id"], a["prompt"])] = (a["answer"], None)
        else:
            atomic_write_json(state, fingerprint)
        self._file = None

    def add(self, fresh: dict) -> None:
        if self._file is None:
            torn = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
            self._file = open(self.path, "a", encoding="utf-8")
            if torn:  # an interrupted write: start a fresh line
                self._file.write("\n")
        for (bench, image_id, prompt), (text, error) in fresh.items():
            if error is None:  # failed requests are not saved: a re-run asks again
                self._file.write(json.dumps({"bench": bench, "image_id": image_id, "prompt": prompt,
                                             "answer": text}, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
