"""The visual vocabulary beyond the 80 COCO categories: what else real captions state about an image.

COCO-80 (with CHAIR's synonyms, in :mod:`realign_data.building.masking`) misses most nouns of real captions: the sky, the
grass, the building behind, the shirt a person wears, the cabinets of a kitchen. Left unmasked, they survive into
the rejected answer, which then keeps facts it should have swapped. This module lists them, by span kind:

=============  ==================================================================================================
kind           words (singular; plurals come from ``inflect``)
=============  ==================================================================================================
``object``     things that are not COCO categories: window, sign, pole, fence, plate, cabinet, flower, ...
               (value = the noun itself, so :meth:`MaskResult.objects` still lists only COCO categories)
``scene``      places, ground and background: sky, grass, water, street, field, beach, kitchen, building, tree ...
``clothing``   what people wear: shirt, hat, jacket, helmet, dress, shorts, glasses, ...
``attribute``  visual states and patterns other than colour/size/material: striped, empty, wet, old, cloudy ...
               (actions such as riding or holding are not masked: a model-free fill cannot swap a verb safely)
``color`` ...  extra colours, materials, quantity phrases ("a couple of" = 2, "a dozen" = 12, "both" = 2) and
               relations ("surrounded by", "covered in", "in the background") extend the existing kinds
=============  ==================================================================================================

Nouns in :data:`PLURAL_ONLY` (pants, jeans, glasses) have no singular. Words that are ambiguous in running text
are left out on purpose: "light" (light blue / turned the light on), "top" (on top of), "side", "view", "picture".
Compounds that hold a COCO synonym are left out ("baseball cap" would hide "baseball" from CHAIR, which reads the
same word lists): CHAIR's counts stay those of the reference metric. People the CHAIR synonyms do not know
(toddler, vendor) are ``object`` nouns of their own, not COCO's person, for the same reason.
"""

from __future__ import annotations

OBJECTS = (
    "window", "door", "sign", "street sign", "pole", "fence", "plate", "tray", "basket", "box", "bag",
    "cabinet", "counter", "countertop", "shelf", "drawer", "curtain", "mirror", "lamp", "lantern", "pillow",
    "blanket", "rug", "carpet", "towel", "flower", "rock", "tower", "bridge", "tent", "wave", "cone", "post",
    "railing", "statue", "fountain", "flag", "banner", "poster", "painting", "frame", "candle", "napkin", "lid",
    "jar", "pot", "pan", "container", "bucket", "barrel", "crate", "cart", "wagon", "stroller", "wheel", "tire",
    "engine", "net", "goal", "hoop", "paddle", "sail", "mast", "anchor", "dock", "pier",
    "faucet", "bathtub", "tub", "shower", "soap", "toothpaste", "shampoo", "tile",
    "staircase", "ladder", "column", "arch", "roof", "chimney", "balcony", "gate", "mailbox", "trash can",
    "garbage can", "bin", "lamppost", "streetlight", "wire", "cable", "antenna", "screen", "speaker",
    "controller", "camera", "tablet", "printer", "paper", "newspaper", "magazine", "menu", "pen",
    "pencil", "cord", "outlet", "fan", "heater", "radiator", "vent", "leaf", "branch", "log", "stump",
    "bush", "shrub", "hedge", "vine", "cactus", "palm tree", "pine tree", "fruit", "vegetable", "food", "meal",
    "dish", "meat", "steak", "fish", "shrimp", "egg", "cheese", "tomato", "potato", "onion",
    "pepper", "mushroom", "lettuce", "salad", "rice", "noodle", "pasta", "bread", "toast", "soup", "sauce",
    "coffee", "tea", "juice", "beer", "wine", "milk", "cookie", "pie", "dessert", "grape", "strawberry", "lemon",
    "lime", "pineapple", "watermelon", "peach", "pear", "cherry", "berry", "nut", "corn", "bean", "pea",
    "cucumber", "zucchini", "celery", "spinach", "herb", "garnish", "topping", "slice", "saddle", "harness",
    "leash", "collar", "bridle", "trunk", "tusk", "horn", "mane", "tail", "wing", "beak", "feather",
    "paw", "hoof", "fur", "wheelchair", "toy", "doll",
    "carriage", "windowsill", "gas station", "power line", "tooth", "hook", "ramp", "frosting", "icing", "magnet",
    "photo", "photograph", "shower curtain", "hair", "beard", "yarn", "dresser", "nightstand", "lighthouse",
    "stuffed animal", "crib", "home plate", "fire escape", "billboard", "street lamp", "traffic cone",
    "skyline", "headlight", "windshield", "seatbelt", "toddler", "infant", "businessman", "businesswoman",
    "vendor", "farmer",
)
SCENE = (
    "sky", "cloud", "grass", "lawn", "water", "ocean", "sea", "lake", "river", "pond", "beach", "sand", "shore",
    "snow", "ice", "slope", "mountain", "hill", "hillside", "valley", "field", "pasture", "meadow", "farm",
    "forest", "woods", "jungle", "desert", "dirt", "mud", "ground", "road", "street", "sidewalk", "crosswalk",
    "highway", "intersection", "parking lot", "alley", "path", "trail", "track", "railroad",
    "platform", "station", "airport", "runway", "tarmac", "harbor", "marina", "park", "playground", "garden",
    "yard", "backyard", "zoo", "enclosure", "barn", "stable", "city", "town", "downtown", "village",
    "building", "skyscraper", "house", "apartment", "church", "store", "shop", "market", "restaurant",
    "cafe", "office", "hotel", "room", "kitchen", "bathroom", "bedroom", "living room", "dining room",
    "hallway", "classroom", "stadium", "court", "tennis court", "ballpark", "soccer field",
    "wall", "floor", "ceiling", "corner", "tree", "palm", "crowd", "traffic",
    "sunset", "sunrise", "night", "daytime", "fog", "rain", "shade", "shadow", "sunlight",
    "sun", "moon", "autumn", "winter", "summer", "skate park", "countryside", "city street", "paddock",
    "courtyard", "plaza", "town square", "waterfront", "coast", "cliff", "canyon", "horizon", "rooftop",
)
CLOTHING = (
    "shirt", "t-shirt", "tee shirt", "jacket", "coat", "raincoat", "hat", "cap", "beanie", "helmet", "hood",
    "hoodie", "sweater", "sweatshirt", "vest", "dress", "gown", "skirt", "suit", "tuxedo", "uniform", "jersey",
    "wetsuit", "bikini", "swimsuit", "apron", "robe", "scarf", "bandana", "shoe", "sneaker", "boot", "sandal",
    "sock", "belt", "bracelet", "necklace", "earring", "ring", "mask", "costume", "outfit",
    "top hat", "blouse", "tank top", "overcoat", "parka", "mitten",
)
PLURAL_ONLY = ("pants", "jeans", "shorts", "trousers", "leggings", "overalls", "glasses", "sunglasses",
               "eyeglasses", "clothes", "pajamas", "goggles", "fries", "headphones", "stairs", "reins")
PLURAL_ONLY_CLOTHING = {"pants", "jeans", "shorts", "trousers", "leggings", "overalls", "glasses", "sunglasses",
                        "eyeglasses", "clothes", "pajamas", "goggles"}
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
# people named by a role whose words the CHAIR metric already reads as person ("player", "officer"): one span.
# "baseball player" is left to CHAIR's reading (a ball and a person), so evaluation stays comparable
PERSON_COMPOUNDS = ("tennis player", "soccer player", "police officer")
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
