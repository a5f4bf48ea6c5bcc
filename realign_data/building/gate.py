"""The similarity gate: a fill becomes the rejected answer only if it is different enough from the chosen one.

Re-Align embeds the chosen answer and the fill with a SentenceTransformer and accepts the fill when their
cosine similarity is **below 0.95**; otherwise the next retrieved image is tried.

Two gates share one interface, ``similarity(chosen: list[str], fills: list[str]) -> list[float]``:

* :class:`SentenceGate` — SentenceTransformer cosine (default ``sentence-transformers/all-MiniLM-L6-v2``,
  any local path or Hub id), batched, normalised embeddings.
* :class:`LexicalGate` — model-free TF-IDF cosine over word uni- and bi-grams of the two texts. The IDF is
  computed over the pair itself with scikit-learn's smoothing, ``idf(t) = ln((1 + 2) / (1 + df(t))) + 1``,
  so words the two texts share weigh 1 and words only one of them has weigh ~1.41: a changed object,
  colour or count lowers the score more than the unchanged scaffolding around it. Deterministic, no
  download, used where no sentence model can be loaded.

:func:`is_rejected_fill` applies the rule: identical texts (after whitespace/case normalisation) are never
accepted, whatever the score.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Protocol, Sequence

DEFAULT_SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_THRESHOLD = 0.95
GATES = ("auto", "sentence", "lexical")

logger = logging.getLogger(__name__)


class GateError(RuntimeError):
    """The requested gate cannot be used (e.g. the sentence model cannot be loaded)."""


class Gate(Protocol):
    name: str

    def similarity(self, chosen: Sequence[str], fills: Sequence[str]) -> list[float]: ...

    def describe(self) -> dict: ...


def normalize_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def is_rejected_fill(chosen: str, fill: str | None, similarity: float, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """True when ``fill`` may serve as the rejected answer: non-empty, not identical, similarity < threshold."""
    if not fill or not fill.strip():
        return False
    if normalize_text(fill) == normalize_text(chosen):
        return False
    return similarity < threshold


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (apostrophe contractions kept): the lexical gate's and the quality filters' words."""
    return _TOKEN.findall(text.lower())


def _ngrams(text: str, n_max: int) -> Counter:
    tokens = words(text)
    grams: Counter = Counter()
    for n in range(1, n_max + 1):
        for i in range(len(tokens) - n + 1):
            grams[" ".join(tokens[i : i + n])] += 1
    return grams


@dataclass
class LexicalGate:
    """TF-IDF cosine over word n-grams (1..``ngram_max``) with per-pair smoothed IDF (module docstring)."""

    ngram_max: int = 2
    name: str = "lexical"
    fallback_reason: str | None = None  # set when ``auto`` fell back to this gate

    def pair_similarity(self, a: str, b: str) -> float:
        ta, tb = _ngrams(a, self.ngram_max), _ngrams(b, self.ngram_max)
        if not ta or not tb:
            return 1.0 if not ta and not tb else 0.0
        idf = {t: math.log(3 / (1 + (t in ta) + (t in tb))) + 1 for t in set(ta) | set(tb)}
        va = {t: c * idf[t] for t, c in ta.items()}
        vb = {t: c * idf[t] for t, c in tb.items()}
        dot = sum(v * vb.get(t, 0.0) for t, v in va.items())
        na = math.sqrt(sum(v * v for v in va.values()))
        nb = math.sqrt(sum(v * v for v in vb.values()))
        return float(dot / (na * nb))

    def similarity(self, chosen: Sequence[str], fills: Sequence[str]) -> list[float]:
        return [round(self.pair_similarity(a, b), 6) for a, b in zip(chosen, fills)]

    def describe(self) -> dict:
        out = {"gate": self.name, "ngram_max": self.ngram_max}
        if self.fallback_reason:
            out["fallback_reason"] = self.fallback_reason
        return out


class SentenceGate:
    """SentenceTransformer cosine similarity between chosen and fill, batched.

    ``model`` is a Hub id or local path; loading failures raise :class:`GateError` with the reason. ``device``
    ``auto`` is ``cuda:LOCAL_RANK`` when CUDA is available (:mod:`realign_data.runtime.devices`); the model stays in fp32,
    since its scores are compared to a threshold. Scores are rounded to 6 decimals so that a re-run on the same
    machine records identical figures.
    """

    name = "sentence"

    def __init__(
        self,
        model: str = DEFAULT_SENTENCE_MODEL,
        *,
        device: str = "auto",
        batch_size: int = 64,
        trust_remote_code: bool = False,
        local_files_only: bool = False,
    ) -> None:
        from realign_data.runtime.devices import resolve_device

        self.model_name = str(model)
        self.batch_size = batch_size
        device = resolve_device(device)  # a DeviceError is the user's to fix, not a reason to fall back
        try:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(
                self.model_name, device=device, trust_remote_code=trust_remote_code, local_files_only=local_files_only
            )
        except Exception as e:
            raise GateError(
                f"cannot load sentence model {self.model_name!r} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from e

    def similarity(self, chosen: Sequence[str], fills: Sequence[str]) -> list[float]:
        if not chosen:
            return []
        import numpy as np

        texts = list(chosen) + list(fills)
        emb = self.model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        a, b = emb[: len(chosen)], emb[len(chosen) :]
        sims = np.clip((a * b).sum(axis=1), -1.0, 1.0)
        return [round(float(s), 6) for s in sims]

    def describe(self) -> dict:
        return {"gate": self.name, "model": self.model_name}


def load_gate(
    kind: str = "auto",
    model: str = DEFAULT_SENTENCE_MODEL,
    *,
    device: str = "auto",
    batch_size: int = 64,
    local_files_only: bool = False,
) -> Gate:
    """Build a gate. ``auto`` tries the sentence model and falls back to the lexical gate, saying so.

    The fallback is recorded in the gate's ``fallback_reason`` (and so in the build's provenance, whose summary
    says it once as a ``Note:``) and logged at debug level only, so that a build does not say it twice. ``local_files_only`` loads the sentence model from the local cache only (no network attempt).
    """
    if kind not in GATES:
        raise GateError(f"unknown gate {kind!r}; valid: {', '.join(GATES)}")
    if kind == "lexical":
        return LexicalGate()
    try:
        return SentenceGate(model, device=device, batch_size=batch_size, local_files_only=local_files_only)
    except GateError as e:
        if kind == "sentence":
            raise
        msg = f"{e}; the sentence-model weights are unavailable (offline?), using the lexical TF-IDF gate instead"
        logger.debug("%s", msg)
        return LexicalGate(fallback_reason=msg)
