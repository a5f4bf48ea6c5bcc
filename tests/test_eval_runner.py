"""``realign_trl.eval.evaluate`` on tiny real VLMs: batching, deduplication, records, resume (issue 11)."""

from __future__ import annotations

import functools
import json

import pytest

from realign_trl.eval import EvalError, EvalSuite, evaluate
from realign_trl.eval.backends import TransformersBackend
from realign_trl.eval.runner import work_items

SHORT = dict(pope_max_new_tokens=6, chair_max_new_tokens=8)


@pytest.fixture(scope="module")
def suite(sample_corpus):
    return EvalSuite.from_coco(sample_corpus, num_images=4, min_objects=1, seed=1)


class Counting:
    """A real backend that counts what it is asked, and can stop after some batches (an interruption)."""

    kind = "transformers"

    def __init__(self, inner, stop_after=None):
        self.inner, self.stop_after, self.items, self.batches = inner, stop_after, [], 0

    def generate(self, items, max_new_tokens):
        for answers in self.inner.generate(items, max_new_tokens):
            if self.stop_after is not None and self.batches == self.stop_after:
                raise KeyboardInterrupt
            self.batches += 1
            self.items.extend(["x"] * len(answers))
            yield answers

    def describe(self):
        return self.inner.describe()

    def close(self):
        pass


def test_suite_draws_pope_and_chair_on_the_same_images(suite, sample_corpus):
    assert len(suite.images) == 4
    assert set(suite.pope) == {"random", "popular", "adversarial"}
    for questions in suite.pope.values():
        assert {q["image_id"] for q in questions} == set(suite.images)
    assert set(suite.chair_truth) == set(suite.images)
    from realign_data.kb.corpus import CocoAnnotations

    ann = CocoAnnotations(sample_corpus)
    for image_id, truth in suite.chair_truth.items():
        assert set(ann.categories(image_id)) <= set(truth)
    # a question set built by `realign-data pope` with the same seed gives the same material
    from realign_data.evalsets.pope import build_pope

    built = build_pope(sample_corpus, num_images=4, min_objects=1, seed=1)
    again = EvalSuite.from_coco(sample_corpus, pope=built.dataset, num_images=4)
    assert list(again.images) == list(suite.images)
    assert again.pope == suite.pope and again.chair_truth == suite.chair_truth


def test_shared_questions_are_generated_once(suite):
    items = work_items(suite)
    asked = {(q["image_id"], q["question"]) for qs in suite.pope.values() for q in qs}
    total = sum(len(qs) for qs in suite.pope.values())
    assert len(items["pope"]) == len(asked) < total  # positives are shared by the three splits
    assert len(items["chair"]) == len(suite.images)


@pytest.mark.parametrize("family", ["tiny_llava", "tiny_qwen2_vl", "tiny_gemma3"])
def test_batched_generation_matches_one_by_one(family, request, suite):
    """Left padding done right: a prompt gets the same greedy answer alone and in a padded batch."""
    backend = TransformersBackend(str(request.getfixturevalue(family)), device="cpu", batch_size=5)
    single = TransformersBackend(backend.model, backend.processor, batch_size=1)
    prompts = [
        "Is there a cat in the image?",
        "Is there an umbrella in the image? Answer yes or no.",
        "Please describe this image in detail.",
        "Is there a dog?",
        "What is it?",
    ]
    ids = list(suite.images)
    items = [(p, functools.partial(suite.image, ids[k % len(ids)]), None) for k, p in enumerate(prompts)]
    batched = [a for batch in backend.generate(items, 6) for a in batch]
    alone = [a for batch in single.generate(items, 6) for a in batch]
    assert batched == alone
    assert all(text is not None and error is None for text, error in batched)
    backend.close()
    single.close()


