"""The world options of ``realign-data sample`` as command-line flags (one table, so ``cli.py`` stays a thin layer).

Each entry becomes ``--name-with-dashes`` with its default and help, passed to
:func:`realign_data.testing.sample.make_sample_corpus` as a keyword argument. All are off by default: the default corpus
never changes. See docs/synthetic_world.md.
"""

from __future__ import annotations

import inspect
from typing import Callable

WORLD_OPTIONS: dict[str, tuple[object, str]] = {
    "width": (160, "Image width in pixels."),
    "height": (120, "Image height in pixels (equal to --width for square images, which a centre-cropping processor "
                    "sees whole)."),
    "cooccurrence": (0.0, "Strength of the language prior in [0, 1]: the probability that a drawn category's partner "
                          "(--partners) joins the scene."),
    "partners": ("", "The pairs the prior draws together, e.g. 'car-dog,cup-clock' (each category in one pair at "
                     "most); empty: car-bus, cat-dog, cup-bottle, apple-banana, chair-clock, bird-umbrella."),
    "heldout": (0, "Also draw this many held-out images of the same world into a second split (--heldout-split), "
                   "with image ids disjoint from the first."),
    "heldout_split": ("val2014", "Name of the held-out split."),
    "min_visible": (0.0, "Leave an instance out of the annotations and captions when less than this share of its "
                         "shape is visible, in [0, 1)."),
    "complete_caption": (False, "Make each image's first caption name every annotated object with its count and "
                                "colour, and the background."),
    "world_backgrounds": (False, "Call the table background 'floor' (no COCO category is called so) and record each "
                                 "image's background in the COCO files."),
}


def with_world_options(command: Callable) -> Callable:
    """Give ``command`` (which takes ``**world``) one typer option per :data:`WORLD_OPTIONS` entry."""
    import typer

    signature = inspect.signature(command)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for name, (default, help_text) in WORLD_OPTIONS.items():
        option = typer.Option(default, f"--{name.replace('_', '-')}", help=help_text, rich_help_panel="World options")
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=type(default)))
    command.__signature__ = signature.replace(parameters=params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command
