"""The resumable answers of an evaluation: ``answers.jsonl`` in its output directory, appended as answers come and
read back by a re-run with the same model and settings (:func:`answers_fingerprint`), so an interrupted evaluation
resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .suite import EvalError, EvalSuite

ANSWERS_FILE = "answers.jsonl"


def answers_fingerprint(settings: dict) -> dict:
    """What must match for saved answers to be reused: model, adapter, endpoint, dtype, prompts and bounds."""
    backend = {
        k: v for k, v in settings["backend"].items() if k in ("backend", "model", "adapter", "base_url", "dtype")
    }
    suite = {k: v for k, v in settings["suite"].items() if k in ("chair_prompt", "pope_suffix")}
    return {"backend": backend, "suite": suite, "generation": settings["generation"]}


class AnswerStore:
    """``answers.jsonl`` in the output directory: appended as answers come, read back to resume.

    Only real answers are saved (a failed request or an empty answer never is: a re-run asks again). Each record
    carries the sha256 of the image it answers, so answers about other pictures (a corpus with the same image ids)
    are refused instead of mixed in; records written before image hashes were kept are asked again."""

    def __init__(self, out: str | os.PathLike, fingerprint: dict, suite: EvalSuite) -> None:
        from realign_data.runtime.atomic import atomic_write_json

        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / ANSWERS_FILE
        state = self.dir / "answers_settings.json"
        self.suite = suite
        self._sha: dict[int, str] = {}
        drawn_from = {
            k: v for k, v in suite.source.items() if k in ("coco_root", "split", "pope", "annotations_sha256")
        }
        self.known: dict[tuple[str, int, str], tuple] = {}
        if self.path.exists():
            try:
                saved = json.loads(state.read_text())
            except (OSError, ValueError):
                saved = None
            saved_from = saved.pop("drawn_from", {}) if isinstance(saved, dict) else {}
            if saved != json.loads(json.dumps(fingerprint)):
                raise EvalError(
                    f"{str(self.dir)!r} holds answers of another evaluation (different model or settings: "
                    f"{state.name}); choose another output directory or delete it."
                )
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        a = json.loads(line)
                        key = (a["bench"], a["image_id"], a["prompt"])
                    except (ValueError, KeyError, TypeError):  # a line torn by an interruption: asked again
                        continue
                    if not isinstance(a.get("answer"), str) or not a["answer"].strip() or "image_sha256" not in a:
                        continue  # an empty answer (never a final one), or a record that cannot be checked
                    if key[1] in suite.images and a["image_sha256"] != self.image_sha(key[1]):
                        was = ", ".join(f"{k} {v}" for k, v in saved_from.items() if k != "annotations_sha256")
                        raise EvalError(
                            f"{str(self.dir)!r} holds answers about other pictures (image_id {key[1]} "
                            f"differs{'; they were drawn from ' + was if was else ''}); evaluate this "
                            "corpus into another --out, or delete that one."
                        )
                    self.known[key] = (a["answer"], None)
        else:
            atomic_write_json(state, {**fingerprint, "drawn_from": drawn_from})
        self._file = None

    def image_sha(self, image_id: int) -> str:
        if image_id not in self._sha:
            self._sha[image_id] = hashlib.sha256(self.suite.images[image_id]).hexdigest()
        return self._sha[image_id]

    def add(self, fresh: dict) -> None:
        if self._file is None:
            torn = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
            self._file = open(self.path, "a", encoding="utf-8")
            if torn:  # an interrupted write: start a fresh line
                self._file.write("\n")
        for (bench, image_id, prompt), (text, error) in fresh.items():
            if error is None and text and text.strip():  # failures and empty answers are not saved: asked again
                record = {
                    "bench": bench,
                    "image_id": image_id,
                    "prompt": prompt,
                    "answer": text,
                    "image_sha256": self.image_sha(image_id),
                }
                self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
