"""The test's oracle for CHAIR: the reference algorithm (Rohrbach et al., 2018, ``utils/chair.py`` of
github.com/LisaAnne/Hallucination) re-implemented from reading it, on its own synonym file (``data/chair_synonyms.txt``,
the reference's ``data/synonyms.txt`` byte for byte) and pattern 2.6's ``singularize`` (``pattern_singularize.py``,
verbatim). Tokenising follows ``nltk.word_tokenize``: Punkt sentence splitting (here: a sentence ends at ``.``,
``!`` or ``?`` followed by a space, which is what Punkt does on these captions, none of which holds an
abbreviation) and then the NLTK Treebank word tokenizer: nltk's own ``NLTKWordTokenizer`` when nltk is installed
(the ``dev`` extra; it needs no data), else its substitutions copied below, in its order (a test checks the copy
against nltk where both exist).
"""

from __future__ import annotations

import re
from pathlib import Path

from pattern_singularize import singularize

SYNONYMS_FILE = Path(__file__).parent / "data" / "chair_synonyms.txt"

# NLTKWordTokenizer's rules (nltk/tokenize/destructive.py), the ones that can fire on plain captions
_STARTING_QUOTES = [(re.compile(r'^\"'), r"``"), (re.compile(r"(``)"), r" \1 "),
                    (re.compile(r"([ \(\[{<])(\"|\'{2})"), r"\1 `` ")]
_PUNCTUATION = [(re.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "), (re.compile(r"([:,])([^\d])"), r" \1 \2"),
                (re.compile(r"([:,])$"), r" \1 "), (re.compile(r"\.{2,}"), r" \g<0> "),
                (re.compile(r"[;@#$%&]"), r" \g<0> "), (re.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "),
                (re.compile(r"[?!]"), r" \g<0> "), (re.compile(r"([^'])' "), r"\1 ' ")]
_PARENS = (re.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> ")
_DASHES = (re.compile(r"--"), r" -- ")
_CONTRACTIONS2 = [re.compile(p) for p in (r"(?i)\b(can)(?#X)(not)\b", r"(?i)\b(d)(?#X)('ye)\b",
                                          r"(?i)\b(gim)(?#X)(me)\b", r"(?i)\b(gon)(?#X)(na)\b",
                                          r"(?i)\b(got)(?#X)(ta)\b", r"(?i)\b(lem)(?#X)(me)\b",
                                          r"(?i)\b(more)(?#X)('n)\b", r"(?i)\b(wan)(?#X)(na)(?=\s)")]
_ENDING_QUOTES = [(re.compile(r'"'), " '' "), (re.compile(r"(\S)(\'\')"), r"\1 \2 "),
                  (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
                  (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 ")]


def treebank(sentence: str) -> list[str]:
    text = sentence
    for regexp, sub in _STARTING_QUOTES:
        text = regexp.sub(sub, text)
    for regexp, sub in _PUNCTUATION:
        text = regexp.sub(sub, text)
    text = _PARENS[0].sub(_PARENS[1], text)
    text = _DASHES[0].sub(_DASHES[1], text)
    text = " " + text + " "
    for regexp, sub in _ENDING_QUOTES:
        text = regexp.sub(sub, text)
    for regexp in _CONTRACTIONS2:
        text = regexp.sub(r" \1 \2 ", text)
    return text.split()


try:
    from nltk.tokenize import NLTKWordTokenizer

    NLTK_TREEBANK = NLTKWordTokenizer().tokenize
except ImportError:
    NLTK_TREEBANK = None


def word_tokenize(text: str) -> list[str]:
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    return [t for s in sentences if s for t in (NLTK_TREEBANK or treebank)(s)]


class ReferenceChair:
    def __init__(self) -> None:
        lines = [line.strip().split(", ") for line in SYNONYMS_FILE.read_text().splitlines()]
        self.objects = [w for line in lines for w in line]
        self.node = {}
        for line in lines:
            for w in line:
                self.node[w] = line[0]
        double = ["motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
                  "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
                  "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
                  "mobile phone", "teddy bear", "hair drier", "potted plant", "bow tie", "laptop computer",
                  "stove top oven", "hot dog", "teddy bear", "home plate", "train track"]
        self.double = {d: d for d in double}
        for animal in ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
                       "animal", "cub"]:
            self.double["baby " + animal] = animal
            self.double["adult " + animal] = animal
        for vehicle in ["jet", "train"]:
            self.double["passenger " + vehicle] = vehicle
        self.double["bow tie"] = "tie"
        self.double["toilet seat"] = "toilet"
        self.double["wine glas"] = "wine glass"

    def caption_to_words(self, caption: str) -> tuple[list[str], list[str]]:
        words = [singularize(w) for w in word_tokenize(caption.lower())]
        merged, i = [], 0
        while i < len(words):
            two = " ".join(words[i:i + 2])
            if two in self.double:
                merged.append(self.double[two])
                i += 2
            else:
                merged.append(words[i])
                i += 1
        if "toilet" in merged and "seat" in merged:
            merged = [w for w in merged if w != "seat"]
        kept = [w for w in merged if w in set(self.objects)]
        return kept, [self.node[w] for w in kept]

    def truth(self, categories, captions) -> set[str]:
        out = {self.node[c] for c in categories}
        for caption in captions:
            out.update(self.caption_to_words(caption)[1])
        return out

    def compute(self, captions: list[str], truths: list[set[str]]) -> dict:
        n_caps = n_hal_caps = hal_words = words = 0
        for caption, truth in zip(captions, truths):
            _, nodes = self.caption_to_words(caption)
            words += len(nodes)
            hallucinated = [w for w in nodes if w not in truth]
            hal_words += len(hallucinated)
            n_caps += 1
            n_hal_caps += bool(hallucinated)
        return {"chair_s": n_hal_caps / n_caps, "chair_i": hal_words / words}
