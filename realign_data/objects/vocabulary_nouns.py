"""The nouns of :mod:`realign_data.objects.vocabulary`: things beyond COCO-80 (``object``), places and background
(``scene``), what people wear (``clothing``), nouns without a singular, and people named by a role."""

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
# people named by a role whose words the CHAIR metric already reads as person ("player", "officer"): one span.
# "baseball player" is left to CHAIR's reading (a ball and a person), so evaluation stays comparable
PERSON_COMPOUNDS = ("tennis player", "soccer player", "police officer")
