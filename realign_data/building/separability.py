"""Image-blind separability: how often a text-only classifier picks the chosen answer without seeing any image.

Re-Align's rejected answer should be *plausible but wrong*: wrong about the image, yet as likely as the chosen one on
its words alone. If a classifier that never sees the image tells the two apart, a preference loss can learn those
words instead of the image (the hypothesis-only baseline for annotation artifacts in NLI: Gururangan et al. 2018,
Poliak et al. 2018). 0.5 means the rejected answers are, on their words, as plausible as the chosen ones.

The classifier is a Bradley-Terry logistic regression over bag-of-words + bigram counts
(``score(text) = w · φ(text)``, trained on ``φ(chosen) − φ(rejected)``), in numpy, deterministic for a seed. Accuracy is measured by k-fold
cross-validation grouped by chosen text (a chosen answer and its pairs are never on both sides of a split): every
pair is held out once, and a held-out pair counts as picked when ``score(chosen) > score(rejected)`` (a tie counts
half). The interval is Wilson's at 95 %. The words and bigrams it leans on come from a fit on every pair.

:func:`blind_separability` takes the texts; :func:`of_built` a build directory; :func:`audit` any preference
dataset with ``chosen``/``rejected`` columns (a ``save_to_disk`` folder, a parquet/jsonl/json/csv file, a Hub id).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

MIN_PAIRS = 20  # fewer pairs than this: no number (a split would leave too few to train or to test)
FOLDS = 5
MAX_PAIRS = 20_000  # larger datasets are measured on a seeded sample of this many pairs
MAX_FEATURES = 20_000  # the most frequent words/bigrams of the training folds
L2 = 1e-3
STEPS = 300
LEAN_WORDS = 8
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class AuditError(ValueError):
    """A dataset cannot be audited (unreadable, or no usable ``chosen``/``rejected`` columns)."""


# ------------------------------------------------------------------------------------------------- texts
def answer_text(value: Any) -> str:
    """The answer of a ``chosen``/``rejected`` value: a string, or TRL conversational messages (the assistant text;
    every message's text when none has the assistant role). ``None`` reads as empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise AuditError(f"a chosen/rejected value must be a string or a list of messages, got {type(value).__name__}")
    messages = [m for m in value if isinstance(m, dict)]
    if len(messages) != len(value):
        return " ".join(answer_text(v) for v in value)
    said = [m for m in messages if m.get("role") == "assistant"] or messages
    return " ".join(_content_text(m.get("content")) for m in said).strip()


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    return " ".join(
        str(p.get("text") or "") if isinstance(p, dict) else str(p)
        for p in content
        if not isinstance(p, dict) or p.get("type", "text") == "text"
    )


def features(text: str) -> list[str]:
    """Lower-cased words and adjacent-word bigrams (``"one brown"``) of ``text``."""
    words = _TOKEN.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


# ------------------------------------------------------------------------------------------------ the model
def _encode(texts: Sequence[list[str]], vocab: dict[str, int]):
    """Sparse counts as (row, column, value) arrays."""
    import numpy as np

    rows, cols, vals = [], [], []
    for r, feats in enumerate(texts):
        for f, n in Counter(f for f in feats if f in vocab).items():
            rows.append(r)
            cols.append(vocab[f])
            vals.append(float(n))
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), np.asarray(vals, dtype=np.float64)


def _fit(pairs: list[tuple[list[str], list[str]]]) -> tuple[dict[str, int], Any]:
    """Vocabulary and weights of the Bradley-Terry model on training pairs (full-batch Adam on the mean log-loss)."""
    import numpy as np

    df: Counter = Counter()
    for c, r in pairs:
        df.update(set(c))
        df.update(set(r))
    vocab = {f: i for i, (f, _) in enumerate(sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_FEATURES])}
    rc, cc, vc = _encode([c for c, _ in pairs], vocab)
    rr, cr, vr = _encode([r for _, r in pairs], vocab)
    rows, cols, vals = np.concatenate([rc, rr]), np.concatenate([cc, cr]), np.concatenate([vc, -vr])
    n, dim = len(pairs), len(vocab)
    w, m, v = np.zeros(dim), np.zeros(dim), np.zeros(dim)
    for t in range(1, STEPS + 1):
        margin = np.bincount(rows, weights=vals * w[cols], minlength=n)
        resid = -1.0 / (1.0 + np.exp(np.clip(margin, -50, 50)))  # d/dmargin of log(1 + exp(-margin))
        grad = np.bincount(cols, weights=vals * resid[rows], minlength=dim) / n + L2 * w
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return vocab, w


