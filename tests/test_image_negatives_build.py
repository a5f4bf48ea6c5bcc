"""Built datasets with every visual-negative kind, on the sample corpus: the properties of the pure functions
(tests/test_negatives.py) hold on decoded ``images[0]`` / ``rejected_images[0]`` of built rows; difficulty and
the easy-to-hard curriculum splits; determinism, shards + merge, parquet, inspect, CLI flags."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realign_data import BuildConfig, BuildError, build, load_built, merge
from realign_data.building.masking import mask_response
from realign_data.building.negatives import alpha_bar, segmentation_mask
from realign_data.building.output import built_splits
from realign_data.building.schema import COLUMNS, message_text
from realign_data.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def instances(sample_corpus):
    """COCO image id (str) -> its instances with category names."""
    ann = json.loads((sample_corpus / "annotations" / "instances_train2014.json").read_text())
    names = {c["id"]: c["name"] for c in ann["categories"]}
    out: dict[str, list] = {}
    for a in ann["annotations"]:
        out.setdefault(str(a["image_id"]), []).append(dict(a, category=names[a["category_id"]]))
    return out


def cfg(kb, out, **kw) -> BuildConfig:
    base = dict(index=str(kb), out=str(out), gate="lexical", top_k=3, chunk_size=8, progress=False)
    base.update(kw)
    return BuildConfig(**base)


@pytest.fixture(scope="module")
def built(tiny_kb, tmp_path_factory):
    """One build per kind (module-scoped: the corpus is small, builds take well under a second)."""
    root = tmp_path_factory.mktemp("built")
    for kind in ("retrieval", "region-noise", "crop", "noise"):
        build(cfg(tiny_kb, root / kind, image_negative=kind))
    return {kind: root / kind for kind in ("retrieval", "region-noise", "crop", "noise")}


def pixels(img) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def hashes(d: Path) -> dict:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
        and (p.suffix == ".arrow" or p.name in ("dataset_info.json", "state.json", "dataset_dict.json"))
        and ".realign-build" not in p.parts
    }


# ------------------------------------------------------------------------------------------- every kind
@pytest.mark.parametrize("kind", ["retrieval", "region-noise", "crop", "noise"])
def test_every_kind_has_the_same_columns_and_stays_dual(built, kind):
    ds = load_built(built[kind])
    assert list(ds.column_names) == list(COLUMNS)
    assert len(ds) > 0
    report = json.loads((built[kind] / "build_report.json").read_text())
    assert report["image_negatives"]["by_kind"] == {kind: len(ds)}
    assert report["image_negative"]["kind"] == kind
    assert report["histograms"]["difficulty"]["count"] == len(ds)
    for row in ds:
        assert row["image_negative"] == kind
        assert message_text(row["rejected"]) != message_text(row["chosen"])  # text pair from mask-and-fill
        assert row["fill_image_id"] and row["fill_image_id"] != row["image_id"]
        assert 0.0 <= row["difficulty"] <= 1.0
        assert row["images"][0].size == row["rejected_images"][0].size or kind == "retrieval"
        if kind == "retrieval":
            assert row["rejected_image_id"] == row["fill_image_id"] and json.loads(row["negative_params"]) == {}
        else:
            assert row["rejected_image_id"] is None
            assert json.loads(row["negative_params"])
            assert not np.array_equal(pixels(row["images"][0]), pixels(row["rejected_images"][0]))


def test_text_side_is_the_same_for_every_kind(built):
    """The fill does not depend on the visual negative: the same rejected answers and fill images."""
    ref = load_built(built["retrieval"]).select_columns(["id", "rejected", "fill_image_id", "text_similarity"])
    for kind in ("region-noise", "crop", "noise"):
        ds = load_built(built[kind]).select_columns(["id", "rejected", "fill_image_id", "text_similarity"])
        assert ds.to_list() == ref.to_list()


def test_region_noise_changes_exactly_the_named_objects(built, instances):
    ds = load_built(built["region-noise"])
    segmented = 0
    for row in ds:
        params = json.loads(row["negative_params"])
        before, after = pixels(row["images"][0]), pixels(row["rejected_images"][0])
        assert params["t"] == 500 and params["schedule"] == "sigmoid"
        if params["region_source"] != "segmentation":
            assert params["region_source"] == "whole_image_fallback"
            continue
        segmented += 1
        # the categories are the objects the chosen answer names (canonical COCO names of the masked spans)
        assert params["categories"] == sorted(mask_response(message_text(row["chosen"])).objects())
        insts = [i for i in instances[row["image_id"]] if i["category"] in params["categories"]]
        assert sorted(i["id"] for i in insts) == sorted(params["instance_ids"])
        mask = segmentation_mask([i["segmentation"] for i in insts], (before.shape[1], before.shape[0]))
        assert mask.any() and params["region_fraction"] == pytest.approx(mask.mean())
        assert np.array_equal(after[~mask], before[~mask]), "pixels outside the named objects' masks are unchanged"
        assert np.any(after != before, axis=-1)[mask].mean() > 0.9, "pixels inside are noised"
    assert segmented >= len(ds) // 2


def test_region_noise_without_instances_falls_back_and_records_it(tiny_kb, tmp_path, sample_corpus):
    """Seeds that are not corpus images (no instances known) get whole-image noise, recorded per row."""
    from realign_data.kb.corpus import CocoAnnotations

    ann = CocoAnnotations(sample_corpus)
    rows = []
    for n, image_id in enumerate(ann.image_ids()[:6]):
        # a copy outside the corpus: the knowledge base does not know it, so there are no instances
        src = Image.open(ann.image_path(image_id)).convert("RGB")
        p = tmp_path / f"img{n}.png"
        src.transpose(Image.FLIP_LEFT_RIGHT).save(p)
        rows.append({"image": str(p), "question": "Describe the image.", "answer": ann.captions(image_id)[0]})
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build(cfg(tiny_kb, tmp_path / "out", seeds=str(seeds), image_negative="region-noise"))
    ds = load_built(tmp_path / "out")
    assert len(ds) > 0
    for row in ds:
        params = json.loads(row["negative_params"])
        assert params["region_source"] == "whole_image_fallback" and params["region_fraction"] == 1.0
        changed = np.any(pixels(row["images"][0]) != pixels(row["rejected_images"][0]), axis=-1)
        assert changed.mean() > 0.9
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["image_negatives"]["region_source"] == {"whole_image_fallback": len(ds)}


def test_crop_keeps_1_to_20_percent_resized_back(built):
    ds = load_built(built["crop"])
    for row in ds:
        params = json.loads(row["negative_params"])
        original = row["images"][0].convert("RGB")
        left, top, right, bottom = params["box"]
        fraction = (right - left) * (bottom - top) / (original.width * original.height)
        assert 0.01 <= fraction <= 0.2 and fraction == pytest.approx(params["area_fraction"])
        expected = original.crop((left, top, right, bottom)).resize(original.size, Image.BICUBIC)
        assert np.array_equal(pixels(row["rejected_images"][0]), pixels(expected))


def _clipped_normal_moments(mu: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """E[X] and E[X^2] of X = clip(N(mu, s^2), -1, 1), elementwise."""
    from scipy.special import ndtr

    a, b = (-1 - mu) / s, (1 - mu) / s
    pdf = lambda z: np.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    pa, pb, fa, fb = ndtr(a), ndtr(b), pdf(a), pdf(b)
    inside = pb - pa
    m1 = -pa + (1 - pb) + mu * inside + s * (fa - fb)
    m2 = pa + (1 - pb) + (mu * mu + s * s) * inside + 2 * mu * s * (fa - fb) + s * s * (a * fa - b * fb)
    return m1, m2


def test_noise_level_matches_the_schedule_at_step_t(built):
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, clipped to [-1, 1] and stored as 8 bits: the pooled mean
    and second moment over every built row match the clipped-normal moments of the schedule at t = 500."""
    pytest.importorskip("scipy")
    ds = load_built(built["noise"])
    abar = alpha_bar(500, "sigmoid")
    observed, m1, m2 = [], [], []
    for row in ds:
        params = json.loads(row["negative_params"])
        assert params == {"t": 500, "schedule": "sigmoid", "region_fraction": 1.0}
        x0 = pixels(row["images"][0]).astype(np.float64) / 127.5 - 1
        xt = pixels(row["rejected_images"][0]).astype(np.float64) / 127.5 - 1
        e1, e2 = _clipped_normal_moments(math.sqrt(abar) * x0, math.sqrt(1 - abar))
        observed.append(xt.ravel())
        m1.append(e1.ravel())
        m2.append(e2.ravel())
    x, m1, m2 = np.concatenate(observed), np.concatenate(m1), np.concatenate(m2)
    assert x.mean() == pytest.approx(m1.mean(), abs=0.005)
    assert (x * x).mean() == pytest.approx(m2.mean(), rel=0.01)
    # the residual around the expected value has the expected variance (noise is neither weaker nor stronger)
    assert ((x - m1) ** 2).mean() == pytest.approx((m2 - m1 * m1).mean(), rel=0.02)
    # and a neighbouring step would not pass: the check is sensitive to t
    other = alpha_bar(300, "sigmoid")
    o1, _ = _clipped_normal_moments(
        math.sqrt(other)
        * (np.concatenate([pixels(r[0]).ravel() for r in ds["images"]]).astype(np.float64) / 127.5 - 1),
        math.sqrt(1 - other),
    )
    assert abs(x.mean() - o1.mean()) > 0.01 or abs(x.std() - o1.std()) > 0.01


