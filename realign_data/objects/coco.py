"""The COCO object vocabulary and how a caption's words are read as objects (the project's extended reading).

:data:`COCO_SYNONYMS` maps the 80 MS-COCO categories to the words that name them: the synonym table of the CHAIR
metric (Rohrbach et al., 2018) with a few additions ("mug", "plant", "parasol", "football", "hair dryer") and
without some of its entries (see :mod:`realign_data.objects.reference` for the reference table itself).

The colour rule: "orange" (a colour and a COCO fruit) is a colour only when it *modifies* the next noun, i.e. the
next word, with nothing but spaces between, is a noun ("an orange cat") or another modifier on the way to one
("an orange striped cat", "orange and white cups": a coordinated colour). A conjunction or determiner in between
starts a new noun phrase ("an orange and a banana", "an orange and two women"), punctuation ends it ("an apple,
an orange and a traffic light"), and a food head makes it the fruit ("orange juice", "orange slices").
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Optional

from realign_data.objects import vocabulary
from realign_data.objects.english import pluralize

# COCO category -> synonyms (singular), after the CHAIR metric's synonym table.
COCO_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "person",
        "girl",
        "boy",
        "man",
        "woman",
        "kid",
        "child",
        "chef",
        "baker",
        "adult",
        "rider",
        "baby",
        "worker",
        "passenger",
        "biker",
        "policeman",
        "cop",
        "officer",
        "lady",
        "cowboy",
        "bride",
        "groom",
        "guy",
        "traveler",
        "mother",
        "father",
        "gentleman",
        "pitcher",
        "player",
        "skier",
        "snowboarder",
        "skater",
        "skateboarder",
        "surfer",
        "soldier",
        "doctor",
        "bicyclist",
        "teenager",
        "student",
        "driver",
        "shopper",
        "tourist",
        "pedestrian",
    ),
    "bicycle": ("bicycle", "bike", "cycle"),
    "car": (
        "car",
        "automobile",
        "van",
        "minivan",
        "sedan",
        "suv",
        "hatchback",
        "cab",
        "jeep",
        "coupe",
        "taxicab",
        "limo",
        "taxi",
    ),
    "motorcycle": ("motorcycle", "scooter", "motor bike", "motor cycle", "motorbike", "moped"),
    "airplane": (
        "airplane",
        "jetliner",
        "plane",
        "air plane",
        "monoplane",
        "aircraft",
        "jet",
        "airbus",
        "biplane",
        "seaplane",
    ),
    "bus": ("bus", "minibus", "trolley"),
    "train": ("train", "locomotive", "tramway", "caboose"),
    "truck": ("truck", "pickup", "lorry", "hauler", "firetruck"),
    "boat": (
        "boat",
        "ship",
        "liner",
        "sailboat",
        "motorboat",
        "dinghy",
        "powerboat",
        "speedboat",
        "canoe",
        "skiff",
        "yacht",
        "kayak",
        "catamaran",
        "houseboat",
        "vessel",
        "rowboat",
        "ferry",
        "barge",
        "tugboat",
    ),
    "traffic light": ("traffic light", "traffic signal", "stop light", "street light", "traffic lamp"),
    "fire hydrant": ("fire hydrant", "hydrant"),
    "stop sign": ("stop sign",),
    "parking meter": ("parking meter", "meter"),
    "bench": ("bench", "pew"),
    "bird": (
        "bird",
        "owl",
        "seagull",
        "goose",
        "duck",
        "parakeet",
        "falcon",
        "robin",
        "pelican",
        "heron",
        "hummingbird",
        "pigeon",
        "sparrow",
        "gull",
        "swan",
        "flamingo",
        "parrot",
        "crow",
        "raven",
        "rooster",
        "peacock",
        "chicken",
    ),
    "cat": ("cat", "kitten", "feline", "tabby", "kitty"),
    "dog": (
        "dog",
        "puppy",
        "beagle",
        "pup",
        "chihuahua",
        "dachshund",
        "canine",
        "pug",
        "terrier",
        "poodle",
        "labrador",
        "doggie",
        "mutt",
        "doggy",
        "spaniel",
        "bulldog",
        "sheepdog",
        "corgi",
        "greyhound",
        "retriever",
        "hound",
        "husky",
    ),
    "horse": ("horse", "colt", "pony", "racehorse", "stallion", "equine", "mare", "foal", "mustang"),
    "sheep": ("sheep", "lamb", "ram", "goat", "ewe"),
    "cow": ("cow", "cattle", "ox", "calf", "heifer", "buffalo", "bull", "bison"),
    "elephant": ("elephant",),
    "bear": ("bear", "grizzly"),
    "zebra": ("zebra",),
    "giraffe": ("giraffe",),
    "backpack": ("backpack", "knapsack"),
    "umbrella": ("umbrella", "parasol"),
    "handbag": ("handbag", "wallet", "purse", "briefcase"),
    "tie": ("tie", "necktie", "bow tie"),
    "suitcase": ("suitcase", "suit case", "luggage"),
    "frisbee": ("frisbee",),
    "skis": ("ski", "skis"),
    "snowboard": ("snowboard",),
    "sports ball": ("sports ball", "ball", "football", "soccer ball", "baseball", "basketball", "tennis ball"),
    "kite": ("kite",),
    "baseball bat": ("baseball bat", "bat"),
    "baseball glove": ("baseball glove", "glove", "mitt"),
    "skateboard": ("skateboard",),
    "surfboard": ("surfboard", "longboard", "skimboard", "shortboard", "wakeboard"),
    "tennis racket": ("tennis racket", "racket", "racquet"),
    "bottle": ("bottle",),
    "wine glass": ("wine glass",),
    "cup": ("cup", "mug"),
    "fork": ("fork",),
    "knife": ("knife", "pocketknife"),
    "spoon": ("spoon",),
    "bowl": ("bowl",),
    "banana": ("banana",),
    "apple": ("apple",),
    "sandwich": ("sandwich", "burger", "sub", "cheeseburger", "hamburger"),
    "orange": ("orange",),
    "broccoli": ("broccoli",),
    "carrot": ("carrot",),
    "hot dog": ("hot dog",),
    "pizza": ("pizza",),
    "donut": ("donut", "doughnut", "bagel"),
    "cake": ("cake", "cheesecake", "cupcake", "pancake"),
    "chair": ("chair", "seat", "stool"),
    "couch": ("couch", "sofa", "recliner", "futon", "loveseat", "settee"),
    "potted plant": ("potted plant", "houseplant", "plant"),
    "bed": ("bed",),
    "dining table": ("dining table", "table", "coffee table", "desk"),
    "toilet": ("toilet", "urinal", "commode", "lavatory", "potty"),
    "tv": ("tv", "monitor", "television", "televison"),
    "laptop": ("laptop", "computer", "notebook", "netbook", "macbook", "laptop computer"),
    "mouse": ("mouse",),
    "remote": ("remote", "remote control"),
    "keyboard": ("keyboard",),
    "cell phone": ("cell phone", "phone", "cellphone", "telephone", "mobile", "smartphone", "iphone"),
    "microwave": ("microwave",),
    "oven": ("oven", "stove", "stovetop"),
    "toaster": ("toaster",),
    "sink": ("sink",),
    "refrigerator": ("refrigerator", "fridge", "freezer"),
    "book": ("book", "novel"),
    "clock": ("clock",),
    "vase": ("vase",),
    "scissors": ("scissors",),
    "teddy bear": ("teddy bear", "teddybear"),
    "hair drier": ("hair drier", "hairdryer", "hair dryer", "blow dryer", "blowdryer", "blow drier"),
    "toothbrush": ("toothbrush",),
}
COCO_CATEGORIES: tuple[str, ...] = tuple(COCO_SYNONYMS)

COLORS = (
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "grey",
    "silver",
    "gold",
    "beige",
    "tan",
    "teal",
    "maroon",
    "navy",
    "turquoise",
    "violet",
    "golden",
)

# words after "orange" that make it the fruit, not a colour: "orange juice", "orange slices", "an orange peel"
FRUIT_HEADS = {
    "juice",
    "juices",
    "slice",
    "slices",
    "peel",
    "peels",
    "zest",
    "wedge",
    "wedges",
    "segment",
    "segments",
    "tree",
    "trees",
    "grove",
    "groves",
    "marmalade",
    "soda",
    "pulp",
    "rind",
    "rinds",
}
_NEXT_WORD = re.compile(r"[ \t\r\n]+([A-Za-z][A-Za-z'-]*)")

KindOf = Callable[[int, str], Optional[str]]  # (start, lower-cased word) -> "noun", "modifier" or None


@lru_cache(maxsize=1)
def _lexicon() -> tuple[frozenset, frozenset]:
    nouns = {"people"}
    for words in (*COCO_SYNONYMS.values(), vocabulary.OBJECTS, vocabulary.SCENE, vocabulary.CLOTHING):
        for w in words:
            last = w.split()[-1]
            nouns |= {last, pluralize(last)}
    nouns |= set(vocabulary.PLURAL_ONLY)
    modifiers = set(COLORS) | {
        w for w in (*vocabulary.EXTRA_COLORS, *vocabulary.ATTRIBUTES, *vocabulary.EXTRA_MATERIALS) if " " not in w
    }
    return frozenset(nouns), frozenset(modifiers)


def lexicon_kind(start: int, word: str) -> Optional[str]:
    """The default :data:`KindOf`: ``"noun"`` / ``"modifier"`` by the word lists, ``None`` for anything else."""
    nouns, modifiers = _lexicon()
    return "noun" if word in nouns else "modifier" if word in modifiers else None


def colour_modifies(text: str, end: int, kind_of: KindOf = lexicon_kind) -> bool:
    """Does the colour word ending at ``text[end]`` modify the next noun (see the module docstring)?

    ``kind_of(start, word)`` tells whether the word at ``start`` is a noun or a modifier; the masker passes one
    that also knows the nouns it found by their position in a noun phrase.
    """
    pos = end
    while True:
        m = _NEXT_WORD.match(text, pos)
        if m is None:  # punctuation or the end of the text: nothing is modified
            return False
        word = m.group(1).lower()
        if word in FRUIT_HEADS:
            return False
        kind = kind_of(m.start(1), word)
        if kind == "noun":
            return True
        if kind != "modifier" and word in ("and", "or"):  # "orange and white cups": a coordinated colour
            after = _NEXT_WORD.match(text, m.end(1))
            if after is None or after.group(1).lower() not in COLORS:
                return False
            pos = after.end(1)
            continue
        if kind != "modifier":
            return False
        pos = m.end(1)


@lru_cache(maxsize=1)
def _phrases() -> dict[str, Optional[str]]:
    """Lower-cased phrase -> COCO category, or ``None`` for the other nouns of :mod:`realign_data.objects.vocabulary`
    (matched so that a longer name shadows a COCO word inside it, exactly as the masker reads them)."""
    table: dict[str, Optional[str]] = {}
    for cat, syns in COCO_SYNONYMS.items():
        for syn in syns:
            table.setdefault(syn, cat)
            table.setdefault(pluralize(syn), cat)
    table["people"] = "person"
    for word in vocabulary.PERSON_COMPOUNDS:
        table.setdefault(word, "person")
        table.setdefault(pluralize(word), "person")
    for words in (vocabulary.OBJECTS, vocabulary.SCENE, vocabulary.CLOTHING):
        for word in words:
            table.setdefault(word, None)
            table.setdefault(pluralize(word), None)
    for word in (*vocabulary.PLURAL_ONLY, *COLORS, *vocabulary.EXTRA_COLORS):
        table.setdefault(word, None)
    table["orange"] = "orange"  # a colour or the fruit: colour_modifies decides
    return table


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern:
    alts = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(_phrases(), key=lambda p: (-len(p), p)))
    return re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])", re.IGNORECASE)


def coco_mentions(text: str) -> list[tuple[int, int, str, str]]:
    """``(start, end, words, category)`` of every COCO object ``text`` names, in order (longest name first,
    case-insensitive, plurals included; "orange" the colour is not the fruit)."""
    found = []
    for m in _pattern().finditer(text):
        cat = _phrases()[re.sub(r"\s+", " ", m.group(0).lower())]
        if cat is None or (m.group(0).lower() == "orange" and colour_modifies(text, m.end())):
            continue
        found.append((m.start(), m.end(), m.group(0), cat))
    return found
