"""A small synthetic corpus in MS-COCO layout, so demos, tests and benchmarks run with no download.

Each image is a simple scene: coloured shapes standing for real COCO categories (same ids and names),
several instances per image, each drawn from an exact polygon that is also its COCO segmentation.
Captions are written from templates that name objects, colours, counts and spatial relations — the very
facts Re-Align masks and swaps — so the whole pipeline has something meaningful to work on.

Layout (what ``realign-data index build --source coco`` and the builder expect)::

    OUT/train2014/COCO_train2014_000000000123.jpg
    OUT/annotations/instances_train2014.json
    OUT/annotations/captions_train2014.json

World options (all off by default; the default corpus is byte-identical to earlier versions) turn the corpus
into a small world where a captioning model can hallucinate, as on COCO where a fork makes a model say
"table": a category co-occurrence prior (:data:`COOCCURRING_PAIRS`, ``cooccurrence`` = probability that a
drawn member's partner joins the scene), a held-out split written as a second COCO split, a complete caption
naming every annotated object, backgrounds that no COCO category is called (recorded per image), and a
minimum visible fraction below which an occluded instance is not annotated. See docs/synthetic_world.md.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from realign_data.runtime.atomic import atomic_write_bytes, atomic_write_json
from realign_data.runtime.locks import OutputError, output_lock

MAX_IMAGES = 599_999  # image ids are drawn from 1..MAX_IMAGES, like COCO's 12-digit ids


class SampleCorpusError(ValueError):
    """Bad arguments for the sample corpus (a user mistake, reported as one sentence)."""


@dataclass(frozen=True)
class Category:
    id: int  # the real COCO category id
    name: str
    plural: str
    supercategory: str
    colour: str
    rgb: tuple[int, int, int]
    size: str  # "small" | "medium" | "large"
    shape: str  # "circle" | "box" | "tall" | "ellipse" | "triangle"


CATEGORIES: tuple[Category, ...] = (
    Category(53, "apple", "apples", "food", "red", (200, 30, 40), "small", "circle"),
    Category(52, "banana", "bananas", "food", "yellow", (235, 210, 40), "small", "ellipse"),
    Category(55, "orange", "oranges", "food", "orange", (240, 140, 20), "small", "circle"),
    Category(3, "car", "cars", "vehicle", "blue", (30, 70, 200), "large", "box"),
    Category(6, "bus", "buses", "vehicle", "green", (40, 150, 60), "large", "box"),
    Category(2, "bicycle", "bicycles", "vehicle", "black", (25, 25, 25), "medium", "triangle"),
    Category(17, "cat", "cats", "animal", "gray", (128, 128, 128), "medium", "ellipse"),
    Category(18, "dog", "dogs", "animal", "brown", (130, 80, 40), "medium", "ellipse"),
    Category(16, "bird", "birds", "animal", "purple", (120, 50, 160), "small", "triangle"),
    Category(44, "bottle", "bottles", "kitchen", "white", (245, 245, 245), "small", "tall"),
    Category(47, "cup", "cups", "kitchen", "pink", (240, 130, 180), "small", "box"),
    Category(62, "chair", "chairs", "furniture", "brown", (110, 60, 20), "medium", "tall"),
    Category(85, "clock", "clocks", "indoor", "white", (250, 250, 250), "medium", "circle"),
    Category(28, "umbrella", "umbrellas", "accessory", "red", (180, 20, 60), "large", "triangle"),
)

BACKGROUNDS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("grass", (110, 170, 90)),
    ("sky", (150, 195, 235)),
    ("sand", (220, 200, 150)),
    ("table", (180, 150, 110)),
    ("road", (90, 90, 95)),
)

# Backgrounds of the world options: "table" reads as the COCO category "dining table", so it becomes "floor".
WORLD_BACKGROUNDS: tuple[tuple[str, tuple[int, int, int]], ...] = tuple(
    ("floor", rgb) if name == "table" else (name, rgb) for name, rgb in BACKGROUNDS
)

# The language prior of ``cooccurrence``: each category of a pair draws the other one into its scene.
COOCCURRING_PAIRS: tuple[tuple[str, str], ...] = (
    ("car", "bus"),
    ("cat", "dog"),
    ("cup", "bottle"),
    ("apple", "banana"),
    ("chair", "clock"),
    ("bird", "umbrella"),
)
_BY_NAME = {c.name: c for c in CATEGORIES}
PARTNER: dict[str, str] = {**dict(COOCCURRING_PAIRS), **{b: a for a, b in COOCCURRING_PAIRS}}

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
_SIZE_SCALE = {"small": 0.10, "medium": 0.15, "large": 0.22}
_LICENSE = {
    "id": 1,
    "name": "CC0 1.0 Universal (synthetic images)",
    "url": "https://creativecommons.org/publicdomain/zero/1.0/",
}


@dataclass(frozen=True)
class World:
    """The world options of :func:`make_sample_corpus` (defaults: the plain sample corpus)."""

    cooccurrence: float = 0.0  # probability that a drawn pair member's partner joins the scene
    partners: tuple[tuple[str, str], ...] = COOCCURRING_PAIRS  # the pairs the prior draws together
    min_visible: float = 0.0  # instances with a smaller visible share of their polygon are not annotated
    complete_caption: bool = False  # the first caption names every annotated object, with counts and colours
    world_backgrounds: bool = False  # "floor" instead of "table"; each image records its "background"

    @property
    def redraws(self) -> bool:
        return self.min_visible > 0

    @property
    def partner(self) -> dict[str, str]:
        """Each paired category's partner, both ways."""
        return {**dict(self.partners), **{b: a for a, b in self.partners}}


