"""The test's oracle for CHAIR: the reference algorithm (Rohrbach et al., 2018, ``utils/chair.py`` of
github.com/LisaAnne/Hallucination) written for this test from a description of what it does, not from its lines,
and independent of the project's implementation (``realign_data/objects/reference.py``), which it checks.

What the reference does with a caption:

* lower-case it, split it into tokens as ``nltk.word_tokenize`` does (:func:`word_tokenize`), and replace every
  token by its singular as ``pattern.en.singularize`` gives it (:func:`chair_singular.singular`);
* read the tokens left to right; where a token and the next one form one of its two-word names, the pair counts
  as one word: the name itself ("hot dog"), or the word a qualifier stands before ("baby bird" is a bird,
  "passenger jet" a jet, "toilet seat" a toilet, "bow tie" a tie, "wine glas", pattern's singular of "wine glass",
  the wine glass);
* once a caption holds "toilet", none of its "seat"s counts;
* each remaining word that is in the synonym file is one mention of that line's category (the line's first
  name); repeats and adjacent synonyms ("puppy dog") are separate mentions.

CHAIR_s is the share of captions with a mention whose category is not among the image's objects, CHAIR_i the
share of mentions that are such. The image's objects are its annotated categories plus every category its
ground-truth captions mention, read the same way.

The synonym file, ``data/chair_synonyms.txt``, is data: the reference repository's ``data/synonyms.txt`` unchanged
(a header would change what it reads, so its origin is stated here). Tokenising uses nltk's own
``NLTKWordTokenizer`` when nltk is installed (the ``dev`` extra; it needs no data); without it, the scanner
:func:`treebank` below, written from the Treebank conventions and checked against nltk where both exist.
Sentences are split where ``.``, ``!`` or ``?`` is followed by a space, which is what Punkt does on these
captions (none holds an abbreviation).
"""

from __future__ import annotations

import re
from pathlib import Path

from chair_singular import singular

SYNONYMS_FILE = Path(__file__).parent.parent / "data" / "chair_synonyms.txt"

# ------------------------------------------------------------------------------------------- the two-word names
# names the reference reads as one word (as themselves)
JOINED_NAMES = """motor bike|motor cycle|air plane|traffic light|street light|traffic signal|stop light|fire hydrant|
stop sign|parking meter|suit case|sports ball|baseball bat|baseball glove|tennis racket|wine glass|hot dog|cell phone|
mobile phone|teddy bear|hair drier|potted plant|laptop computer|stove top oven|home plate|train track"""
# qualifier -> the words it may stand before; the pair reads as the second word
QUALIFIED = {
    "baby": "bird cat dog horse sheep cow elephant bear zebra giraffe animal cub",
    "adult": "bird cat dog horse sheep cow elephant bear zebra giraffe animal cub",
    "passenger": "jet train",
}
# pairs that read as another word
RENAMED = {("bow", "tie"): "tie", ("toilet", "seat"): "toilet", ("wine", "glas"): "wine glass"}


def pair_table() -> dict[tuple[str, str], str]:
    table = {tuple(name.split()): name for name in JOINED_NAMES.replace("\n", "").split("|")}
    for qualifier, nouns in QUALIFIED.items():
        table.update({(qualifier, noun): noun for noun in nouns.split()})
    table.update(RENAMED)
    return table


# ------------------------------------------------------------------------------------------------ tokenising
SEPARATE = set(";@#$%&?!()[]{}<>")  # always a token of their own
OPENERS = set(" ([{<")  # a double quote after one of these (or first in the sentence) opens
CLITICS = (("'s", "'m", "'d", "'"), ("'ll", "'re", "'ve", "n't"))  # come off a word's end, the first kind first
FUSED = {"cannot": 3, "d'ye": 1, "gimme": 3, "gonna": 3, "gotta": 3, "lemme": 3, "more'n": 4, "wanna": 3}


