"""CHAIR's object reading as the reference code does it (Rohrbach et al., 2018, ``utils/chair.py`` of
github.com/LisaAnne/Hallucination), written from what that code does so that CHAIR numbers compare with published
tables.

The reference reads a caption in five steps, reproduced here:

1. lower-case it and split it into tokens with ``nltk.word_tokenize`` (:func:`tokenize`: sentences end at ``.``,
   ``!`` or ``?`` before a space, then the Treebank rules: punctuation, quotes and the clitics ``'s 'm 'd 'll 're
   've n't`` split off, hyphenated and slash-joined words kept whole, a period split off at the end of a word.
   Punkt, which ``word_tokenize`` runs first, also keeps a period on known abbreviations such as "mr." and may
   join sentences around them; no object word is concerned);
2. singularise every token with ``pattern.en.singularize``
   (:func:`~realign_data.objects.reference_singular.singularize`: the behaviour of pattern 2.6,
   which the reference relied on, written here from what that function does, not copied from it: "glass" becomes
   "glas" and singular "bus" becomes "bu", so a lone "bus" is never read, while "buses" is; "knives" is "knife";
   "people" is "person");
3. join two adjacent tokens that form one of its two-word names, left to right ("hot dog", "teddy bear", "wine
   glas" -> "wine glass", "baby bird" -> "bird", "passenger jet" -> "jet", "toilet seat" -> "toilet", "train track"
   which then names nothing);
4. drop every "seat" when "toilet" is among the words;
5. keep the words of its synonym list (:data:`SYNONYMS`, the reference's ``data/synonyms.txt``, quirks included:
   " motor bike" and " cheesecake" carry a leading space and so never match, "iPhone" is never matched after
   lower-casing) and map each to its category.

Every kept word is one mention: repeats count, and adjacent synonyms ("puppy dog", "tv monitor") are two mentions
of one object, as in the reference's CHAIR_i.
"""

from __future__ import annotations

import re
from functools import lru_cache

from realign_data.objects.reference_singular import singularize

# The reference's data/synonyms.txt, line by line (the first word of a line is the category).
SYNONYMS = """\
person, girl, boy, man, woman, kid, child, chef, baker, people, adult, rider, children, baby, worker, passenger, sister, biker, policeman, cop, officer, lady, cowboy, bride, groom, male, female, guy, traveler, mother, father, gentleman, pitcher, player, skier, snowboarder, skater, skateboarder, person, woman, guy, foreigner, child, gentleman, caller, offender, coworker, trespasser, patient, politician, soldier, grandchild, serviceman, walker, drinker, doctor, bicyclist, thief, buyer, teenager, student, camper, driver, solider, hunter, shopper, villager
bicycle, bike, bicycle, bike, unicycle, minibike, trike
car, automobile, van, minivan, sedan, suv, hatchback, cab, jeep, coupe, taxicab, limo, taxi
motorcycle, scooter,  motor bike, motor cycle, motorbike, scooter, moped
airplane, jetliner, plane, air plane, monoplane, aircraft, jet, jetliner, airbus, biplane, seaplane
bus, minibus, trolley
train, locomotive, tramway, caboose
truck, pickup, lorry, hauler, firetruck
boat, ship, liner, sailboat, motorboat, dinghy, powerboat, speedboat, canoe, skiff, yacht, kayak, catamaran, pontoon, houseboat, vessel, rowboat, trawler, ferryboat, watercraft, tugboat, schooner, barge, ferry, sailboard, paddleboat, lifeboat, freighter, steamboat, riverboat, battleship, steamship
traffic light, street light, traffic signal, stop light, streetlight, stoplight
fire hydrant, hydrant
stop sign
parking meter
bench, pew
bird, ostrich, owl, seagull, goose, duck, parakeet, falcon, robin, pelican, waterfowl, heron, hummingbird, mallard, finch, pigeon, sparrow, seabird, osprey, blackbird, fowl, shorebird, woodpecker, egret, chickadee, quail, bluebird, kingfisher, buzzard, willet, gull, swan, bluejay, flamingo, cormorant, parrot, loon, gosling, waterbird, pheasant, rooster, sandpiper, crow, raven, turkey, oriole, cowbird, warbler, magpie, peacock, cockatiel, lorikeet, puffin, vulture, condor, macaw, peafowl, cockatoo, songbird
cat, kitten, feline, tabby
dog, puppy, beagle, pup, chihuahua, schnauzer, dachshund, rottweiler, canine, pitbull, collie, pug, terrier, poodle, labrador, doggie, doberman, mutt, doggy, spaniel, bulldog, sheepdog, weimaraner, corgi, cocker, greyhound, retriever, brindle, hound, whippet, husky
horse, colt, pony, racehorse, stallion, equine, mare, foal, palomino, mustang, clydesdale, bronc, bronco
sheep, lamb, ram, lamb, goat, ewe
cow, cattle, oxen, ox, calf, cattle, holstein, heifer, buffalo, bull, zebu, bison
elephant
bear, panda
zebra
giraffe
backpack, knapsack
umbrella
handbag, wallet, purse, briefcase
tie, bow, bow tie
suitcase, suit case, luggage
frisbee
skis, ski
snowboard
sports ball, ball
kite
baseball bat
baseball glove
skateboard
surfboard, longboard, skimboard, shortboard, wakeboard
tennis racket, racket
bottle
wine glass
cup
fork
knife, pocketknife, knive
spoon
bowl, container
banana
apple
sandwich, burger, sub, cheeseburger, hamburger
orange
broccoli
carrot
hot dog
pizza
donut, doughnut, bagel
cake,  cheesecake, cupcake, shortcake, coffeecake, pancake
chair, seat, stool
couch, sofa, recliner, futon, loveseat, settee, chesterfield
potted plant, houseplant
bed
dining table, table, desk
toilet, urinal, commode, toilet, lavatory, potty
tv, monitor, televison, television
laptop, computer, notebook, netbook, lenovo, macbook, laptop computer
mouse
remote
keyboard
cell phone, mobile phone, phone, cellphone, telephone, phon, smartphone, iPhone
microwave
oven, stovetop, stove, stove top oven
toaster
sink
refrigerator, fridge, fridge, freezer
book
clock
vase
scissors
teddy bear, teddybear
hair drier, hairdryer
toothbrush
"""
# Two-word names read as one word, and qualifiers that are not people ("baby bird" is a bird).
TWO_WORD_NAMES = (
    "motor bike",
    "motor cycle",
    "air plane",
    "traffic light",
    "street light",
    "traffic signal",
    "stop light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "suit case",
    "sports ball",
    "baseball bat",
    "baseball glove",
    "tennis racket",
    "wine glass",
    "hot dog",
    "cell phone",
    "mobile phone",
    "teddy bear",
    "hair drier",
    "potted plant",
    "bow tie",
    "laptop computer",
    "stove top oven",
    "home plate",
    "train track",
)
ANIMAL_WORDS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")
VEHICLE_WORDS = ("jet", "train")