def _score(feats: list[str], vocab: dict[str, int], w) -> float:
    return float(sum(w[vocab[f]] for f in feats if f in vocab))


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def blind_separability(
    chosen: Sequence[str],
    rejected: Sequence[str],
    *,
    seed: int = 0,
    folds: int = FOLDS,
    max_pairs: int = MAX_PAIRS,
    lean_words: int = LEAN_WORDS,
) -> dict:
    """How often a text-only classifier ranks each held-out chosen answer above its rejected one.

    Returns ``{"accuracy", "ci_low", "ci_high", "n_heldout", "n_pairs", "folds", "ties", "chosen_cues",
    "rejected_cues", "method", ...}``; with fewer than :data:`MIN_PAIRS` usable pairs (or fewer than two distinct
    chosen answers), ``{"status": "too_few_pairs", "n_pairs", "min_pairs", "note"}`` and no accuracy.
    """
    if len(chosen) != len(rejected):
        raise ValueError(f"{len(chosen)} chosen answers but {len(rejected)} rejected ones")
    pairs = [(c, r) for c, r in zip(chosen, rejected) if (c or "").strip() and (r or "").strip()]
    total = len(pairs)
    rng = random.Random(seed)
    if len(pairs) > max_pairs:
        pairs = rng.sample(pairs, max_pairs)
    groups = sorted({c for c, _ in pairs})
    rng.shuffle(groups)
    k = min(folds, len(groups))
    method = (
        f"logistic regression (Bradley-Terry) on word + bigram counts, {k}-fold cross-validation grouped by "
        f"chosen text, seed {seed}; Wilson 95 % interval"
    )
    if len(pairs) < MIN_PAIRS or k < 2:
        return {
            "status": "too_few_pairs",
            "n_pairs": len(pairs),
            "min_pairs": MIN_PAIRS,
            "note": f"{len(pairs)} usable pairs: too few to split into training and held-out pairs "
            f"(at least {MIN_PAIRS}, with two different chosen answers); no accuracy reported",
        }
    fold_of = {c: i % k for i, c in enumerate(groups)}
    feats = [(features(c), features(r)) for c, r in pairs]
    wins = ties = 0
    for f in range(k):
        train = [p for p, (c, _) in zip(feats, pairs) if fold_of[c] != f]
        vocab, w = _fit(train)
        for (fc, fr), (c, _) in zip(feats, pairs):
            if fold_of[c] == f:
                sc, sr = _score(fc, vocab, w), _score(fr, vocab, w)
                wins += sc > sr + 1e-9
                ties += abs(sc - sr) <= 1e-9
    n = len(pairs)
    accuracy = (wins + 0.5 * ties) / n
    low, high = wilson(wins + 0.5 * ties, n)
    vocab, w = _fit(feats)
    order = sorted(vocab, key=lambda x: (-w[vocab[x]], x))
    cue = lambda x: {"feature": x, "weight": round(float(w[vocab[x]]), 3)}  # noqa: E731
    return {
        "accuracy": round(accuracy, 4),
        "ci_low": round(low, 4),
        "ci_high": round(high, 4),
        "n_heldout": n,
        "n_pairs": total,
        "sampled": total > n,
        "folds": k,
        "ties": ties,
        "chosen_cues": [cue(x) for x in order[:lean_words] if w[vocab[x]] > 0],
        "rejected_cues": [cue(x) for x in reversed(order[-lean_words:]) if w[vocab[x]] < 0],
        "method": method,
    }


# ------------------------------------------------------------------------------------------------ datasets
def texts_of(dataset) -> tuple[list[str], list[str]]:
    """The chosen and rejected answer texts of a ``datasets.Dataset`` (or a dict of columns)."""
    columns = list(getattr(dataset, "column_names", None) or dataset)
    missing = [c for c in ("chosen", "rejected") if c not in columns]
    if missing:
        raise AuditError(
            f"the dataset has no {' and no '.join(repr(c) for c in missing)} column (it has "
            f"{', '.join(map(repr, columns)) or 'no columns'}); a preference dataset needs 'chosen' and "
            "'rejected' (strings or TRL conversational messages)"
        )
    if hasattr(dataset, "select_columns"):
        dataset = dataset.select_columns(["chosen", "rejected"]).to_dict()
    return [answer_text(v) for v in dataset["chosen"]], [answer_text(v) for v in dataset["rejected"]]


