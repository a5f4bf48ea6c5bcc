"""``pattern.en.singularize`` (pattern 2.6) as the reference CHAIR code called it on each token, step 2 of the
reading in :mod:`realign_data.objects.reference`."""

from __future__ import annotations

from functools import lru_cache

# What ``pattern.en.singularize`` (pattern 2.6) returns for a lower-cased token, re-expressed for this module from
# that function's behaviour (pattern's code is not copied here). Its word lists are kept as pattern 2.6 has them,
# three lost commas included ("wildebeest" + "carp", "water" + "cheese", "zombie" + "bogie" are single strings).
_KEPT_TAILS = (
    "bison",
    "debris",
    "headquarters",
    "pincers",
    "trout",
    "bream",
    "diabetes",
    "herpes",
    "pliers",
    "tuna",
    "breeches",
    "djinn",
    "high-jinks",
    "proceedings",
    "whiting",
    "britches",
    "eland",
    "homework",
    "rabies",
    "wildebeestcarp",
    "elk",
    "innings",
    "salmon",
    "chassis",
    "flounder",
    "jackanapes",
    "scissors",
    "christmas",
    "gallows",
    "mackerel",
    "series",
    "clippers",
    "georgia",
    "measles",
    "shears",
    "cod",
    "graffiti",
    "mews",
    "species",
    "contretemps",
    "mumps",
    "swine",
    "corps",
    "news",
    "swiss",
    "advice",
    "equipment",
    "happiness",
    "luggage",
    "software",
    "bread",
    "fruit",
    "information",
    "mathematics",
    "progress",
    "understanding",
    "butter",
    "furniture",
    "ketchup",
    "mayonnaise",
    "research",
    "watercheese",
    "garbage",
    "knowledge",
    "meat",
    "rice",
    "electricity",
    "gravel",
    "love",
    "mustard",
    "sand",
)  # uninflected and uncountable nouns: a token that ends one of them is kept
_IE_PLURALS = tuple(
    noun + "s"
    for noun in (
        "alergie",
        "cutie",
        "hoagie",
        "newbie",
        "softie",
        "veggie",
        "auntie",
        "doggie",
        "hottie",
        "nightie",
        "sortie",
        "weenie",
        "beanie",
        "eyrie",
        "indie",
        "oldie",
        "stoolie",
        "yuppie",
        "birdie",
        "freebie",
        "junkie",
        "sweetie",
        "zombiebogie",
        "goonie",
        "laddie",
        "pixie",
        "techie",
        "bombie",
        "groupie",
        "laramie",
        "quickie",
        "collie",
        "hankie",
        "lingerie",
        "reverie",
        "toughie",
        "cookie",
        "hippie",
        "meanie",
        "rookie",
        "valkyrie",
        "^pie",
        "^tie",
    )
)  # plurals of nouns in -ie, kept as they are ("^pie" and "^tie" match no real token)
_IRREGULAR = {
    "atlantes": "atlas",
    "atlases": "atlas",
    "axes": "axe",
    "beeves": "beef",
    "brethren": "brother",
    "children": "child",
    "corpora": "corpus",
    "corpuses": "corpus",
    "ephemerides": "ephemeris",
    "feet": "foot",
    "ganglia": "ganglion",
    "geese": "goose",
    "genera": "genus",
    "genii": "genie",
    "graffiti": "graffito",
    "helves": "helve",
    "kine": "cow",
    "leaves": "leaf",
    "loaves": "loaf",
    "men": "man",
    "mongooses": "mongoose",
    "monies": "money",
    "moves": "move",
    "mythoi": "mythos",
    "numena": "numen",
    "occipita": "occiput",
    "octopodes": "octopus",
    "opera": "opus",
    "opuses": "opus",
    "our": "my",
    "oxen": "ox",
    "penes": "penis",
    "penises": "penis",
    "people": "person",
    "sexes": "sex",
    "soliloquies": "soliloquy",
    "teeth": "tooth",
    "testes": "testis",
    "trilbys": "trilby",
    "turves": "turf",
    "zoa": "zoon",
}  # plural endings, the first one a token ends with is replaced
_PLURAL_PREPOSITIONS = {
    "about",
    "before",
    "during",
    "of",
    "till",
    "above",
    "behind",
    "except",
    "off",
    "to",
    "across",
    "below",
    "for",
    "on",
    "under",
    "after",
    "beneath",
    "from",
    "onto",
    "until",
    "among",
    "beside",
    "in",
    "out",
    "unto",
    "around",
    "besides",
    "into",
    "over",
    "upon",
    "at",
    "between",
    "near",
    "since",
    "with",
    "athwart",
    "betwixt",
    "beyond",
    "but",
    "by",
}


