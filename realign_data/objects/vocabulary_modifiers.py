"""The modifiers and relations of :mod:`realign_data.objects.vocabulary`: attributes, extra colours and materials,
quantity phrases and the relations (with the relation each one is swapped for)."""

from __future__ import annotations

ATTRIBUTES = (
    "calm", "striped", "spotted", "checkered", "plaid", "polka dot", "floral", "patterned", "colorful", "colourful",
    "multicolored", "shiny", "fluffy", "furry", "hairy", "bald", "young", "old", "elderly", "empty", "full",
    "open", "closed", "wet", "dry", "dirty", "clean", "messy", "cluttered", "crowded", "busy", "deserted",
    "cloudy", "sunny", "snowy", "rainy", "foggy", "overcast", "dark", "bright", "lit", "dim", "grassy", "sandy",
    "rocky", "muddy", "dusty", "leafy", "parked", "broken", "sliced", "cooked", "fried", "grilled", "baked",
    "fresh", "ripe", "raw", "frosted", "stuffed", "smiling", "asleep",
)
EXTRA_COLORS = ("blond", "blonde", "cream", "khaki", "crimson", "ivory", "olive", "magenta", "cyan", "lavender",
                "black-and-white", "dark blue", "light blue", "dark green", "light green", "bright red")
EXTRA_MATERIALS = ("cobblestone", "wood", "granite", "tiled", "straw", "denim", "wool", "cotton", "silk", "velvet",
                   "bamboo", "stainless steel", "aluminum", "tin", "clay", "silver-colored")
QUANTITIES = {"a couple of": 2, "a dozen": 12, "both": 2, "thirty": 30, "several": 3, "a few": 3}
EXTRA_RELATIONS = {
    "surrounded by": "far from", "covered in": "next to", "covered with": "next to", "filled with": "next to",
    "full of": "without", "in the background": "in the foreground", "in the foreground": "in the background",
    "in the corner of": "in the middle of", "at the edge of": "in the middle of", "on the side of": "on top of",
    "on the back of": "in front of", "at the top of": "at the bottom of", "at the bottom of": "at the top of",
    "against": "away from", "across": "along", "through": "around", "toward": "away from",
    "towards": "away from", "among": "apart from", "alongside": "away from", "opposite": "next to",
    "in between": "beside", "on both sides of": "on one side of", "on one side of": "on both sides of",
    "in": "outside", "from": "toward", "past": "toward", "out": "into", "by": "far from", "at": "away from",
    "into": "out of", "out of": "into", "down": "up", "up": "down", "without": "with",
}
# relations that end a phrase (no object after them): swapped only with each other
STANDALONE_RELATIONS = {"in the background", "in the foreground"}
# weak relations: masked only when a visual word follows within a few words (as masking._WEAK_RELATIONS)
WEAK_RELATIONS = {"in", "from", "past", "out", "by", "at", "down", "up", "across", "through", "into", "against",
                  "toward", "towards", "opposite", "without"}
# attributes that are facts only next to a noun phrase ("an open field", "the door is open"), not in "open up"
NEAR_NOUN = {"open", "full", "old", "young", "dark", "bright", "lit", "busy", "clean", "raw", "fresh"}