def parse_partners(value: str | Sequence[Sequence[str]] | None) -> tuple[tuple[str, str], ...]:
    """The co-occurring pairs of a world: ``"car-bus,cat-dog"`` (or pairs), each category in at most one pair;
    empty or ``None`` is :data:`COOCCURRING_PAIRS`."""
    if not value:
        return COOCCURRING_PAIRS
    items = (
        [p.split("-") for p in value.split(",") if p.strip()] if isinstance(value, str) else [list(p) for p in value]
    )
    pairs, seen = [], set()
    for item in items:
        names = [str(n).strip() for n in item]
        if len(names) != 2 or names[0] == names[1] or not all(n in _BY_NAME for n in names):
            raise SampleCorpusError(
                f"--partners takes pairs of two different categories of the sample corpus, like "
                f"'car-bus,cat-dog' (got {'-'.join(names)!r}; categories: "
                f"{', '.join(c.name for c in CATEGORIES)})."
            )
        if seen & set(names):
            raise SampleCorpusError(
                f"--partners names {' or '.join(sorted(seen & set(names)))!r} in two pairs; "
                "each category may have one partner."
            )
        seen.update(names)
        pairs.append((names[0], names[1]))
    return tuple(pairs)


def make_sample_corpus(
    out: str | os.PathLike,
    num_images: int = 200,
    seed: int = 0,
    *,
    split: str = "train2014",
    width: int = 160,
    height: int = 120,
    progress: bool = False,
    cooccurrence: float = 0.0,
    heldout: int = 0,
    heldout_split: str = "val2014",
    min_visible: float = 0.0,
    complete_caption: bool = False,
    world_backgrounds: bool = False,
    partners: str | Sequence[Sequence[str]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a deterministic synthetic COCO-format corpus of ``num_images`` scenes to ``out``.

    The same ``seed`` gives byte-identical annotation files and images. Every file is written to a temporary
    name and renamed, so an interrupted run never leaves a half-written file behind. A non-empty ``out`` is
    refused where it holds a split to be written already (or is not a COCO root) unless ``overwrite`` (then that
    split is replaced: its images that the new corpus does not have are removed); another split is added beside
    it. Returns ``out``; :class:`~realign_data.runtime.locks.LockHeld` while another process writes it.

    World options: ``cooccurrence`` in [0, 1] is the strength of the prior (:data:`COOCCURRING_PAIRS`);
    ``heldout`` images of the same world go to a second split ``heldout_split`` (image ids disjoint from
    ``split``'s); ``min_visible`` in [0, 1) drops occluded instances from annotations and captions;
    ``complete_caption`` and ``world_backgrounds`` as in :class:`World`; ``partners`` the pairs of the prior
    (:func:`parse_partners`; default :data:`COOCCURRING_PAIRS`), recorded with ``cooccurrence`` in the annotation
    files' ``info.world`` when the prior is on.
    """
    if num_images < 1:
        raise SampleCorpusError(f"--num-images must be at least 1 (got {num_images}).")
    if num_images + max(heldout, 0) > MAX_IMAGES:
        raise SampleCorpusError(
            f"--num-images must be at most {MAX_IMAGES} (one COCO-style id each, held-out "
            f"images included), got {num_images + max(heldout, 0)}."
        )
    if width < 32 or height < 32:
        raise SampleCorpusError(f"images must be at least 32x32 pixels (got {width}x{height}).")
    if not 0.0 <= cooccurrence <= 1.0:
        raise SampleCorpusError(f"--cooccurrence must be between 0 and 1 (got {cooccurrence}).")
    if not 0.0 <= min_visible < 1.0:
        raise SampleCorpusError(f"--min-visible must be at least 0 and below 1 (got {min_visible}).")
    if heldout < 0:
        raise SampleCorpusError(f"--heldout must be at least 0 (got {heldout}).")
    if heldout and heldout_split == split:
        raise SampleCorpusError(f"the held-out split must differ from the training split ({split!r}).")
    world = World(cooccurrence, parse_partners(partners), min_visible, complete_caption, world_backgrounds)
    root = Path(out)
    try:
        with output_lock(root, "realign-data sample"):
            return _write_corpus(
                root, num_images, seed, split, width, height, progress, world, heldout, heldout_split, overwrite
            )
    except OutputError as e:
        raise SampleCorpusError(str(e)) from None


def _occupied(root: Path, split: str) -> bool:
    """Whether writing ``split`` into ``root`` would replace something: the split already exists, or ``root`` is a
    non-empty folder that is not a COCO root. Another split of the same corpus (a held-out val2014 beside
    train2014) is added, not replaced."""
    if not root.is_dir() or not any(root.iterdir()):
        return False
    if not (root / "annotations").is_dir():
        return True
    split_dir = root / split
    return (split_dir.is_dir() and any(split_dir.iterdir())) or any((root / "annotations").glob(f"*_{split}.json"))


def _write_corpus(
    root: Path,
    num_images: int,
    seed: int,
    split: str,
    width: int,
    height: int,
    progress: bool,
    world: World,
    heldout: int,
    heldout_split: str,
    overwrite: bool,
) -> Path:
    for name in (split, heldout_split) if heldout else (split,):
        if not overwrite and _occupied(root, name):
            raise SampleCorpusError(
                f"--out {str(root)!r} already holds split {name} or files that are not a COCO "
                "corpus; choose a new or empty directory, or pass --overwrite to replace it."
            )
    try:
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        probe = root / "annotations" / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SampleCorpusError(f"cannot write to output directory {str(root)!r}: {e.strerror or e}.") from e

    rng = random.Random(seed)
    drawn = rng.sample(range(1, MAX_IMAGES + 1), num_images + heldout)
    splits = [(split, sorted(drawn[:num_images]))]
    if heldout:
        (root / heldout_split).mkdir(parents=True, exist_ok=True)
        splits.append((heldout_split, sorted(drawn[num_images:])))
    for name, image_ids in splits:
        _write_split(root, name, image_ids, rng, seed, width, height, progress, world)
    return root


def _write_split(
    root: Path,
    split: str,
    image_ids: list[int],
    rng: random.Random,
    seed: int,
    width: int,
    height: int,
    progress: bool,
    world: World,
) -> None:
    images, instances, captions = [], [], []
    iterator = image_ids
    if progress:
        from tqdm import tqdm

        iterator = tqdm(image_ids, desc="Drawing sample images", unit="img")
    for image_id in iterator:
        file_name = f"COCO_{split}_{image_id:012d}.jpg"
        scene = _world_scene(rng, width, height, world)
        atomic_write_bytes(root / split / file_name, _render_jpeg(scene, width, height))
        images.append(
            {
                "license": 1,
                "file_name": file_name,
                "coco_url": "",
                "height": height,
                "width": width,
                "date_captured": "2026-01-01 00:00:00",
                "flickr_url": "",
                "id": image_id,
            }
        )
        if world.world_backgrounds:
            images[-1]["background"] = scene["background"][0]
        scene = {**scene, "objects": scene.get("visible", scene["objects"])}
        for obj in scene["objects"]:
            instances.append(
                {
                    "segmentation": [[round(v, 2) for xy in obj["polygon"] for v in xy]],
                    "area": round(_polygon_area(obj["polygon"]), 2),
                    "iscrowd": 0,
                    "image_id": image_id,
                    "bbox": [round(v, 2) for v in _bbox(obj["polygon"])],
                    "category_id": obj["category"].id,
                    "id": len(instances) + 1,
                }
            )
        for text in _captions(rng, scene, complete_first=world.complete_caption):
            captions.append({"image_id": image_id, "id": len(captions) + 1, "caption": text})

    info = {
        "description": "realign synthetic sample corpus (COCO format)",
        "url": "",
        "version": "1.0",
        "year": 2026,
        "contributor": f"realign-data sample --seed {seed}",
        "date_created": "2026-01-01",
    }
    if world.cooccurrence > 0:  # what an evaluation of the prior needs to know (the default corpus stays as it was)
        info["world"] = {"cooccurrence": world.cooccurrence, "partners": [list(p) for p in world.partners]}
    categories = [
        {"supercategory": c.supercategory, "id": c.id, "name": c.name} for c in sorted(CATEGORIES, key=lambda c: c.id)
    ]
    atomic_write_json(
        root / "annotations" / f"instances_{split}.json",
        {"info": info, "licenses": [_LICENSE], "images": images, "annotations": instances, "categories": categories},
        indent=None,
    )
    atomic_write_json(
        root / "annotations" / f"captions_{split}.json",
        {"info": info, "licenses": [_LICENSE], "images": images, "annotations": captions},
        indent=None,
    )
    keep = {im["file_name"] for im in images}
    for stale in (root / split).glob(f"COCO_{split}_*.jpg"):  # --overwrite: the previous corpus's other images
        if stale.name not in keep:
            stale.unlink()


def _world_scene(rng: random.Random, width: int, height: int, world: World) -> dict:
    """A scene; with ``min_visible``, redrawn until at least two categories stay visible enough to annotate."""
    while True:
        scene = _random_scene(rng, width, height, world)
        if not world.redraws:
            return scene
        visible = [
            o for o, share in zip(scene["objects"], _visible_shares(scene, width, height)) if share >= world.min_visible
        ]
        if len({o["category"] for o in visible}) >= 2:
            return {**scene, "visible": visible}


def _visible_shares(scene: dict, width: int, height: int) -> list[float]:
    """Share of each object's own pixels left uncovered by the objects drawn after it."""
    import numpy as np
    from PIL import Image, ImageDraw

    labels = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(labels)
    for k, obj in enumerate(scene["objects"], start=1):
        draw.polygon(obj["polygon"], fill=k)
    top = np.asarray(labels)
    shares = []
    for k, obj in enumerate(scene["objects"], start=1):
        alone = Image.new("1", (width, height), 0)
        ImageDraw.Draw(alone).polygon(obj["polygon"], fill=1)
        own = int(np.asarray(alone).sum())
        shares.append(float((top == k).sum()) / own if own else 0.0)
    return shares


def _random_scene(rng: random.Random, width: int, height: int, world: World = World()) -> dict:
    background = rng.choice(WORLD_BACKGROUNDS if world.world_backgrounds else BACKGROUNDS)
    chosen = rng.sample(CATEGORIES, rng.randint(2, 3))
    if world.cooccurrence > 0:
        for category in list(chosen):
            partner = _BY_NAME.get(world.partner.get(category.name, ""))
            if partner is not None and partner not in chosen and rng.random() < world.cooccurrence:
                chosen.append(partner)
    objects = []
    for category in chosen:
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            radius = _SIZE_SCALE[category.size] * min(width, height) * rng.uniform(0.85, 1.15)
            cx = rng.uniform(radius, width - radius)
            cy = rng.uniform(radius, height - radius)
            objects.append(
                {"category": category, "center": (cx, cy), "polygon": _shape_polygon(category.shape, cx, cy, radius)}
            )
    return {"background": background, "objects": objects}


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "circle":
        return [(cx + r * math.cos(2 * math.pi * i / 16), cy + r * math.sin(2 * math.pi * i / 16)) for i in range(16)]
    if shape == "ellipse":
        return [
            (cx + 1.4 * r * math.cos(2 * math.pi * i / 16), cy + 0.7 * r * math.sin(2 * math.pi * i / 16))
            for i in range(16)
        ]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "tall":
        return [(cx - 0.5 * r, cy - r), (cx + 0.5 * r, cy - r), (cx + 0.5 * r, cy + r), (cx - 0.5 * r, cy + r)]
    return [(cx - r, cy - 0.6 * r), (cx + r, cy - 0.6 * r), (cx + r, cy + 0.6 * r), (cx - r, cy + 0.6 * r)]


def _render_jpeg(scene: dict, width: int, height: int) -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), scene["background"][1])
    draw = ImageDraw.Draw(image)
    for obj in scene["objects"]:
        draw.polygon(obj["polygon"], fill=obj["category"].rgb, outline=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _captions(rng: random.Random, scene: dict, complete_first: bool = False) -> list[str]:
    """3-5 captions naming objects, colours, counts and spatial relations (with ``complete_first``, the first
    one lists every object with its count and colour, and the background)."""
    objects = scene["objects"]
    counts: dict[Category, int] = {}
    for obj in objects:
        counts[obj["category"]] = counts.get(obj["category"], 0) + 1
    cats = list(counts)
    where = scene["background"][0]

    def phrase(c: Category, with_count: bool = True) -> str:
        n = counts[c]
        noun = c.name if n == 1 else c.plural
        article = "an" if c.colour[0] in "aeiou" else "a"
        return f"{NUMBER_WORDS[n] if n > 1 else article} {c.colour} {noun}" if with_count else f"{c.colour} {noun}"

    listing = ", ".join(phrase(c) for c in cats[:-1]) + f" and {phrase(cats[-1])}"
    first, second = rng.sample(objects, 2) if len({o["category"] for o in objects}) > 1 else objects[:2]
    while first["category"] == second["category"] and len(cats) > 1:
        first, second = rng.sample(objects, 2)
    relation = _relation(first["center"], second["center"])
    a, b = first["category"], second["category"]
    templates = [
        f"There {'is' if counts[cats[0]] == 1 else 'are'} {listing} on the {where}.",
        f"A {a.colour} {a.name} {relation} a {b.colour} {b.name}.",
        f"A picture of {listing}.",
        f"The {a.size} {a.name} is {relation} the {b.size} {b.name} on the {where}.",
        f"{phrase(cats[0]).capitalize()} next to {phrase(cats[1])}.",
    ]
    rng.shuffle(templates)
    if complete_first:
        complete = f"There {'is' if counts[cats[0]] == 1 else 'are'} {listing} on the {where}."
        rest = [t for t in templates if t != complete]
        return [complete] + rest[: rng.randint(3, 5) - 1]
    return templates[: rng.randint(3, 5)]


def _relation(p: tuple[float, float], q: tuple[float, float]) -> str:
    dx, dy = q[0] - p[0], q[1] - p[1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _polygon_area(poly: list[tuple[float, float]]) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]))) / 2


def _bbox(poly: list[tuple[float, float]]) -> list[float]:
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