@lru_cache(maxsize=16384)
def singularize(word: str) -> str:
    """``pattern.en.singularize`` (pattern 2.6) as the reference called it, on one lower-cased token: "dogs" is
    "dog", "buses" "bus" but "bus" "bu", "glasses" "glass" but "glass" "glas", "knives" "knife", "women" "woman",
    "canoes" "cano", "ties" "ty", "doggies" and "scissors" unchanged."""
    head, _, rest = word.partition("-")
    if rest and rest.split("-")[0] in _PLURAL_PREPOSITIONS:  # "mothers-in-law": the first part only
        return singularize(head) + "-" + rest
    if word.endswith("'"):  # "dogs'" is "dog's"
        return singularize(word[:-1]) + "'s"
    if any(kept.endswith(word) for kept in _KEPT_TAILS) or word.endswith(_IE_PLURALS):
        return word
    for plural, single in _IRREGULAR.items():
        if word.endswith(plural):
            return word[: -len(plural)] + single
    return _by_rule(word) if word.endswith("s") else _by_rule_not_s(word)


def _by_rule_not_s(w: str) -> str:
    """pattern's rules for a token that does not end in s (in pattern's order; only those that can apply)."""
    if len(w) > 2 and w.endswith("ae"):  # algae
        return w[:-1]
    if len(w) > 4 and w.endswith("eaux"):  # plateaux
        return w[:-1]
    if w.startswith("oxen"):
        return "ox" + w[4:]
    if len(w) > 1 and w[-1] == "i" and w[-2] in "octp|vir":  # meant for octopi, taken by any of these letters
        return w[:-1] + "us"
    if len(w) > 3 and w.endswith("ice") and w[-4] in "ml|":  # mice, lice
        return w[:-3] + "ouse"
    if len(w) > 1 and w[-1] == "a" and w[-2] in "ti":  # data, media
        return w[:-1] + "um"
    return w


def _by_rule(w: str) -> str:
    """pattern's rules for a token ending in s, in pattern's order: the first that fits decides."""
    if len(w) > 4 and w.endswith("itis"):
        return w
    if w.endswith("quizzes"):
        return w[:-3]
    if w.endswith(("matrices", "apices", "vertices", "indices")):
        return w[:-4] + ("ix" if w.endswith("matrices") else "ex")
    if w.startswith("oxen"):
        return "ox" + w[4:]
    if w.endswith(("aliases", "statuses")):
        return w[:-2]
    if w.endswith(("crises", "axes", "testes")):
        return w[:-2] + "is"
    if w.endswith("shoes"):
        return w[:-1]
    if w.endswith(("oes", "buses", "xes", "ches", "sses", "shes")):  # potatoes (and canoes: cano), boxes, glasses
        return w[:-2]
    if w.endswith("movies") or (len(w) > 6 and w.endswith("ombies")):
        return w[:-1]
    if w.endswith("series"):
        return w
    if len(w) > 3 and w.endswith("ies") and (w[-4] not in "aeiouy" or w[:-3].endswith("qu")):  # puppies; ties: ty
        return w[:-3] + "y"
    if w.endswith("ves"):
        return _ves(w)
    if w.endswith("ses"):
        special = _ses(w)
        if special:
            return special
    return w if w.endswith("news") else w[:-1]


def _ves(w: str) -> str:
    stem = w[:-3]  # what precedes "ves"
    if (
        stem.endswith(("al", "el", "ol"))
        or (len(stem) > 2 and stem.endswith("ea") and stem[-3] != "d")
        or stem.endswith("ar")
    ):  # wolves, calves, sheaves, scarves
        return stem + "f"
    if stem.endswith("er"):  # nerves
        return stem + "ve"
    if stem.endswith(("ni", "li", "wi")):  # knives, lives, wives
        return stem + "fe"
    if stem.endswith(("l", "r")):
        return stem + "f"
    if stem.endswith(("a", "e", "o", "si", "ti", "hi")):  # stoves, caves, natives, hives
        return stem + "ve"
    return stem + "fe" if stem and stem[-1] != "f" else w[:-1]


def _ses(w: str) -> str | None:
    stem = w[:-3]  # what precedes "ses"
    if stem == "analy":
        return "analysis"
    if stem.endswith("analy"):  # pattern keeps an extra "a" here
        return stem + "asis"
    if (
        stem.endswith(("ba", "diagno", "parenthe", "progno", "synop", "the"))
        or (len(stem) > 2 and stem.endswith("op"))
        or (len(stem) > 1 and stem.endswith("y"))
    ):  # bases, synopses
        return stem + "sis"
    if stem.endswith(("ho", "do", "ro", "oo", "no", "bo", "clo", "po")):  # hoses, roses
        return stem + "se"
    if len(stem) > 1 and stem.endswith("o"):
        return stem + "sis"
    return None