def test_noise_step_and_schedule_are_recorded(tiny_kb, tmp_path):
    build(cfg(tiny_kb, tmp_path / "o", image_negative="noise", noise_step=100, noise_schedule="cosine", max_samples=8))
    ds = load_built(tmp_path / "o")
    assert {row for row in ds["negative_params"]} == {
        json.dumps({"region_fraction": 1.0, "schedule": "cosine", "t": 100}, separators=(",", ":"))
    }
    report = json.loads((tmp_path / "o" / "build_report.json").read_text())
    assert report["image_negative"] == {
        "kind": "noise",
        "noise_step": 100,
        "noise_schedule": "cosine",
        "num_diffusion_steps": 1000,
        "text_fill": "mask-and-fill from a retrieved image (fill_image_id)",
    }
    assert report["config"]["noise_step"] == 100


# ---------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("kind", ["region-noise", "crop"])
def test_perturbations_are_byte_identical_and_survive_sharding(tiny_kb, tmp_path, built, kind):
    build(cfg(tiny_kb, tmp_path / "again", image_negative=kind))
    assert hashes(tmp_path / "again") == hashes(built[kind])
    for i in range(2):
        build(cfg(tiny_kb, tmp_path / f"s{i}", image_negative=kind, num_shards=2, shard_index=i))
    merge([tmp_path / "s0", tmp_path / "s1"], tmp_path / "m", progress=False)
    assert hashes(tmp_path / "m") == hashes(built[kind])
    other = build(cfg(tiny_kb, tmp_path / "seed1", image_negative=kind, seed=1))
    assert other.pairs_written and hashes(tmp_path / "seed1") != hashes(built[kind])


