"""The tokenizer of the tiny models (:mod:`realign_data.testing.tiny_models`): a byte-level BPE trained in about a
second on a fixed word list, so captions and chat templates tokenise into sensible pieces."""

from __future__ import annotations

# Words the tiny tokenizer is trained on: enough that captions and chat templates tokenise into
# sensible pieces instead of single bytes.
_CORPUS = (
    "a an the of on in to and with is are there two three four five one six seven eight nine ten "
    "left right top bottom next behind front near above below under beside picture image photo scene "
    "describe what do you see this shows red green blue yellow orange purple white black brown pink gray "
    "small large big tiny medium cat dog car bus bicycle apple banana bottle cup chair clock umbrella bird "
    "horse kite pizza person sheep cow elephant book vase laptop background sky user assistant system "
    "question answer please write sentence detailed description"
).split()


def train_tokenizer(special_tokens: list[str], vocab_size: int = 600, extra_text: list[str] | None = None):
    """Train a byte-level BPE tokenizer on a fixed word list; deterministic, about a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [" ".join(_CORPUS)] * 4 + [f"{w} {w}s" for w in _CORPUS] + list(extra_text or [])
    tok.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)
