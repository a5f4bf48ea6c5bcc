"""The dataset builder, end to end with real components: tiny open_clip knowledge base, sample corpus,
annotation / tiny-LLaVA / OpenAI-compatible fillers, lexical and sentence gates, resume, determinism, shards."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from realign_data import BuildConfig, BuildError, build, load_built, merge
from realign_data.building.schema import COLUMNS, message_text

sys.path.insert(0, str(Path(__file__).parent / "support"))
from openai_server import OpenAIServer


def cfg(kb, out, **kw) -> BuildConfig:
    base = dict(index=str(kb), out=str(out), gate="lexical", top_k=3, chunk_size=8, progress=False)
    base.update(kw)
    return BuildConfig(**base)


def file_hashes(d: Path) -> dict:
    """Hashes of the dataset files (data shards, dataset_info.json, state.json with the fingerprint)."""
    files = sorted(d.glob("data-*.arrow")) + [d / "dataset_info.json", d / "state.json"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def check_dataset(out: Path, threshold: float = 0.95):
    ds = load_built(out)
    assert len(ds) > 0
    assert set(COLUMNS) <= set(ds.column_names)
    for row in ds:
        chosen, rejected = message_text(row["chosen"]), message_text(row["rejected"])
        assert rejected and rejected != chosen
        assert row["text_similarity"] < threshold
        assert row["rejected_image_id"] != row["image_id"]
        assert row["images"][0].tobytes() != row["rejected_images"][0].tobytes()
        assert row["prompt"][0]["content"][0]["type"] == "image"
        assert row["retrieval_rank"] >= 1
    return ds


def test_annotation_build(tiny_kb, tmp_path):
    res = build(cfg(tiny_kb, tmp_path / "out"))
    assert res.seeds_read == 40 and res.pairs_written > 0
    assert res.pairs_written + sum(res.drops.values()) == 40
    ds = check_dataset(tmp_path / "out")
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["pairs_written"] == len(ds)
    assert report["provenance"]["gate"]["gate"] == "lexical"
    assert report["histograms"]["text_similarity"]["count"] == len(ds)
    assert set(report["throughput"]) >= {"pairs_per_second", "seconds_total"}
    # ranks are in descending similarity order: the chosen hit's score is the score at its rank
    scores = ds["retrieval_score"]
    assert all(-1 <= s <= 0.95 + 1e-6 for s in scores)
    # a re-run of a finished build is a no-op
    again = build(cfg(tiny_kb, tmp_path / "out"))
    assert again.pairs_written == res.pairs_written


@pytest.mark.parametrize("kind", ["retrieval", "region-noise"])
def test_stock_dpo_trainer_accepts_the_dataset(tiny_kb, tiny_llava, tmp_path, kind):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    if kind == "retrieval":
        build(cfg(tiny_kb, tmp_path / "out", max_samples=8))
        ds = load_built(tmp_path / "out")
    else:  # a perturbation negative, curriculum split: same columns, so the same trainer
        build(cfg(tiny_kb, tmp_path / "out", max_samples=12, image_negative=kind, curriculum="easy-to-hard"))
        ds = load_built(tmp_path / "out", "easy")
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        per_device_train_batch_size=2,
        max_steps=2,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        loss_type="sigmoid",
    )
    trainer = DPOTrainer(
        model=AutoModelForImageTextToText.from_pretrained(tiny_llava),
        args=args,
        train_dataset=ds,
        processing_class=AutoProcessor.from_pretrained(tiny_llava),
    )
    trainer.train()
    assert len([h for h in trainer.state.log_history if "loss" in h]) == 2


def test_determinism_byte_identical(tiny_kb, tmp_path):
    build(cfg(tiny_kb, tmp_path / "a", seed=3, max_samples=20))
    build(cfg(tiny_kb, tmp_path / "b", seed=3, max_samples=20, chunk_size=8))
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")
    build(cfg(tiny_kb, tmp_path / "c", seed=4, max_samples=20))
    assert file_hashes(tmp_path / "a")["state.json"] != file_hashes(tmp_path / "c")["state.json"]


def test_resume_after_interruption_gives_the_same_rows(tiny_kb, tmp_path, monkeypatch):
    from realign_data.building.pipeline import Pipeline

    full = tmp_path / "full"
    build(cfg(tiny_kb, full))
    calls = {"n": 0}
    real = Pipeline.run

    def crash_after_two(self, seeds):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, seeds)

    monkeypatch.setattr(Pipeline, "run", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        build(cfg(tiny_kb, tmp_path / "part"))
    monkeypatch.setattr(Pipeline, "run", real)
    res = build(cfg(tiny_kb, tmp_path / "part"))
    assert res.report["throughput"]["resumed_chunks"] == 2
    assert file_hashes(full) == file_hashes(tmp_path / "part")


def test_different_arguments_into_existing_out_is_an_error(tiny_kb, tmp_path):
    build(cfg(tiny_kb, tmp_path / "out", max_samples=8))
    with pytest.raises(BuildError, match=r"other arguments \(differs in: top_k\)"):
        build(cfg(tiny_kb, tmp_path / "out", max_samples=8, top_k=5))
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="not a realign build"):
        build(cfg(tiny_kb, tmp_path / "stranger"))


def test_bad_seeds_are_dropped_and_counted(tiny_kb, tmp_path, sample_corpus):
    images = sorted((sample_corpus / "train2014").iterdir())
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(images[0].read_bytes()[:200])
    rows = [
        {"image": str(images[1]), "question": "Describe.", "answer": "Two red apples next to a blue car."},
        {"image": str(tmp_path / "missing.jpg"), "question": "Describe.", "answer": "A red apple."},
        {"image": str(corrupt), "question": "Describe.", "answer": "A red apple."},
        {"image": str(images[2]), "question": "Describe.", "answer": "   "},
        {"image": str(images[3]), "question": "Describe.", "answer": "It is a nice day."},
        {"image": str(images[4]), "question": "", "answer": "A dog."},
    ]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps(r) for r in rows))
    res = build(cfg(tiny_kb, tmp_path / "out", seeds=str(seeds)))
    assert res.seeds_read == 6 and res.pairs_written == 1
    assert res.drops == {
        "missing_image": 1,
        "corrupt_image": 1,
        "empty_instruction": 1,
        "empty_answer": 1,
        "nothing_to_mask": 1,
    }
    ds = check_dataset(tmp_path / "out")
    assert ds[0]["rejected_image_id"] != "train2014/" + images[1].name  # self excluded (found by path)


def test_all_fills_too_similar(tiny_kb, tmp_path):
    res = build(cfg(tiny_kb, tmp_path / "out", max_samples=8, sim_threshold=1e-6))
    assert res.pairs_written == 0 and res.drops == {"all_fills_too_similar": 8}
    assert json.loads((tmp_path / "out" / "build_report.json").read_text())["fills_tried"] == 8 * 3


def test_sentence_gate_build(tiny_kb, tmp_path, tiny_sentence_transformer):
    res = build(
        cfg(
            tiny_kb,
            tmp_path / "out",
            gate="sentence",
            gate_model=str(tiny_sentence_transformer),
            max_samples=8,
            sim_threshold=0.999,
        )
    )
    report = res.report
    assert report["provenance"]["gate"] == {
        "gate": "sentence",
        "model": str(tiny_sentence_transformer),
        "threshold": 0.999,
    }
    if res.pairs_written:
        check_dataset(tmp_path / "out", threshold=0.999)


def test_transformers_filler_build(tiny_kb, tiny_llava, tmp_path):
    # a random tiny model writes random words: the quality filters (on by default) would drop every fill
    res = build(
        cfg(
            tiny_kb,
            tmp_path / "out",
            filler="transformers",
            model=str(tiny_llava),
            max_samples=6,
            max_new_tokens=8,
            batch_size=4,
            quality_filters=False,
        )
    )
    assert res.seeds_read == 6 and res.pairs_written > 0
    ds = check_dataset(tmp_path / "out")
    assert set(ds["filler"]) == {f"transformers:{tiny_llava}"}


def test_openai_filler_build_and_failures(tiny_kb, tmp_path):
    with OpenAIServer(latency=0.01) as srv:
        res = build(cfg(tiny_kb, tmp_path / "ok", filler="openai", model="m", base_url=srv.base_url, max_samples=8))
    assert res.pairs_written == 8 and srv.requests == 8
    check_dataset(tmp_path / "ok")
    with OpenAIServer(fail_first=100, fail_status=503) as srv:
        res = build(
            cfg(
                tiny_kb,
                tmp_path / "bad",
                filler="openai",
                model="m",
                base_url=srv.base_url,
                max_samples=4,
                max_retries=1,
                top_k=2,
            )
        )
    assert res.pairs_written == 0 and res.drops == {"request_failed": 4} and res.report["drops_transient"] == 4
    failures = res.report["failures"]
    assert failures["count"] == 8 and failures["examples"][0]["error"] == "HTTP 503 after 2 attempts"


def test_model_masker_asks_the_filler_model_which_words_to_mask(tiny_kb, tmp_path):
    with OpenAIServer() as srv:
        res = build(
            cfg(
                tiny_kb,
                tmp_path / "out",
                filler="openai",
                model="m",
                base_url=srv.base_url,
                masker="model",
                max_samples=6,
            )
        )
        marking = [p for p in srv.seen if "states a visual fact" in p]
    assert len(marking) == 6 and res.pairs_written > 0  # one masking request per seed, then the fills
    assert res.report["provenance"]["masker"]["name"] == "model"
    for row in load_built(tmp_path / "out"):
        # the server marks colours, counts and relations only: object nouns stay in the masked answer
        assert "[OBJECT]" not in row["masked_chosen"] and "[" in row["masked_chosen"]
    with pytest.raises(BuildError, match="use it with --filler transformers or --filler openai"):
        BuildConfig(index="x", masker="model").validate()


def test_chosen_generated_by_a_vlm(tiny_kb, tmp_path, sample_corpus):
    images = sorted((sample_corpus / "train2014").iterdir())[:3]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps({"image": p.name, "question": "What is shown?"}) for p in images))
    with OpenAIServer() as srv:
        res = build(
            cfg(
                tiny_kb,
                tmp_path / "out",
                seeds=str(seeds),
                image_root=str(sample_corpus / "train2014"),
                chosen_from="m",
                filler="openai",
                model="m",
                base_url=srv.base_url,
            )
        )
    assert res.pairs_written == 3
    ds = load_built(tmp_path / "out")
    assert set(message_text(c) for c in ds["chosen"]) == {"A small red apple next to a blue car on the grass."}


def test_shards_merge_into_the_single_process_dataset(tiny_kb, tmp_path):
    build(cfg(tiny_kb, tmp_path / "single"))
    for i in range(2):  # separate directories (no shared filesystem): each keeps its chunks, no partial dataset
        r = build(cfg(tiny_kb, tmp_path / f"s{i}", num_shards=2, shard_index=i))
        assert not r.complete and r.report["shard"] == {"index": i, "num_shards": 2}
        assert (r.report["chunks"], r.report["chunks_missing"]) == [(3, 2), (2, 3)][i]  # of 5 chunks
        assert not (tmp_path / f"s{i}" / "build_report.json").exists()
        assert not list((tmp_path / f"s{i}").glob("*.arrow"))
    with pytest.raises(BuildError, match=r"2 of 5 chunks \(1, 3\) are in none of the shard directories"):
        merge([tmp_path / "s0"], tmp_path / "m0", progress=False)
    report = merge([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged", progress=False)
    assert file_hashes(tmp_path / "merged") == file_hashes(tmp_path / "single")
    assert report["pairs_written"] == len(load_built(tmp_path / "single"))
    assert build(cfg(tiny_kb, tmp_path / "merged")).pairs_written == report["pairs_written"]  # the same build: no-op
    with pytest.raises(BuildError, match="is a finished build"):
        merge([tmp_path / "single"], tmp_path / "m1", progress=False)


def test_shards_into_one_directory_then_the_plain_command_writes_the_dataset(tiny_kb, tmp_path):
    """An array job: shards run one after another into one --out; none writes a partial dataset, and the command
    without --num-shards/--shard-index (nothing left to build) writes the single-process dataset."""
    build(cfg(tiny_kb, tmp_path / "single"))
    out = tmp_path / "shared"
    for i in (2, 0):  # shard 1 never ran: the plain command builds its chunks itself
        r = build(cfg(tiny_kb, out, num_shards=3, shard_index=i))
        assert not r.complete and not (out / "build_report.json").exists()
    assert r.report["chunks_missing"] == 2  # chunks 0, 3 (shard 0) and 2 (shard 2) done; 1 and 4 are shard 1's
    res = build(cfg(tiny_kb, out))
    assert res.complete and res.report["throughput"]["resumed_chunks"] == 3
    assert file_hashes(out) == file_hashes(tmp_path / "single")
    with pytest.raises(BuildError, match="--shard-index needs --num-shards"):
        cfg(tiny_kb, out, shard_index=1)


def test_parquet_format(tiny_kb, tmp_path):
    build(cfg(tiny_kb, tmp_path / "out", format="parquet", max_samples=16))
    assert list((tmp_path / "out" / "data").glob("*.parquet"))
    ds = check_dataset(tmp_path / "out")
    assert len(ds) > 0


def test_missing_index_without_coco_root(tmp_path, monkeypatch):
    monkeypatch.setenv("REALIGN_HOME", str(tmp_path / "home"))
    with pytest.raises(BuildError, match="--coco-root"):
        build(BuildConfig(index="nope", out=str(tmp_path / "out"), progress=False))


def test_config_is_json_serialisable():
    c = BuildConfig(index="coco", out="x", top_k=4)
    assert BuildConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(BuildError, match="unknown build option"):
        BuildConfig.from_dict({"topk": 3})
    with pytest.raises(BuildError, match="unknown filler"):
        BuildConfig(filler="magic").validate()
