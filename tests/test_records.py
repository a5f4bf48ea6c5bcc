"""Typed records between stages: the TypedDicts and dataclasses that declare the build report, a visual negative and
an evaluation's results describe exactly what the code writes (a key added or dropped without its declaration
fails here), and the JSON files keep their keys."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from realign_data import BuildConfig, build
from realign_data.building.negatives import VisualNegative
from realign_data.building.report import BuildReport, ChunkCounts, Histogram, NegativeSummary, Throughput
from realign_trl.eval.records import ChairRecord, ChairSummary, EvalResultFile, PopeSplitMetrics, PopeSummary

FINISHED = (
    "blind_separability",
    "complete",
    "format",
    "launch",
    "chunks",
    "chunk_size",
    "image_negative",
    "row_order",
    "curriculum",
    "config",
    "provenance",
    "throughput",
)


def keys(typed) -> set[str]:
    return set(typing.get_type_hints(typed))


@pytest.fixture(scope="module")
def report(tiny_kb, tmp_path_factory):
    out = tmp_path_factory.mktemp("records") / "out"
    build(
        BuildConfig(
            index=str(tiny_kb),
            out=str(out),
            gate="lexical",
            top_k=3,
            chunk_size=4,
            max_samples=8,
            image_negative="crop",
            progress=False,
        )
    )
    return json.loads((out / "build_report.json").read_text())


def test_the_build_report_is_what_build_report_declares(report):
    """build_report.json of a finished build: the chunk counts every report has, then the finished build's keys,
    in the order they were always written."""
    assert list(report) == list(typing.get_type_hints(ChunkCounts)) + list(FINISHED)
    assert set(report) <= keys(BuildReport) and set(report) - keys(ChunkCounts) == set(FINISHED)
    assert set(report["throughput"]) == keys(Throughput)
    assert (
        set(report["image_negative"]) == {"kind", "crop_min_area", "crop_max_area", "text_fill"} < keys(NegativeSummary)
    )
    for name in ("retrieval_score", "text_similarity", "difficulty"):
        assert set(report["histograms"][name]) == keys(Histogram)  # every histogram has values here


def test_a_visual_negative_is_a_record_with_the_row_columns(report):
    assert [f.name for f in dataclasses.fields(VisualNegative)] == [
        "rejected_image_id",
        "image_bytes",
        "name",
        "params",
        "difficulty",
    ]
    assert report["pairs_written"] > 0 and report["image_negatives"]["by_kind"] == {"crop": report["pairs_written"]}


def test_eval_results_are_what_the_records_declare(sample_corpus, tmp_path):
    from realign_trl.eval import EvalSuite
    from realign_trl.eval.runner import score, work_items

    suite = EvalSuite.from_coco(sample_corpus, num_images=3, min_objects=1)
    answers = {
        (bench, image_id, prompt): ("Yes, there is a dog and a cat on the table.", None)
        for bench, items in work_items(suite).items()
        for image_id, prompt in items
    }
    result = score(suite, answers, model="m", settings={})
    assert set(result.metrics) == {"pope", "chair"}
    assert set(result.metrics["pope"]) == keys(PopeSummary)
    assert all(set(m) == keys(PopeSplitMetrics) for m in result.metrics["pope"]["splits"].values())
    assert set(result.metrics["chair"]) == keys(ChairSummary)
    assert keys(ChairRecord) <= set(result.records["chair"][0])
    saved = json.loads(result.save(tmp_path).read_text())
    assert set(saved) == keys(EvalResultFile) - {"_path"}  # _path: added by compare.load_results, never written
