"""The visual vocabulary beyond the 80 COCO categories: what else real captions state about an image.

COCO-80 (with CHAIR's synonyms, in :mod:`realign_data.building.masking`) misses most nouns of real captions: the sky, the
grass, the building behind, the shirt a person wears, the cabinets of a kitchen. Left unmasked, they survive into
the rejected answer, which then keeps facts it should have swapped. This module lists them, by span kind (the nouns in
:mod:`~realign_data.objects.vocabulary_nouns`, the rest in :mod:`~realign_data.objects.vocabulary_modifiers`):

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

from realign_data.objects.vocabulary_modifiers import (  # noqa: F401 - the vocabulary's words, read as vocabulary.X
    ATTRIBUTES,
    EXTRA_COLORS,
    EXTRA_MATERIALS,
    EXTRA_RELATIONS,
    NEAR_NOUN,
    QUANTITIES,
    STANDALONE_RELATIONS,
    WEAK_RELATIONS,
)
from realign_data.objects.vocabulary_nouns import (  # noqa: F401
    CLOTHING,
    OBJECTS,
    PERSON_COMPOUNDS,
    PLURAL_ONLY,
    PLURAL_ONLY_CLOTHING,
    SCENE,
)
