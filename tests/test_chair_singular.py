"""The CHAIR oracle's singulariser (tests/support/chair_singular.py) gives pattern 2.6's singular for every word CHAIR reads:
each word of the reference synonym file and of its two-word names, and the plural of each (inflect's plural), is
checked against a hand-written expectation: the word itself, or, for the words where pattern does something else,
the table below. The project's own singulariser is held to the same table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))
from chair_reference import JOINED_NAMES, QUALIFIED, SYNONYMS_FILE
from chair_singular import singular
from realign_data.objects.reference_singular import singularize

# Where pattern 2.6's singular of a token is not the synonym word that token was made from.
NOT_THE_WORD = {
    "bus": "bu",
    "minibus": "minibu",
    "airbus": "airbu",  # a singular in -s loses it ...
    "glass": "glas",
    "tennis": "tenni",
    "sports": "sport",
    "skis": "ski",
    "skiss": "skis",
    "sportss": "sports",
    "tenniss": "tennis",  # ... (inflect's plurals of plurals)
    "people": "person",
    "children": "child",
    "oxen": "ox",  # synonym words that are plural already
    "peoples": "people",
    "childrens": "children",
    "oxens": "oxs",
    "canoes": "cano",  # -oes loses "es" (potatoes)
    "ties": "ty",
    "magpies": "magpy",  # -ies is -y unless the -ie noun is on pattern's list ...
    "collies": "collies",
    "doggies": "doggies",  # ... and then the plural comes back as it is
    "knives": "knife",  # not the synonym file's "knive"
}

# The cases a reader would ask about, whether or not the synonym file has them.
TRICKY = [
    ("bus", "bu"),
    ("buses", "bus"),
    ("glass", "glas"),
    ("glasses", "glass"),
    ("scissors", "scissors"),
    ("skis", "ski"),
    ("people", "person"),
    ("men", "man"),
    ("women", "woman"),
    ("policemen", "policeman"),
    ("children", "child"),
    ("grandchildren", "grandchild"),
    ("mice", "mouse"),
    ("knives", "knife"),
    ("leaves", "leaf"),
    ("geese", "goose"),
    ("teeth", "tooth"),
    ("feet", "foot"),
    ("boxes", "box"),
    ("benches", "bench"),
    ("sheep", "sheep"),
    ("cattle", "cattle"),
    ("bison", "bison"),
    ("hair", "hair"),
    ("driers", "drier"),
    ("puppies", "puppy"),
    ("ferries", "ferry"),
    ("stoves", "stove"),
    ("calves", "calf"),
    ("wolves", "wolf"),
    ("luggage", "luggage"),
    ("broccoli", "broccoli"),
    ("taxis", "taxi"),
    ("octopi", "octopus"),
    ("oxen", "ox"),
    ("ox", "ox"),
    ("toes", "to"),
    ("sandwiches", "sandwich"),
    ("is", "is"),
    ("this", "thi"),
    ("'s", "'"),
    ("dogs'", "dog's"),
    ("four", "fmy"),
    ("ice", "ice"),
    ("news", "news"),
]


def chair_words() -> list[str]:
    words = set(QUALIFIED)
    for line in SYNONYMS_FILE.read_text().splitlines():
        for name in line.strip().split(", "):
            words.update(name.lower().split())  # the reference lower-cases the caption: "iPhone" is "iphone"
    for name in JOINED_NAMES.replace("\n", "").split("|"):
        words.update(name.split())
    return sorted(words)


def cases() -> list[tuple[str, str]]:
    import inflect

    plural = inflect.engine().plural_noun
    out = []
    for word in chair_words():
        for token in (word, plural(word)):
            out.append((token, NOT_THE_WORD.get(token, word)))
    return out


def test_every_synonym_word_and_its_plural():
    checked = cases()
    assert len(checked) > 800 and ("buses", "bus") in checked and ("driers", "drier") in checked
    wrong = [(token, singular(token), expected) for token, expected in checked if singular(token) != expected]
    assert wrong == []


@pytest.mark.parametrize("token, expected", TRICKY)
def test_tricky_words(token, expected):
    assert singular(token) == expected


def test_the_projects_singulariser_reads_them_the_same():
    tokens = [t for t, _ in cases()] + [t for t, _ in TRICKY]
    assert [singularize(t) for t in tokens] == [singular(t) for t in tokens]
