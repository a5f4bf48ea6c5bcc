"""``SampleConfig``: the options of ``realign-data sample``, one dataclass field each.

Each field carries its help (and its ``--help`` panel) in ``metadata``, as
:class:`~realign_data.building.config.BuildConfig` does; ``realign-data sample`` generates its flags from the fields
(:func:`realign_data.cli_common.config_options`). The world options (the ``World options`` panel) are passed to
:func:`realign_data.testing.sample.make_sample_corpus` as keyword arguments (:meth:`SampleConfig.world`). All are off
by default: the default corpus never changes. See docs/synthetic_world.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORLD = "World options"  # the --help panel of the world options


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


def _world(default: Any, help: str) -> Any:
    return _opt(default, help, section=WORLD)


@dataclass
class SampleConfig:
    """What ``realign-data sample`` draws: where, how many, which seed, and the world's options."""

    out: Path = field(metadata={"help": "Directory to write the corpus into (created if missing)."})
    num_images: int = _opt(200, "Number of images to draw (at most 599999).")
    seed: int = _opt(0, "Random seed; the same seed gives byte-identical files.")
    overwrite: bool = _opt(
        False, "Replace the split already in --out (refused otherwise; another split is added beside it)."
    )
    quiet: bool = _opt(False, "No progress bar.", flag=("--quiet", "-q"))
    width: int = _world(160, "Image width in pixels.")
    height: int = _world(
        120,
        "Image height in pixels (equal to --width for square images, which a centre-cropping processor sees whole).",
    )
    cooccurrence: float = _world(
        0.0,
        "Strength of the language prior in [0, 1]: the probability that a drawn "
        "category's partner (--partners) joins the scene.",
    )
    partners: str = _world(
        "",
        "The pairs the prior draws together, e.g. 'car-dog,cup-clock' (each category in one pair "
        "at most); empty: car-bus, cat-dog, cup-bottle, apple-banana, chair-clock, bird-umbrella.",
    )
    heldout: int = _world(
        0,
        "Also draw this many held-out images of the same world into a second split "
        "(--heldout-split), with image ids disjoint from the first.",
    )
    heldout_split: str = _world("val2014", "Name of the held-out split.")
    min_visible: float = _world(
        0.0,
        "Leave an instance out of the annotations and captions when less than this share "
        "of its shape is visible, in [0, 1).",
    )
    complete_caption: bool = _world(
        False,
        "Make each image's first caption name every annotated object with its count and colour, and the background.",
    )
    world_backgrounds: bool = _world(
        False,
        "Call the table background 'floor' (no COCO category is called so) and "
        "record each image's background in the COCO files.",
    )

    def world(self) -> dict[str, Any]:
        """The world options, as keyword arguments of :func:`~realign_data.testing.sample.make_sample_corpus`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("section") == WORLD}