def of_built(out: str | Path, seed: int = 0) -> dict:
    """Blind separability of a build directory's ``train`` split (a seeded sample of :data:`MAX_PAIRS` rows when
    larger); a failure to measure is reported, not raised: the build itself is done."""
    from realign_data.building.output import load_built

    try:
        ds = load_built(out)
        total = len(ds)
        if total > MAX_PAIRS:
            ds = ds.select(sorted(random.Random(seed).sample(range(len(ds)), MAX_PAIRS)))
        result = blind_separability(*texts_of(ds), seed=seed)
    except Exception as e:  # noqa: BLE001 - a measure of a finished build must not fail the build
        return {"status": "error", "note": f"not measured ({type(e).__name__}: {e})"}
    if total > len(ds) and "accuracy" in result:
        result.update(n_pairs=total, sampled=True)
    return result


def load_preference_dataset(source: str, split: Optional[str] = None):
    """A ``save_to_disk`` folder (or a realign build / demo folder), a parquet/jsonl/json/csv file, or a Hub id."""
    import datasets

    datasets.disable_progress_bars()
    path = Path(source).expanduser()
    files = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
    try:
        if path.is_dir():
            from realign_data.building.output import dataset_dir

            built = dataset_dir(path)
            if built is not None:
                from realign_data.building.output import built_splits, load_built

                return load_built(built, split or built_splits(built)[0])
            from realign_data.runtime.atomic import is_saved_dataset

            loaded = (
                datasets.load_from_disk(str(path)) if is_saved_dataset(path) else datasets.load_dataset(str(path))
            )  # a folder of data files
        elif path.is_file():
            if path.suffix.lower() not in files:
                raise AuditError(
                    f"{source!r} is a {path.suffix or 'suffix-less'} file; give a .parquet, .jsonl, "
                    ".json or .csv file, a save_to_disk folder or a Hub dataset id"
                )
            loaded = datasets.load_dataset(files[path.suffix.lower()], data_files=str(path), split="train")
        elif path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
            raise AuditError(
                f"{source!r} is not a file or folder; give a save_to_disk folder, a .parquet/.jsonl "
                "file or a Hub dataset id (namespace/name)"
            )
        else:
            loaded = datasets.load_dataset(source, split=split)
    except AuditError:
        raise
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one sentence
        first = str(e).splitlines()[0] if str(e) else ""
        raise AuditError(f"cannot read the dataset {source!r} ({type(e).__name__}: {first})") from None
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        names = list(loaded)
        pick = split or ("train" if "train" in names else names[0] if len(names) == 1 else None)
        if pick not in names:
            raise AuditError(f"{source!r} has the splits {', '.join(names)}; choose one with --split")
        loaded = loaded[pick]
    return loaded


def audit(source: str, *, split: Optional[str] = None, seed: int = 0) -> dict:
    """Blind separability of any preference dataset with ``chosen``/``rejected`` columns."""
    result = blind_separability(*texts_of(load_preference_dataset(source, split)), seed=seed)
    return {"dataset": source, **({"split": split} if split else {}), **result}


# ------------------------------------------------------------------------------------------------ words
def _cues(cues: list[dict], limit: int = 5) -> str:
    return ", ".join(f'"{c["feature"]}"' for c in cues[:limit]) or "none"


def summary_line(result: Optional[dict]) -> Optional[str]:
    """One line for the build summary, the card and the HTML page (``None`` without a result)."""
    if not result:
        return None
    if "accuracy" not in result:
        return f"Image-blind separability: {result.get('note', 'not measured')}"
    return (
        f"Image-blind separability: a text-only classifier picks the chosen answer in {result['accuracy']:.3f} "
        f"of {result['n_heldout']} held-out pairs (95 % CI {result['ci_low']:.3f}-{result['ci_high']:.3f}; "
        f"0.5 = rejected as plausible as chosen on words alone)"
    )


def cue_line(result: Optional[dict]) -> Optional[str]:
    """The words/bigrams the classifier leans on, one line (``None`` without a measure)."""
    if not result or "accuracy" not in result:
        return None
    return (
        f"  leans on: chosen {_cues(result.get('chosen_cues', []))}; rejected {_cues(result.get('rejected_cues', []))}"
    )