def test_changing_the_kind_into_an_existing_out_is_refused(tiny_kb, built):
    with pytest.raises(BuildError, match="image_negative"):
        build(cfg(tiny_kb, built["crop"], image_negative="noise"))


def test_bad_values_are_one_sentence_errors(tiny_kb, tmp_path):
    for kw, msg in [
        ({"image_negative": "blur"}, "unknown image negative 'blur'; valid: retrieval, region-noise"),
        ({"noise_schedule": "sqrt"}, "unknown noise schedule 'sqrt'; valid: sigmoid, linear, cosine"),
        ({"noise_step": 1000}, "noise step must be an integer in [0, 999]"),
        ({"crop_min_area": 0.3}, "crop areas must satisfy 0 < min <= max <= 1"),
        ({"curriculum": "hard-first"}, "unknown curriculum 'hard-first'; valid: easy-to-hard"),
        ({"difficulty_image_weight": 2.0}, "difficulty image weight must be in [0, 1]"),
    ]:
        with pytest.raises(BuildError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            build(cfg(tiny_kb, tmp_path / "o", **kw))


# ------------------------------------------------------------------------------------------ curriculum
def test_difficulty_follows_the_documented_formula(built):
    from realign_data.building.difficulty import difficulty
    from realign_data.building.negatives import image_closeness

    for kind, path in built.items():
        for row in load_built(path):
            closeness = image_closeness(kind, json.loads(row["negative_params"]), row["retrieval_score"])
            assert row["difficulty"] == pytest.approx(difficulty(closeness, row["text_similarity"]), abs=1e-6)


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_curriculum_orders_rows_and_the_splits_partition_them(tiny_kb, tmp_path, built, fmt):
    out = tmp_path / "cur"
    res = build(cfg(tiny_kb, out, image_negative="region-noise", curriculum="easy-to-hard", format=fmt))
    assert built_splits(out) == ["train", "easy", "medium", "hard"]
    train = load_built(out)
    plain = load_built(built["region-noise"])
    assert len(train) == res.pairs_written == len(plain)
    d = train["difficulty"]
    assert d == sorted(d), "train is ordered easy to hard"
    assert sorted(train["id"]) == sorted(plain["id"])
    parts = {k: load_built(out, k) for k in ("easy", "medium", "hard")}
    ids = [i for k in ("easy", "medium", "hard") for i in parts[k]["id"]]
    assert ids == train["id"], "the splits partition train, in order"
    assert max(parts["easy"]["difficulty"]) <= min(parts["medium"]["difficulty"])
    assert max(parts["medium"]["difficulty"]) <= min(parts["hard"]["difficulty"])
    assert max(len(p) for p in parts.values()) - min(len(p) for p in parts.values()) <= 1
    report = json.loads((out / "build_report.json").read_text())
    assert report["row_order"] == "easy-to-hard"
    assert {k: v["rows"] for k, v in report["curriculum"]["splits"].items()} == {
        "train": len(train),
        **{k: len(v) for k, v in parts.items()},
    }
    with pytest.raises(BuildError, match="no split 'validation'; it has train, easy, medium, hard"):
        load_built(out, "validation")
    if fmt == "arrow":
        import datasets

        dd = datasets.load_from_disk(str(out))
        assert isinstance(dd, datasets.DatasetDict) and list(dd) == ["train", "easy", "medium", "hard"]
        # a re-run is a no-op and a fresh build is byte-identical
        assert build(cfg(tiny_kb, out, image_negative="region-noise", curriculum="easy-to-hard")).pairs_written == len(
            train
        )
        build(cfg(tiny_kb, tmp_path / "again", image_negative="region-noise", curriculum="easy-to-hard"))
        assert hashes(tmp_path / "again") == hashes(out)


def test_curriculum_shards_merge_into_the_single_process_dataset(tiny_kb, tmp_path):
    kw = dict(image_negative="crop", curriculum="easy-to-hard")
    build(cfg(tiny_kb, tmp_path / "one", **kw))
    for i in range(2):
        r = build(cfg(tiny_kb, tmp_path / f"s{i}", num_shards=2, shard_index=i, **kw))
        assert not r.complete and built_splits(tmp_path / f"s{i}") == []
    report = merge([tmp_path / "s0", tmp_path / "s1"], tmp_path / "m", progress=False)
    assert report["row_order"] == "easy-to-hard" and report["image_negatives"]["by_kind"]["crop"] > 0
    assert hashes(tmp_path / "m") == hashes(tmp_path / "one")


def test_curriculum_build_pushes_every_split(tiny_kb, tmp_path):
    """hub.push_to_hub reads a curriculum build as a DatasetDict (arrow and parquet), so every split is pushed."""
    import datasets

    from realign_data.publish.hub import _load_local

    for fmt in ("arrow", "parquet"):
        out = tmp_path / fmt
        build(cfg(tiny_kb, out, image_negative="noise", curriculum="easy-to-hard", format=fmt, max_samples=12))
        ds, root = _load_local(out)
        assert isinstance(ds, datasets.DatasetDict) and list(ds) == ["train", "easy", "medium", "hard"]
        assert len(ds["train"]) == sum(len(ds[k]) for k in ("easy", "medium", "hard"))
        assert root == out


# ---------------------------------------------------------------------------------------- card, inspect
def test_card_documents_the_new_columns_and_settings(built):
    from realign_data.publish.dataset_card import ConfigSummary, render_generated_section
    from realign_data.publish.provenance import read_provenance

    prov = read_provenance(built["region-noise"])

    text = render_generated_section("me/ds", [ConfigSummary("default", "data", {"train": 40}, prov)], COLUMNS)
    for col in ("fill_image_id", "image_negative", "negative_params", "difficulty"):
        assert f"| `{col}` |" in text
    assert "| Image negative | region-noise" in text
    assert "| Noise step (of 1000) | 500" in text and "| Noise schedule | sigmoid" in text
    assert "Image negatives by kind: `region-noise`" in text


def test_inspect_shows_original_and_negative_with_outline(built, tmp_path):
    from realign_data.publish.inspect_page import render_html

    for kind in ("region-noise", "crop", "noise"):
        r = runner.invoke(app, ["inspect", str(built[kind]), "--html", str(tmp_path / f"{kind}.html"), "-n", "3"])
        assert r.exit_code == 0, r.output
        page = (tmp_path / f"{kind}.html").read_text()
        assert page.count("class='pair'") == 3
        assert f"{kind} negative · " in page and "text fill from retrieved image" in page
        assert "http" not in page.replace("http-equiv", "")  # self-contained
    page = (tmp_path / "region-noise.html").read_text()
    assert "region: masks of" in page and page.count("data:image/png;base64,") >= 6  # outlined original + negative
    assert "crop box [" in (tmp_path / "crop.html").read_text()
    html = render_html(load_built(built["retrieval"]), num=2)  # retrieval rows keep their layout
    assert "retrieved · rank" in html and " negative · " not in html


def test_outline_marks_the_region_boundary():
    import io

    from realign_data.publish.inspect_page import OUTLINE, outline, perturbed_region

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    a = np.full((40, 40, 3), 100, np.uint8)
    b = a.copy()
    b[10:30, 10:30] = 200
    mask = perturbed_region(png(a), png(b))
    assert mask.sum() == 400
    drawn = np.asarray(outline(png(b), mask))
    edge = np.all(drawn == OUTLINE, axis=-1)
    assert edge[10, 15] and edge[29, 15] and not edge[20, 20] and not edge[0, 0]


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_flags_and_usage_errors(tiny_kb, tmp_path):
    base = ["build", "--index", str(tiny_kb), "--gate", "lexical", "--top-k", "2", "--quiet"]
    for flags, msg in [
        (["--image-negative", "blur"], "unknown image negative 'blur'"),
        (["--noise-schedule", "sqrt"], "unknown noise schedule 'sqrt'"),
        (["--noise-step", "5000"], "noise step must be an integer in [0, 999]"),
        (["--curriculum", "hard-first"], "unknown curriculum 'hard-first'"),
    ]:
        r = runner.invoke(app, base + flags + ["--out", str(tmp_path / "bad")])
        assert r.exit_code == 2 and msg in r.output, r.output
    out = tmp_path / "o"
    r = runner.invoke(
        app,
        base
        + [
            "--image-negative",
            "region-noise",
            "--noise-step",
            "300",
            "--noise-schedule",
            "cosine",
            "--curriculum",
            "easy-to-hard",
            "--max-samples",
            "16",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "realign_build.json").read_text())
    assert (saved["image_negative"], saved["noise_step"], saved["noise_schedule"], saved["curriculum"]) == (
        "region-noise",
        300,
        "cosine",
        "easy-to-hard",
    )
    assert json.loads(load_built(out)[0]["negative_params"])["t"] == 300
    r = runner.invoke(app, ["inspect", str(out), "--split", "hard", "--html", str(tmp_path / "h.html"), "-n", "2"])
    assert r.exit_code == 0, r.output
    assert "· hard" in (tmp_path / "h.html").read_text()
    r = runner.invoke(app, ["inspect", str(out), "--split", "nope", "--html", str(tmp_path / "n.html")])
    assert r.exit_code == 2 and "no split 'nope'" in r.output


def test_a_build_started_before_the_new_options_resumes(tiny_kb, tmp_path):
    """A work dir whose recorded config predates image_negative & co. resumes with their defaults."""
    out = tmp_path / "old"
    res = build(cfg(tiny_kb, out, max_samples=8))
    work_cfg = out / ".realign-build" / "config.json"
    saved = json.loads(work_cfg.read_text())
    for key in (
        "image_negative",
        "noise_step",
        "noise_schedule",
        "crop_min_area",
        "crop_max_area",
        "difficulty_image_weight",
        "curriculum",
    ):
        saved["config"].pop(key)
    work_cfg.write_text(json.dumps(saved))
    assert build(cfg(tiny_kb, out, max_samples=8)).pairs_written == res.pairs_written
    with pytest.raises(BuildError, match="image_negative"):
        build(cfg(tiny_kb, out, max_samples=8, image_negative="crop"))


def test_a_phone_photo_seed_is_perturbed_upright(tiny_kb, tmp_path, sample_corpus):
    """A seed JPEG stored sideways with an EXIF orientation tag: the negative is made from the upright image, the
    way `datasets` decodes the chosen one, so the pair is aligned pixel for pixel."""
    from realign_data.kb.corpus import CocoAnnotations

    ann = CocoAnnotations(sample_corpus)
    rows = []
    for n, image_id in enumerate(ann.image_ids()[:4]):
        upright = Image.open(ann.image_path(image_id)).convert("RGB")
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to display": stored rotated the other way
        p = tmp_path / f"phone{n}.jpg"
        upright.transpose(Image.Transpose.ROTATE_90).save(p, exif=exif, quality=95)
        rows.append({"image": str(p), "question": "Describe the image.", "answer": ann.captions(image_id)[0]})
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build(cfg(tiny_kb, tmp_path / "out", seeds=str(seeds), image_negative="crop"))
    ds = load_built(tmp_path / "out")
    assert len(ds) > 0
    for row in ds:
        assert row["images"][0].size == row["rejected_images"][0].size == upright.size