def test_evaluate_writes_results_records_and_resumes(suite, tiny_llava, tmp_path):
    backend = Counting(TransformersBackend(str(tiny_llava), device="cpu", batch_size=4))
    out = tmp_path / "run"
    result = evaluate(backend, suite, out=out, **SHORT)
    expected = len(work_items(suite)["pope"]) + len(suite.images)
    assert len(backend.items) == expected

    data = json.loads((out / "eval_results.json").read_text())
    assert data["model"] == str(tiny_llava)
    assert set(data["metrics"]) == {"pope", "chair"}
    assert set(data["metrics"]["pope"]["splits"]) == {"random", "popular", "adversarial"}
    for split, m in data["metrics"]["pope"]["splits"].items():
        assert {"accuracy", "precision", "recall", "f1", "yes_ratio", "unparseable", "questions"} <= set(m)
        assert m["questions"] == len(suite.pope[split])
    assert {"chair_s", "chair_i", "object_recall", "captions", "mentions"} <= set(data["metrics"]["chair"])
    assert data["flat"] == result.flat() and "pope_adversarial_f1" in data["flat"] and "chair_i" in data["flat"]
    assert data["settings"]["generation"] == {"pope_max_new_tokens": 6, "chair_max_new_tokens": 8, "do_sample": False}
    assert data["settings"]["suite"]["images"] == 4 and data["settings"]["backend"]["backend"] == "transformers"
    assert data["records"] == {
        "pope_random": "pope_random.jsonl",
        "pope_popular": "pope_popular.jsonl",
        "pope_adversarial": "pope_adversarial.jsonl",
        "chair": "chair.jsonl",
    }
    pope_rows = [json.loads(line) for line in (out / "pope_adversarial.jsonl").read_text().splitlines()]
    assert len(pope_rows) == len(suite.pope["adversarial"])
    assert {"question", "answer", "label", "prediction", "recognised", "correct", "object"} <= set(pope_rows[0])
    chair_rows = [json.loads(line) for line in (out / "chair.jsonl").read_text().splitlines()]
    assert [r["image_id"] for r in chair_rows] == list(suite.images)
    assert {"answer", "mentions", "hallucinated", "ground_truth", "recalled"} <= set(chair_rows[0])

    # same model and settings again: every answer comes from answers.jsonl, same metrics
    again = Counting(backend.inner)
    assert evaluate(again, suite, out=out, **SHORT).flat() == result.flat()
    assert again.items == []

    # another model's answers are never mixed in
    with pytest.raises(EvalError, match="holds answers of another evaluation"):
        evaluate(backend, suite, out=out, pope_max_new_tokens=7, chair_max_new_tokens=8)
    backend.inner.close()


def test_interrupted_evaluation_resumes_where_it_stopped(suite, tiny_llava, tmp_path):
    inner = TransformersBackend(str(tiny_llava), device="cpu", batch_size=3)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        evaluate(Counting(inner, stop_after=2), suite, out=out, **SHORT)
    saved = (out / "answers.jsonl").read_text().splitlines()
    assert len(saved) == 6 and not (out / "eval_results.json").exists()
    rest = Counting(inner)
    resumed = evaluate(rest, suite, out=out, **SHORT)
    assert len(rest.items) == len(work_items(suite)["pope"]) + len(suite.images) - 6
    fresh = evaluate(inner, suite, **SHORT)
    assert resumed.flat() == fresh.flat()
    inner.close()


def test_adapter_is_loaded_onto_the_base_model(suite, tiny_llava, tmp_path):
    """--adapter: a PEFT adapter saved by training is merged into the base model before generating."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    peft_model = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(tiny_llava),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1.0)  # a trained-looking adapter (B starts at zero)
    peft_model.save_pretrained(tmp_path / "adapter")
    items = [("Please describe this image in detail.", (lambda i=i: suite.image(i)), None) for i in suite.images]
    base = TransformersBackend(str(tiny_llava), device="cpu")
    tuned = TransformersBackend(str(tiny_llava), adapter=str(tmp_path / "adapter"), device="cpu")
    assert tuned.describe()["adapter"] == str(tmp_path / "adapter")
    merged = TransformersBackend(peft_model.merge_and_unload(), base.processor)
    answers = {
        name: [a for batch in b.generate(items, 8) for a in batch]
        for name, b in (("base", base), ("tuned", tuned), ("merged", merged))
    }
    assert answers["tuned"] == answers["merged"] != answers["base"]
    for b in (base, tuned, merged):
        b.close()
    with pytest.raises(EvalError, match="adapter directory '/no/adapter' does not exist"):
        TransformersBackend(str(tiny_llava), adapter="/no/adapter")
