"""AMBER (Wang et al., 2023; github.com/junyangwang0410/AMBER): generative and discriminative hallucination, read
from the AMBER release's own files and scored as its ``inference.py`` does.

``--amber-root`` is the release (or a copy of its ``data/`` folder's layout)::

    data/annotations.json       [{"id", "type", "truth", "hallu"?}, ...]  (generative, discriminative-*, relation)
    data/query/query_all.json   [{"id", "image": "AMBER_1.jpg", "query"}, ...]   (or the per-task query files)
    data/relation.json          {"word": [associated words], ...}: the object vocabulary and its associations
    data/safe_words.txt         one word a line: nouns never counted
    data/image/AMBER_<n>.jpg    the images (or --amber-images)

Generative task (one "Describe this image." per image), over the nouns of each response that the vocabulary knows:

* CHAIR = nouns that are neither ground truth nor associated with it / nouns
* Cover = ground-truth objects mentioned (by name or an associated word) / ground-truth objects
* Hal = responses with at least one such noun / responses
* Cog = the annotated likely-hallucinated objects (``hallu``) mentioned / those objects

Discriminative task: yes/no questions on existence (``discriminative-hallucination``), attributes (state, number,
action) and relations (``discriminative-relation`` and ``relation``), with accuracy and, as AMBER does, precision,
recall and F1 of the answer **no** (the hallucination-aware class).

Where this differs from ``inference.py`` (which needs nltk's tagger and lemmatizer and spaCy's
``en_core_web_lg``, neither installable offline nor at runtime here): a noun is a response word whose singular
(``inflect``) is a vocabulary word, instead of an nltk ``NN*`` tag lemmatized by WordNet, so a vocabulary word used
as a verb or adjective ("light", "orange") also counts; and spaCy's similarity fallback (> 0.8 with a truth or
hallu word) is not run: only exact and associated words match, so CHAIR can be a little higher. AMBER compares
discriminative answers with the exact strings "Yes"/"No"; here an answer is read with the POPE parser
(``--pope-parser``). Metrics are fractions (AMBER prints percentages) and F1 has no 1e-4 guard in its
denominator.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

DIMENSIONS = {
    "existence": ("discriminative-hallucination",),
    "attribute": (
        "discriminative-attribute-state",
        "discriminative-attribute-number",
        "discriminative-attribute-action",
    ),
    "relation": ("discriminative-relation", "relation"),
}
DIMENSION_OF = {t: d for d, types in DIMENSIONS.items() for t in types}


@dataclass
class AmberData:
    """The AMBER release: queries, annotations by id, the word associations and the safe words."""

    queries: list[dict]
    annotations: dict[int, dict]
    association: dict[str, list[str]]
    safe_words: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, root: str | Path) -> AmberData:
        from .suite import EvalError

        data = Path(root).expanduser() / "data"
        if not data.is_dir():
            data = Path(root).expanduser()
        files = {
            "annotations": data / "annotations.json",
            "relation": data / "relation.json",
            "safe words": data / "safe_words.txt",
        }
        for what, path in files.items():
            if not path.is_file():
                raise EvalError(f"{str(root)!r} is not an AMBER release: {what} file {str(path)!r} is missing.")
        query_all = data / "query" / "query_all.json"
        query_files = [query_all] if query_all.is_file() else sorted((data / "query").glob("query_*.json"))
        if not query_files:
            raise EvalError(f"{str(root)!r} is not an AMBER release: no query file in {str(data / 'query')!r}.")
        try:
            queries = {q["id"]: q for f in query_files for q in json.loads(f.read_text(encoding="utf-8"))}
            annotations = {a["id"]: a for a in json.loads(files["annotations"].read_text(encoding="utf-8"))}
            association = json.loads(files["relation"].read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as e:
            raise EvalError(f"the AMBER files in {str(data)!r} cannot be read ({e}).") from None
        safe = {line.split("\n")[0] for line in files["safe words"].read_text(encoding="utf-8").splitlines()}
        missing = [i for i in queries if i not in annotations]
        if missing:
            raise EvalError(f"AMBER query id {missing[0]} has no entry in {str(files['annotations'])!r}.")
        return cls([queries[i] for i in sorted(queries)], annotations, association, safe)

    def vocabulary(self) -> set[str]:
        return set(self.association) | {w for words in self.association.values() for w in words}


def image_number(name: str) -> int:
    """``AMBER_12.jpg`` -> 12 (the suite keys images by number)."""
    import zlib

    m = re.search(r"(\d+)", name)
    return int(m.group(1)) if m else zlib.crc32(name.encode()) + 10**10  # stable across runs (resume)


def amber_suite(root: str | Path, images: Optional[str | Path] = None, num_images: Optional[int] = None):
    """An :class:`~realign_trl.eval.suite.EvalSuite` with ``benches=("amber",)`` over the AMBER release."""
    from .suite import EvalError, EvalSuite

    data = AmberData.load(root)
    folder = Path(images).expanduser() if images else Path(root).expanduser() / "data" / "image"
    names = list(dict.fromkeys(q["image"] for q in data.queries))[:num_images]
    keep = set(names)
    data.queries = [q for q in data.queries if q["image"] in keep]
    blobs = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            raise EvalError(
                f"AMBER image {str(path)!r} is missing: download the images of the release into "
                f"{str(folder)!r} or pass --amber-images."
            )
        blobs[image_number(name)] = path.read_bytes()
    source = {
        "benches": ["amber"],
        "amber_root": str(Path(root).expanduser().resolve()),
        "images_dir": str(folder),
        "amber_queries": len(data.queries),
    }
    return EvalSuite(benches=("amber",), images=blobs, source=source, amber=data)


def work(data: AmberData) -> dict[str, list[tuple[int, str]]]:
    """``{"amber_generative": [(image, query)], "amber_discriminative": [...]}`` in query order."""
    out: dict[str, list[tuple[int, str]]] = {"amber_generative": [], "amber_discriminative": []}
    for q in data.queries:
        kind = "amber_generative" if data.annotations[q["id"]]["type"] == "generative" else "amber_discriminative"
        out[kind].append((image_number(q["image"]), q["query"]))
    return {k: list(dict.fromkeys(v)) for k, v in out.items() if v}


def response_nouns(text: str, vocabulary: set[str]) -> list[str]:
    """The words of ``text`` whose singular is an AMBER vocabulary word (in order, repeats kept)."""
    from realign_data.objects.english import _engine

    out = []
    for word in re.findall(r"[a-z]+", (text or "").lower()):
        if word in vocabulary:
            out.append(word)
            continue
        singular = _engine().singular_noun(word)
        if singular and singular in vocabulary:
            out.append(singular)
    return out


def _first_index(noun: str, pairs: list[tuple[str, int]]) -> Optional[int]:
    return next((idx for word, idx in pairs if word == noun), None)


def score_generative(text: str, annotation: dict, data: AmberData, vocabulary: set[str]) -> dict:
    """One response: its nouns, the hallucinated ones, the truth and hallu objects it covers."""
    truth, hallu = annotation.get("truth", []), annotation.get("hallu", [])
    # inference.py's order: the associated words of each truth object first, then the truth words themselves
    safe = [(w, i) for i, t in enumerate(truth) for w in data.association.get(t, [])] + [
        (t, i) for i, t in enumerate(truth)
    ]
    risky = [(w, i) for i, h in enumerate(hallu) for w in data.association.get(h, [])] + [
        (h, i) for i, h in enumerate(hallu)
    ]
    nouns = [n for n in response_nouns(text, vocabulary) if n not in data.safe_words]
    covered, cognised, hallucinated = set(), set(), []
    for noun in nouns:
        idx = _first_index(noun, safe)
        if idx is not None:
            covered.add(idx)
            continue
        idx = _first_index(noun, risky)
        if idx is not None:
            cognised.add(idx)
        hallucinated.append(noun)
    return {
        "nouns": nouns,
        "hallucinated": hallucinated,
        "truth": truth,
        "hallu": hallu,
        "covered": sorted(truth[i] for i in covered),
        "cognised": sorted(hallu[i] for i in cognised),
    }


def _yes_no_metrics(rows: list[dict]) -> dict:
    n = len(rows)
    correct = sum(r["prediction"] == r["label"] for r in rows)
    said_no = sum(r["prediction"] == "no" for r in rows)
    truly_no = sum(r["label"] == "no" for r in rows)
    both_no = sum(r["prediction"] == "no" and r["label"] == "no" for r in rows)
    precision = both_no / said_no if said_no else 0.0
    recall = both_no / truly_no if truly_no else 0.0
    return {
        "accuracy": correct / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "questions": n,
        "unparseable": sum(not r.get("recognised", True) for r in rows),
    }


def score_amber(data: AmberData, answers: dict, parser: str = "robust") -> tuple[dict, list[dict]]:
    """``(metrics, records)`` of the answers ``{(bench, image, query): (text, error)}``."""
    from .scoring import parse_pope_answer

    vocabulary = data.vocabulary()
    rows: list[dict[str, Any]] = []
    for q in data.queries:
        ann = data.annotations[q["id"]]
        generative = ann["type"] == "generative"
        key = ("amber_generative" if generative else "amber_discriminative", image_number(q["image"]), q["query"])
        text, error = answers[key]
        row: dict[str, Any] = {
            "id": q["id"],
            "image": q["image"],
            "type": ann["type"],
            "query": q["query"],
            "answer": text,
        }
        if error is not None:
            row["error"] = error
        elif generative:
            row.update(score_generative(text, ann, data, vocabulary))
        else:
            prediction, recognised = parse_pope_answer(text, parser)
            row.update(
                label=ann["truth"],
                prediction=prediction,
                recognised=recognised,
                unparseable=not recognised,
                dimension=DIMENSION_OF.get(ann["type"], "relation"),
            )
        rows.append(row)
    gen = [r for r in rows if r["type"] == "generative" and "error" not in r]
    disc = [r for r in rows if r["type"] != "generative" and "error" not in r]
    nouns = sum(len(r["nouns"]) for r in gen)
    truths = sum(len(r["truth"]) for r in gen)
    hallus = sum(len(r["hallu"]) for r in gen)
    metrics: dict[str, Any] = {"failed": sum("error" in r for r in rows), "parser": parser}
    if gen:
        metrics["generative"] = {
            "chair": sum(len(r["hallucinated"]) for r in gen) / nouns if nouns else 0.0,
            "cover": sum(len(r["covered"]) for r in gen) / truths if truths else 0.0,
            "hal": sum(bool(r["hallucinated"]) for r in gen) / len(gen),
            "cog": sum(len(r["cognised"]) for r in gen) / hallus if hallus else 0.0,
            "responses": len(gen),
            "nouns": nouns,
        }
    if disc:
        metrics["discriminative"] = {
            "all": _yes_no_metrics(disc),
            **{
                d: _yes_no_metrics([r for r in disc if r["dimension"] == d])
                for d in DIMENSIONS
                if any(r["dimension"] == d for r in disc)
            },
        }
    return metrics, rows
