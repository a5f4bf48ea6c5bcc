"""Stage 1, the world: a synthetic COCO corpus with a co-occurrence prior, and a training-only view of it.

``all/`` holds both splits (train2014 for training, val2014 held out); ``train/`` links only the training split
and its annotation files, so the knowledge base, the seeds and the annotation filler can never see a held-out
image.
"""

from __future__ import annotations

import os
from pathlib import Path

from realign_data.testing.sample import make_sample_corpus

TRAIN_SPLIT, HELDOUT_SPLIT = "train2014", "val2014"


def make_world(out: Path, sizes, seed: int) -> dict:
    """Draw the world of one seed into ``out`` (``all/`` and the training-only ``train/``)."""
    make_sample_corpus(
        out / "all",
        num_images=sizes.train_images,
        seed=seed,
        width=sizes.image_size,
        height=sizes.image_size,
        cooccurrence=sizes.cooccurrence,
        partners=sizes.partners,
        heldout=sizes.heldout_images,
        heldout_split=HELDOUT_SPLIT,
        min_visible=sizes.min_visible,
        complete_caption=True,
        world_backgrounds=True,
    )
    train = out / "train"
    (train / "annotations").mkdir(parents=True)
    os.symlink("../all/" + TRAIN_SPLIT, train / TRAIN_SPLIT)
    for kind in ("instances", "captions"):
        name = f"{kind}_{TRAIN_SPLIT}.json"
        os.symlink(f"../../all/annotations/{name}", train / "annotations" / name)
    return {
        "train_images": sizes.train_images,
        "heldout_images": sizes.heldout_images,
        "cooccurrence": sizes.cooccurrence,
        "partners": [list(p) for p in world_partners(sizes)],
    }


def world_partners(sizes) -> tuple[tuple[str, str], ...]:
    """The co-occurring pairs of the study's world (``sizes.partners``, else the sample corpus's default pairs)."""
    from realign_data.testing.sample import parse_partners

    return parse_partners(sizes.partners)


def corpus_roots(world: Path) -> tuple[Path, Path]:
    """(training-only root, root with the held-out split)."""
    return world / "train", world / "all"
