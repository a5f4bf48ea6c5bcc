"""The pipeline's data flow: every image is decoded once per build (one per seed image, one per retrieved image a
filler or a negative needs), and each stage's drops reach the report."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from realign_data import BuildConfig, KnowledgeBase, build, load_built


@pytest.fixture
def decodes(monkeypatch):
    """Counter of decoded images (by content hash) over every ``PIL.Image.open`` of the process."""
    seen: Counter = Counter()
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        if isinstance(fp, (str, Path)):
            data = Path(fp).read_bytes()
        else:
            pos = fp.tell()
            data = fp.read()
            fp.seek(pos)
        seen[hashlib.sha256(data).hexdigest()] += 1
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    return seen


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cfg(kb, out, **kw) -> BuildConfig:
    base = dict(index=str(kb), out=str(out), gate="lexical", top_k=2, chunk_size=64, max_samples=12, progress=False)
    return BuildConfig(**{**base, **kw})


def test_each_seed_image_is_decoded_once_and_annotation_fills_decode_no_retrieved_image(tiny_kb, tmp_path, decodes):
    res = build(cfg(tiny_kb, tmp_path / "out", image_negative="region-noise"))
    assert res.pairs_written > 0
    kb = KnowledgeBase.load(tiny_kb)
    seeds = [Path(kb.image_path(i)) for i in kb.ids]
    seeds = [p for p in seeds if digest(p) in decodes]
    # the 12 seed images (the first 12 COCO image ids) and nothing else: the annotation filler reads annotations,
    # the region-noise negative perturbs the seed image decoded at load
    assert len(seeds) == 12 and set(decodes) == {digest(p) for p in seeds}
    assert set(decodes.values()) == {1}


def test_a_retrieved_image_is_decoded_once_however_many_seeds_try_it(
    tiny_kb, tiny_llava, tmp_path, sample_corpus, decodes
):
    """A VLM filler looks at the retrieved images: each one it is given is decoded once, even when several seeds
    retrieve it (here every image is the seed of two records, so their retrieved images are shared too)."""
    import json

    images = sorted((sample_corpus / "train2014").iterdir())[:4]
    answers = ("Two red apples next to a blue car.", "A small brown dog on a green chair.")
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({"image": str(p), "question": "Describe.", "answer": a}) + "\n" for p in images for a in answers
        )
    )
    res = build(
        cfg(
            tiny_kb,
            tmp_path / "out",
            seeds=str(seeds),
            filler="transformers",
            model=str(tiny_llava),
            max_new_tokens=4,
            batch_size=8,
            top_k=3,
        )
    )
    decoded = dict(decodes)  # what the build decoded (reading the rows back below decodes them again)
    assert res.seeds_read == 8 and res.pairs_written + sum(res.drops.values()) == 8
    kb = KnowledgeBase.load(tiny_kb)
    hits = dict(zip(images, kb.search([kb.id_for_path(p) for p in images], k=3, kind="id")))
    rows = load_built(tmp_path / "out").select_columns(["id", "retrieval_rank"]) if res.pairs_written else []
    rank_used = {row["id"]: row["retrieval_rank"] for row in rows}
    tried = set()
    for n, p in enumerate(p for p in images for _ in answers):  # what each seed was given, in rank order
        tried |= {h.id for h in hits[p][: rank_used.get(f"seed-{n}", 3)]}
    expected = {digest(p) for p in images} | {digest(Path(kb.image_path(i))) for i in tried}
    assert res.report["fills_tried"] > len(tried), "the test needs retrieved images shared by several seeds"
    assert set(decoded) == expected
    assert set(decoded.values()) == {1}, "an image was decoded more than once"


def test_drops_of_every_stage_are_counted(tiny_kb, tmp_path, sample_corpus):
    images = sorted((sample_corpus / "train2014").iterdir())
    seeds = tmp_path / "seeds.jsonl"
    missing = tmp_path / "missing.jpg"
    seeds.write_text(
        "\n".join(
            [
                f'{{"image": "{images[1]}", "question": "Describe.", "answer": "Two red apples next to a blue car."}}',
                f'{{"image": "{missing}", "question": "Describe.", "answer": "A red apple."}}',
                f'{{"image": "{images[3]}", "question": "Describe.", "answer": "It is a nice day."}}',
                f'{{"image": "{images[4]}", "question": "", "answer": "A dog."}}',
            ]
        )
    )
    res = build(cfg(tiny_kb, tmp_path / "out", seeds=str(seeds), max_samples=None))
    assert res.drops == {"missing_image": 1, "empty_instruction": 1, "nothing_to_mask": 1}
    assert res.pairs_written == 1 and len(load_built(tmp_path / "out")) == 1
    example = res.report["failures"]["examples"][0]
    assert example["reason"] == "missing_image" and "missing.jpg" in example["error"]


def test_a_retrieved_image_gone_from_the_corpus_is_a_counted_drop(tiny_kb, tmp_path, sample_corpus):
    """The knowledge base points at corpus files; when one has been deleted since, its rows drop, the run goes on."""
    import shutil

    corpus = tmp_path / "coco"
    shutil.copytree(sample_corpus, corpus)
    kb = tmp_path / "kb"
    shutil.copytree(tiny_kb, kb)
    manifest = (kb / "manifest.json").read_text().replace(str(sample_corpus), str(corpus))
    (kb / "manifest.json").write_text(manifest)
    first = build(cfg(kb, tmp_path / "first", max_samples=None))
    gone = load_built(tmp_path / "first").select_columns(["rejected_image_id"])[0]["rejected_image_id"]
    (corpus / gone).unlink()
    res = build(cfg(kb, tmp_path / "out", max_samples=None))
    assert (
        res.drops.get("missing_image", 0) >= 1 and res.pairs_written >= first.pairs_written - res.drops["missing_image"]
    )
    assert any(gone in f["error"] for f in res.report["failures"]["examples"])
