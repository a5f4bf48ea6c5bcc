"""Issue 23 (2): the default CHAIR is the reference chair.py's, checked against an independent re-implementation
of the reference algorithm (tests/support/chair_reference.py) over 300 generated captions."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))
import chair_reference
from chair_reference import ReferenceChair
from realign_data.objects.reference import tokenize
from realign_trl.eval.scoring import ChairScorer, chair_metrics

NOUNS = [
    "dog",
    "dogs",
    "puppy dog",
    "puppies",
    "tv monitor",
    "monitors",
    "a bus",
    "buses",
    "people",
    "children",
    "women",
    "man's",
    "men",
    "knives",
    "knife",
    "wine glass",
    "wine glasses",
    "glasses",
    "hot dog",
    "hot dogs",
    "hot-dog",
    "teddy bears",
    "baby bird",
    "adult elephants",
    "passenger jet",
    "passenger train",
    "train tracks",
    "toilet seat",
    "seat",
    "toilet",
    "chairs",
    "stools",
    "motor bike",
    "motorbikes",
    "motor cycle",
    "cheesecake",
    "cupcakes",
    "iPhone",
    "cell phones",
    "mobile phone",
    "phones",
    "ties",
    "a bow tie",
    "bow",
    "bowls",
    "containers",
    "oranges",
    "an orange cat",
    "orange juice",
    "sports ball",
    "balls",
    "skis",
    "ski",
    "sheep",
    "cattle",
    "oxen",
    "ox",
    "geese",
    "mice",
    "a mouse",
    "laptop computer",
    "computers",
    "dining tables",
    "table",
    "desks",
    "stove top oven",
    "stove",
    "traffic lights",
    "street light",
    "streetlight",
    "stoplights",
    "male",
    "female",
    "collie",
    "pandas",
    "couches",
    "sofa",
    "potted plants",
    "houseplant",
    "plant",
    "mug",
    "cups",
    "umbrellas",
    "parasol",
    "football",
    "hair drier",
    "hair dryer",
    "fire hydrants",
    "stop sign",
    "home plate",
    "benches",
    "pizzas",
    "donuts",
    "broccoli",
    "carrots",
    "horses",
    "zebras",
    "giraffes",
    "boats",
    "ferries",
    "trucks",
    "cars",
    "taxis",
    "airplanes",
    "jets",
    "kites",
    "surfboards",
    "skateboards",
    "refrigerator",
    "fridges",
    "ovens",
    "books",
    "clocks",
    "vases",
    "scissors",
    "toothbrushes",
    "sinks",
    "grass",
    "sky",
    "trees",
    "a building",
    "water",
    "a fence",
    "clouds",
    "baby",
    "babies",
    "adult",
    "player's",
]
FILLERS = [
    "a",
    "two",
    "the",
    "some",
    "and",
    "with",
    "near",
    "on",
    "under",
    "next to",
    "is",
    "are",
    "sitting",
    "standing",
    "there",
    "can't",
    "isn't",
    "red",
    "large",
    "(",
    ")",
    '"',
    "--",
    "of",
    "cannot",
    "''",
    "...",
]
ENDS = [".", "!", "?", ",", ";", ":", ""]


def captions(n: int, seed: int = 0) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rnd.randint(1, 4)):  # sentences
            words = [rnd.choice(FILLERS if rnd.random() < 0.45 else NOUNS) for _ in range(rnd.randint(3, 12))]
            if rnd.random() < 0.3:
                words.append(rnd.choice(words))  # repeats
            sentence = " ".join(words)
            parts.append((sentence[:1].upper() + sentence[1:]) + rnd.choice(ENDS))
        out.append(" ".join(parts))
    return out


def test_tokens_are_nltk_word_tokenize_tokens():
    extra = ["\"A dog,\" he said; the cat's toy (a ball) -- \"two\" ''dogs''.", "I wanna. We cannot, you gotta!"]
    for caption in captions(300, seed=3) + extra:
        assert tokenize(caption.lower()) == chair_reference.word_tokenize(caption.lower()), caption


@pytest.mark.skipif(chair_reference.NLTK_TREEBANK is None, reason="nltk is not installed (pip install -e '.[dev]')")
def test_the_oracles_own_tokeniser_is_nltks():
    extra = [
        "dogs' toys",
        '("dog")',
        "dogs''",
        "'' dog",
        "x --- y",
        "costs $5,000: 3:30 pm.",
        "wait...",
        "end.)",
        "i wanna.",
        "wanna, we cannot",
    ]
    for sentence in [s for c in captions(300, seed=4) for s in chair_reference.sentences(c.lower())] + extra:
        assert chair_reference.treebank(sentence) == chair_reference.NLTK_TREEBANK(sentence), sentence


def test_reference_chair_agrees_exactly_with_the_reference_algorithm():
    ref, ours = ReferenceChair(), ChairScorer()
    caps = captions(300)
    assert len(set(caps)) >= 290
    rnd = random.Random(1)
    categories = sorted(set(ref.node.values()))
    gt_caps = captions(300, seed=2)
    truths_ref, records = [], []
    for k, caption in enumerate(caps):
        assert [m.object for m in ours.mentions(caption)] == ref.caption_to_words(caption)[1], caption
        assert [m.word for m in ours.mentions(caption)] == ref.caption_to_words(caption)[0], caption
        cats, refs = rnd.sample(categories, 4), [gt_caps[k]]
        truth = ref.truth(cats, refs)
        assert ours.ground_truth(cats, refs) == truth
        truths_ref.append(truth)
        records.append({"answer": caption, **ours.score(caption, truth)})
    expected = ref.compute(caps, truths_ref)
    got = chair_metrics(records)
    assert got["mentions"] > 1000 and 0 < got["chair_i"] < 1
    assert got["chair_s"] == pytest.approx(expected["chair_s"], abs=0, rel=1e-12)
    assert got["chair_i"] == pytest.approx(expected["chair_i"], abs=0, rel=1e-12)


@pytest.mark.parametrize(
    "caption, mentions",
    [
        ("A puppy dog near a tv monitor.", [("puppy", "dog"), ("dog", "dog"), ("tv", "tv"), ("monitor", "tv")]),
        ("A bus and two buses.", [("bus", "bus")]),  # pattern's singularize turns "bus" into "bu", as in the reference
        ("A wine glass and glasses.", [("wine glass", "wine glass")]),
        (
            "A male and a female near a collie, a streetlight and a stoplight.",
            [
                ("male", "person"),
                ("female", "person"),
                ("collie", "dog"),
                ("streetlight", "traffic light"),
                ("stoplight", "traffic light"),
            ],
        ),
        ("A mug, a plant, a parasol, a football and a hair dryer.", []),  # our extras are not the reference's
        ("An orange cat.", [("orange", "orange"), ("cat", "cat")]),  # the reference has no colour rule
        ("A toilet seat and a seat.", [("toilet", "toilet")]),
        ("Train tracks and a train.", [("train", "train")]),
    ],
)
def test_reference_reading_quirks(caption, mentions):
    assert [(m.word, m.object) for m in ChairScorer().mentions(caption)] == mentions


def test_chair_i_unique_and_extended_synonyms():
    s = ChairScorer()
    rec = s.score("A dog, a dog and a dog next to a cat.", {"cat"})
    m = chair_metrics([{"answer": "", **rec}])
    assert (m["chair_i"], m["chair_i_unique"]) == (pytest.approx(3 / 4), pytest.approx(1 / 2))
    ext = ChairScorer(synonyms="extended")
    assert [(m.word, m.object) for m in ext.mentions("A mug and a plant on a parasol table.")][:2] == [
        ("mug", "cup"),
        ("plant", "potted plant"),
    ]
    with pytest.raises(ValueError, match="unknown CHAIR synonym set 'wordnet'; valid: reference, extended"):
        ChairScorer(synonyms="wordnet")
