"""The shapes of an evaluation's results: what ``scoring`` computes, ``runner`` assembles into
:class:`~realign_trl.eval.runner.EvalResult` and writes to ``eval_results.json``, and ``compare`` and the callback
read back. ``TypedDict`` s, so the JSON on disk keeps its keys and a reader (and a type checker) sees them.
Standard library only.
"""

from __future__ import annotations

from typing import Any, TypedDict


class PopeMetrics(TypedDict):
    """:func:`~realign_trl.eval.scoring.pope_metrics` of a set of scored POPE records (positive class ``yes``)."""

    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float
    questions: int
    unparseable: int
    tp: int
    fp: int
    tn: int
    fn: int


class PopeSplitMetrics(PopeMetrics):
    """One POPE sampling's metrics in ``eval_results.json``, with the questions whose request failed."""

    failed: int


class OtherParser(TypedDict):
    """The headline POPE numbers under the parser not chosen (both are computed on every run)."""

    parser: str
    splits: dict[str, dict[str, float]]  # split -> accuracy, precision, recall, f1, yes_ratio


class PopeSummary(TypedDict):
    """``metrics["pope"]`` of an evaluation."""

    splits: dict[str, PopeSplitMetrics]
    yes_ratio: float
    unparseable: int
    failed: int
    parser: str
    parser_disagreements: int
    parser_disagreement_rate: float
    other_parser: OtherParser


class Mention(TypedDict):
    word: str
    object: str


class ChairRecord(TypedDict):
    """:meth:`~realign_trl.eval.scoring.ChairScorer.score` of one caption."""

    mentions: list[Mention]
    hallucinated: list[Mention]
    ground_truth: list[str]
    recalled: list[str]
    chair_s: int
    objects: list[str]
    hallucinated_objects: list[str]


class MostHallucinated(TypedDict):
    object: str
    mentions: int


class ChairMetrics(TypedDict):
    """:func:`~realign_trl.eval.scoring.chair_metrics` over scored captions."""

    chair_s: float
    chair_i: float
    chair_i_unique: float
    object_recall: float
    captions: int
    mentions: int
    hallucinated_mentions: int
    objects: int
    hallucinated_objects: int
    ground_truth_objects: int
    recalled_objects: int
    empty_captions: int
    mean_words: float
    most_hallucinated: list[MostHallucinated]


class ChairSummary(ChairMetrics):
    """``metrics["chair"]`` of an evaluation: the metrics, failed requests and the synonym reading."""

    failed: int
    synonyms: str


class EvalMetrics(TypedDict, total=False):
    """``EvalResult.metrics``: one entry per benchmark run (``amber``: :func:`~realign_trl.eval.amber.score_amber`)."""

    pope: PopeSummary
    chair: ChairSummary
    amber: dict[str, Any]


class EvalResultFile(TypedDict, total=False):
    """``eval_results.json`` (:meth:`~realign_trl.eval.runner.EvalResult.to_dict`, plus ``records``: bench or
    ``pope_<split>`` -> the records file next to it, when saved)."""

    model: str
    metrics: EvalMetrics
    flat: dict[str, float]
    settings: dict[str, Any]
    seconds: float
    realign_version: str
    created: str
    records: dict[str, str]
    _path: str  # load_results: the file it was read from (never written)