@lru_cache(maxsize=1)
def tables() -> tuple[frozenset, dict, dict]:
    """``(object words, word -> category, two words -> the word they stand for)``."""
    words: set[str] = set()
    category: dict[str, str] = {}
    for line in SYNONYMS.splitlines():
        names = line.strip().split(", ")
        words.update(names)
        category.update((name, names[0]) for name in names)
    joined = {w: w for w in TWO_WORD_NAMES}
    for animal in ANIMAL_WORDS:
        joined[f"baby {animal}"] = joined[f"adult {animal}"] = animal
    for vehicle in VEHICLE_WORDS:
        joined[f"passenger {vehicle}"] = vehicle
    joined.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
    return frozenset(words), category, joined


# ------------------------------------------------------------------------------------------------ tokenising
_CLITIC = re.compile(r"(?i)^(.*[^' ])('s|'m|'d|'ll|'re|'ve|n't|')$")
_SPLIT_OFF = re.compile(r"([;@#$%&?!()\[\]{}<>]|--|[:,](?!\d)|\.\.+)")
_OPENING_QUOTE = re.compile(r"([ (\[{<])(\"|'')")
# words the Treebank tokenizer cuts in two, and where ("wanna" only when a space follows it once punctuation is
# split off)
_FUSED_CUT = {"cannot": 3, "d'ye": 1, "gimme": 3, "gonna": 3, "gotta": 3, "lemme": 3, "more'n": 4, "wanna": 3}
_FUSED = re.compile(r"(?i)\b(?:cannot|d'ye|gimme|gonna|gotta|lemme|more'n)\b|\bwanna(?=\s|$|[.?!;,:)\]}>\"'])")


def tokenize(text: str) -> list[str]:
    """The tokens ``nltk.word_tokenize`` gives for the words that matter to CHAIR (see the module docstring)."""
    return [t for sentence in re.split(r"(?<=[.!?])\s+", text.strip()) if sentence for t in _words(sentence)]


def _words(text: str) -> list[str]:
    tokens: list[str] = []
    text = _OPENING_QUOTE.sub(r"\1 `` ", re.sub(r'^"', " `` ", text)).replace('"', " '' ")  # Treebank's quotes
    text = re.sub(r"(\S)('')", r"\1 \2 ", text)
    text = _FUSED.sub(lambda m: f" {m[0][: _FUSED_CUT[m[0].lower()]]} {m[0][_FUSED_CUT[m[0].lower()] :]} ", text)
    for chunk in _SPLIT_OFF.sub(r" \1 ", text).split():
        if chunk in ("``", "''"):
            tokens.append(chunk)
            continue
        end = ""
        while chunk[-1:] == "." and len(chunk) > 1 and not chunk.endswith(".."):
            chunk, end = chunk[:-1], "."
        m = _CLITIC.match(chunk)
        tokens += [m.group(1), m.group(2)] if m else [chunk]
        if end:
            tokens.append(end)
    return tokens


def reference_mentions(caption: str) -> list[tuple[str, str]]:
    """``(word, category)`` of every object mention of ``caption`` as the reference CHAIR reads it, in order."""
    objects, category, joined = tables()
    words = [singularize(t) for t in tokenize(caption.lower())]
    read, i = [], 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        if pair in joined:
            read.append(joined[pair])
            i += 2
        else:
            read.append(words[i])
            i += 1
    if "toilet" in read and "seat" in read:
        read = [w for w in read if w != "seat"]
    return [(w, category[w]) for w in read if w in objects]
