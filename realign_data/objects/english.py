"""English word forms for the masker and the annotation filler: noun plurals and number words, by ``inflect``.

Hand-written suffix rules made "girafves"; ``inflect`` knows English. It is imported on first use because its
import instruments its methods with typeguard and costs about a second (jaraco/inflect#212), which neither
``realign-data --help`` nor a caller that never masks should pay.
"""

from __future__ import annotations

from functools import lru_cache

# Nouns of the COCO / CHAIR vocabulary that inflect gets wrong ("gentlemans") or that are invariant or
# uncounted in captions ("two skis", "some broccoli"), registered with inflect's own ``defnoun``.
USER_NOUNS = {"gentleman": "gentlemen", "bison": "bison", "cattle": "cattle", "skis": "skis", "broccoli": "broccoli"}


@lru_cache(maxsize=1)
def _engine():
    import inflect

    engine = inflect.engine()
    for singular, plural in USER_NOUNS.items():
        engine.defnoun(singular, plural)
    return engine


@lru_cache(maxsize=8192)
def pluralize(noun: str) -> str:
    """The plural of a (possibly multi-word) noun: ``giraffe`` -> ``giraffes``, ``hot dog`` -> ``hot dogs``."""
    if len(noun) > 1 and noun.isupper():
        return noun + "s"  # acronyms: TVs, SUVs (inflect would shout "TVS")
    plural = _engine().plural_noun(noun)
    return plural[:1].upper() + plural[1:] if noun[:1].isupper() else plural


def number_word(n: int) -> str:
    """``3`` -> ``three``, ``21`` -> ``twenty-one`` (negative numbers stay digits)."""
    return _engine().number_to_words(n) if n >= 0 else str(n)
