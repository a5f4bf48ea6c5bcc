"""Similarity gates: SentenceTransformer cosine, lexical TF-IDF, the acceptance rule and the auto fallback."""

from __future__ import annotations

import pytest

from realign_data.building.gate import GateError, LexicalGate, SentenceGate, is_rejected_fill, load_gate

CHOSEN = "Two red apples to the left of a blue car."


def test_lexical_gate_scores():
    g = LexicalGate()
    same, close, far = g.similarity(
        [CHOSEN] * 3, [CHOSEN, "Two red apples to the left of a green car.", "A gray cat sleeps on a wooden chair."]
    )
    assert same == pytest.approx(1.0)
    assert 0.3 < close < 0.95
    assert far < close
    assert g.describe() == {"gate": "lexical", "ngram_max": 2}


def test_identical_or_empty_fill_never_accepted():
    assert not is_rejected_fill(CHOSEN, CHOSEN, 0.0)
    assert not is_rejected_fill(CHOSEN, "  two RED apples to the left of a blue car. ", 0.1)
    assert not is_rejected_fill(CHOSEN, "", 0.0)
    assert not is_rejected_fill(CHOSEN, "A cat.", 0.95)  # threshold is strict
    assert is_rejected_fill(CHOSEN, "A cat.", 0.9499)


def test_sentence_gate_with_local_model(tiny_sentence_transformer):
    g = SentenceGate(str(tiny_sentence_transformer), batch_size=2)
    sims = g.similarity([CHOSEN, CHOSEN, "A dog."], [CHOSEN, "A gray cat sleeps.", "A dog on a bench."])
    assert len(sims) == 3 and sims[0] == pytest.approx(1.0, abs=1e-5)
    assert all(-1.0 <= s <= 1.0 for s in sims)
    assert g.describe()["model"] == str(tiny_sentence_transformer)


def test_auto_falls_back_to_lexical_and_says_why(tmp_path, caplog):
    with caplog.at_level("DEBUG", logger="realign_data.building.gate"):
        g = load_gate("auto", str(tmp_path / "no-such-model"), local_files_only=True)
    assert isinstance(g, LexicalGate)
    # said once: the build's summary prints fallback_reason as a Note, so the gate itself only logs at debug
    assert [r.levelname for r in caplog.records] == ["DEBUG"] and "lexical" in caplog.records[0].getMessage()
    assert "lexical" in g.describe()["fallback_reason"]
    with pytest.raises(GateError, match="cannot load sentence model"):
        load_gate("sentence", str(tmp_path / "no-such-model"), local_files_only=True)
    with pytest.raises(GateError, match="unknown gate"):
        load_gate("cosine")