def treebank(sentence: str) -> list[str]:
    """One sentence's tokens under the Treebank conventions ``NLTKWordTokenizer`` follows, for plain captions:
    brackets and ``; @ # $ % & ? !`` stand alone, so do ``--``, runs of dots, and ``,``/``:`` unless a digit
    follows; a sentence's last period is split off, other periods stay in their word; an opening double quote
    (or ``''`` after a space) becomes ````` ``, any other ``''``; clitics and a trailing apostrophe come off the end
    of a word, and a few fused words ("cannot", "gonna") are cut in two."""
    text = sentence.strip()
    last_period = _final_period(text)
    pieces: list[str] = []  # words and separate tokens, in order
    word = ""
    i = 0

    def flush():
        nonlocal word
        if word:
            pieces.append(word)
        word = ""

    while i < len(text):
        ch, nxt = text[i], text[i + 1 : i + 2]
        before = text[i - 1] if i else " "
        if ch.isspace():
            flush()
        elif ch == '"' or (ch == "'" and nxt == "'" and before in OPENERS and i > 0):
            flush()
            pieces.append("``" if before in OPENERS else "''")
            i += 1 if ch == '"' else 2
            continue
        elif ch == "'" and nxt == "'" and word:
            flush()
            pieces.append("''")
            i += 2
            continue
        elif ch in SEPARATE or (ch in ",:" and not nxt.isdigit()):
            flush()
            pieces.append(ch)
        elif ch == "-" and nxt == "-":
            flush()
            pieces.append("--")
            i += 2
            continue
        elif ch == "." and (nxt == "." or (before == "." and i > 0)):
            flush()
            j = i
            while j < len(text) and text[j] == ".":
                j += 1
            pieces.append(text[i:j])
            i = j
            continue
        elif ch == "." and i == last_period:
            flush()
            pieces.append(".")
        else:
            word += ch
        i += 1
    flush()
    tokens: list[str] = []
    for piece in pieces:
        tokens += _split_word(piece)
    return tokens


def _final_period(text: str) -> int:
    """Index of the period that ends the sentence (only closing brackets or quotes after it), or -1."""
    k = len(text) - 1
    while k >= 0 and text[k] in "])}>\"'":
        k -= 1
    return k if k > 0 and text[k] == "." and text[k - 1] != "." else -1


def _split_word(piece: str) -> list[str]:
    if piece in ("``", "''"):
        return [piece]
    tail: list[str] = []
    for kind in CLITICS:  # at most one of each kind, as lower or upper case, after a letter that is no quote
        for clitic in kind:
            end = piece[-len(clitic) :]
            if len(piece) > len(clitic) and end in (clitic, clitic.upper()) and piece[-len(clitic) - 1] != "'":
                piece, tail = piece[: -len(clitic)], [end] + tail
                break
    cut = FUSED.get(piece.lower())
    return ([piece[:cut], piece[cut:]] if cut else [piece]) + tail


try:
    from nltk.tokenize import NLTKWordTokenizer

    NLTK_TREEBANK = NLTKWordTokenizer().tokenize
except ImportError:
    NLTK_TREEBANK = None


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def word_tokenize(text: str) -> list[str]:
    return [t for s in sentences(text) for t in (NLTK_TREEBANK or treebank)(s)]


# ------------------------------------------------------------------------------------------------ the metric
class ReferenceChair:
    def __init__(self) -> None:
        self.node: dict[str, str] = {}  # every name of the synonym file -> its line's category
        for line in SYNONYMS_FILE.read_text().splitlines():
            names = line.strip().split(", ")
            for name in names:
                self.node[name] = names[0]
        self.pairs = pair_table()

    def caption_to_words(self, caption: str) -> tuple[list[str], list[str]]:
        """(the caption's object words, their categories), one entry per mention, in order."""
        tokens = [singular(t) for t in word_tokenize(caption.lower())]
        read: list[str] = []
        rest = tokens
        while rest:
            joined = self.pairs.get(tuple(rest[:2])) if len(rest) > 1 else None
            read.append(joined or rest[0])
            rest = rest[2:] if joined else rest[1:]
        has_toilet = "toilet" in read
        words = [w for w in read if w in self.node and not (has_toilet and w == "seat")]
        return words, [self.node[w] for w in words]

    def truth(self, categories, captions) -> set[str]:
        objects = {self.node[c] for c in categories}
        for caption in captions:
            objects.update(self.caption_to_words(caption)[1])
        return objects

    def compute(self, captions: list[str], truths: list[set[str]]) -> dict:
        per_caption = []
        for caption, truth in zip(captions, truths):
            categories = self.caption_to_words(caption)[1]
            per_caption.append((len(categories), sum(c not in truth for c in categories)))
        mentions = sum(n for n, _ in per_caption)
        return {
            "chair_s": sum(bad > 0 for _, bad in per_caption) / len(per_caption),
            "chair_i": sum(bad for _, bad in per_caption) / mentions,
        }
