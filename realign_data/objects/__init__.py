"""Reading the objects a caption names: one module for the masker (building) and for CHAIR (evaluation).

* :mod:`realign_data.objects.coco`: the COCO vocabulary with the project's synonyms, the colour rule ("an orange
  cat" vs "an orange and a banana") and :func:`coco_mentions`, the reading the masker and ``--chair-synonyms
  extended`` use.
* :mod:`realign_data.objects.reference`: the reading of the reference CHAIR code (Rohrbach et al., 2018,
  ``utils/chair.py``): its synonym list, its two-word objects, its tokenising and singularising, so that CHAIR
  numbers compare with published tables.
"""

from __future__ import annotations

from realign_data.objects.coco import COCO_CATEGORIES, COCO_SYNONYMS, COLORS, coco_mentions, colour_modifies
from realign_data.objects.reference import reference_mentions

__all__ = ["COCO_CATEGORIES", "COCO_SYNONYMS", "COLORS", "coco_mentions", "colour_modifies", "reference_mentions"]
