"""The questions of a POPE set: per image, the annotated objects it is asked about (answer ``yes``) and the absent
ones each negative sampling (``random``, ``popular``, ``adversarial``) picks (answer ``no``), as in the reference
``utils.py`` of the POPE repository; and the seeded order in which evaluations take images. Pure functions of the
annotations and the seed; :mod:`realign_data.evalsets.pope` builds and saves the question sets from them."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from realign_data.kb.corpus import CocoAnnotations

POPE_SPLITS = ("random", "popular", "adversarial")
QUESTION_TEMPLATE = "Is there {article} {object} in the image?"


def question_for(category: str) -> str:
    """POPE's question about one object, with the right article."""
    article = "an" if category[:1].lower() in "aeiou" else "a"
    return QUESTION_TEMPLATE.format(article=article, object=category)


@dataclass
class CorpusStats:
    """What the negative samplings rank by: category frequencies and pairwise co-occurrences of a split."""

    universe: list[str]  # categories present in at least one image, sorted
    popular: list[str]  # by number of images containing them (desc), then name
    co_occurring: dict[str, list[str]]  # category -> categories seen with it, most often first, then name

    @classmethod
    def of(cls, image_categories: Iterable[Sequence[str]]) -> CorpusStats:
        freq: Counter = Counter()
        pairs: dict[str, Counter] = {}
        for cats in image_categories:
            cats = sorted(set(cats))
            freq.update(cats)
            for a in cats:
                row = pairs.setdefault(a, Counter())
                row.update(b for b in cats if b != a)
        by_count = lambda counter: sorted(counter, key=lambda c: (-counter[c], c))  # noqa: E731
        return cls(
            universe=sorted(freq), popular=by_count(freq), co_occurring={a: by_count(row) for a, row in pairs.items()}
        )


def image_order(ann: CocoAnnotations, seed: int = 0, min_objects: int = 1) -> list[int]:
    """Every image with at least ``min_objects`` annotated categories, in a seeded random order.

    Evaluations take images from the front of this list (skipping unreadable files), so the same seed gives the
    same held-out images to POPE, CHAIR and every checkpoint of a study.
    """
    eligible = [i for i in ann.image_ids() if len(ann.categories(i)) >= min_objects]
    random.Random(f"realign-eval-images:{seed}").shuffle(eligible)
    return eligible


def pope_questions(
    image_categories: dict[int, Sequence[str]],
    stats: CorpusStats,
    *,
    seed: int = 0,
    objects_per_image: int = 3,
    samplings: Sequence[str] = POPE_SPLITS,
) -> dict[str, list[dict]]:
    """The questions of every sampling for the given images (in the given order); a pure function.

    Returns ``{sampling: [{"question_id", "image_id", "question", "object", "label"}, ...]}``, question ids
    counting from 1 within each split, positive and negative questions alternating per image.
    """
    pick = random.Random(f"realign-pope-positives:{seed}")
    positives = {}
    for image_id, cats in image_categories.items():
        cats = sorted(set(cats))
        positives[image_id] = pick.sample(cats, min(objects_per_image, len(cats)))
    out: dict[str, list[dict]] = {}
    for sampling in samplings:
        rng = random.Random(f"realign-pope-{sampling}:{seed}")
        rows: list[dict] = []
        for image_id, cats in image_categories.items():
            present = set(cats)
            used: set[str] = set()
            for pos in positives[image_id]:
                rows.append(_question(len(rows) + 1, image_id, pos, "yes"))
                if sampling == "random":
                    ranking: list[str] = []
                elif sampling == "popular":
                    ranking = stats.popular
                else:
                    ranking = stats.co_occurring.get(pos, [])
                neg = next((c for c in ranking if c not in present and c not in used), None)
                if neg is None:  # random sampling, or a ranking with nothing left (as the reference falls back)
                    left = [c for c in stats.universe if c not in present and c not in used]
                    neg = rng.choice(left) if left else None
                if neg is not None:
                    used.add(neg)
                    rows.append(_question(len(rows) + 1, image_id, neg, "no"))
        out[sampling] = rows
    return out


def _question(question_id: int, image_id: int, category: str, label: str) -> dict:
    return {
        "question_id": question_id,
        "image_id": image_id,
        "question": question_for(category),
        "object": category,
        "label": label,
    }
