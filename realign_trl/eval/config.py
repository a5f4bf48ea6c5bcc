"""``EvalConfig``: every setting of a hallucination evaluation, in one place.

One dataclass field per setting, whose ``metadata`` carries its help and choices (as
:class:`~realign_data.building.config.BuildConfig` and TRL's configs do). Three surfaces read this one list:

- ``realign-trl eval`` generates its options from the fields (:func:`realign_data.cli_common.config_options`);
- :class:`~realign_trl.RDPOConfig` gets its ``hallucination_eval_*`` fields (flags of ``realign-trl dpo``, YAML keys)
  from the fields whose metadata has a ``training`` entry (:func:`training_fields`), and turns them back into an
  ``EvalConfig`` with :meth:`~realign_trl.RDPOConfig.eval_config`;
- :class:`~realign_trl.eval.HallucinationEvalCallback` takes an ``EvalConfig`` (its ``from_config``), and its
  keyword defaults are this class's; :meth:`~realign_trl.eval.EvalSuite.from_config` draws the suite one describes.

Metadata keys: ``help``; ``choices``; ``cli`` (False: no ``realign-trl eval`` option); ``min`` (smallest valid
value, checked by :func:`too_small`); ``training`` (a dict: ``name`` of the ``RDPOConfig`` field, default
``hallucination_eval_<field>``; its ``default``, ``help`` and ``min`` where they differ from the command line's).
Standard library only: ``RDPOConfig`` imports it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

POPE_MAX_NEW_TOKENS = 32  # the reference parser reads the first sentence only
CHAIR_MAX_NEW_TOKENS = 256
TRAINING_PREFIX = "hallucination_eval"
_TRAINING = "Hallucination evaluation: "


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class EvalConfig:
    """What to evaluate (model, benchmarks, held-out images), how to ask (backend, generation bounds) and where to
    write it. ``realign-trl eval --help`` prints every field's help; see ``docs/evaluation.md``."""

    model: Optional[str] = _opt(
        None,
        "Checkpoint directory or Hub id (any AutoModelForImageTextToText); with "
        "--base-url, the model name the endpoint serves.",
    )
    adapter: Optional[str] = _opt(None, "PEFT adapter directory, loaded on --model and merged.")
    bench: str = _opt(
        "pope,chair",
        "Benchmarks: pope, chair or pope,chair; or amber (with --amber-root).",
        training={
            "name": TRAINING_PREFIX,
            "default": None,
            "help": "Hallucination evaluation during training: 'pope,chair', 'pope' or 'chair' on "
            "a fixed held-out subset every hallucination_eval_steps, logged as "
            "eval/pope_<split>_f1, eval/chair_s, ... Default: none.",
        },
    )
    steps: int = _opt(
        200,
        "Evaluate every N optimizer steps (0: only at the end).",
        cli=False,
        min=0,
        training={"help": "Hallucination evaluation every N optimizer steps (0: only at the end)."},
    )
    amber_root: Optional[Path] = _opt(
        None,
        "--bench amber: the AMBER release (data/annotations.json, data/query/, "
        "data/relation.json, data/safe_words.txt; images in data/image/ or "
        "--amber-images).",
    )
    amber_images: Optional[Path] = _opt(
        None, "--bench amber: the AMBER images folder (default: <amber-root>/data/image)."
    )
    pope_parser: str = _opt(
        "robust",
        "POPE answer reading: robust (a person's reading) or reference (POPE/LLaVA eval "
        "rule, for published numbers); both are computed.",
        choices=("robust", "reference"),
    )
    chair_synonyms: str = _opt(
        "reference",
        "CHAIR object reading: reference (chair.py of Rohrbach et al.) or extended (more synonyms, colour 'orange').",
        choices=("reference", "extended"),
    )
    coco_root: Optional[Path] = _opt(
        None,
        "COCO-layout corpus with instances (and captions for CHAIR): MS-COCO, or `realign-data sample`.",
        training={"help": _TRAINING + "COCO-layout corpus of the held-out images (instances, captions)."},
    )
    split: Optional[str] = _opt(
        None,
        "Annotated split, e.g. val2014 (default: the only one with instances).",
        training={"help": _TRAINING + "annotated split, e.g. val2014 (default: the only one)."},
    )
    pope: Optional[str] = _opt(
        None,
        "A `realign-data pope` question set (directory or Hub id) instead of drawing one from --coco-root.",
        training={
            "help": _TRAINING + "a `realign-data pope` question set (directory or Hub id) "
            "instead of drawing one from the corpus."
        },
    )
    exclude_dataset: Optional[str] = _opt(
        None, "Training dataset (build directory or Hub id): refuse (exit 2) when an evaluation image appears in it."
    )
    pope_splits: Optional[str] = _opt("random,popular,adversarial", "POPE samplings to evaluate.")  # None: all three,
    # or all that a question set (--pope) has: what training asks for
    num_images: Optional[int] = _opt(
        None,
        "Held-out images: POPE asks about them, CHAIR describes them (default 500; --bench amber: all of the release).",
        min=1,
        training={"default": 100, "help": _TRAINING + "held-out images (the same at every evaluation)."},
    )
    min_objects: int = _opt(
        3,
        "Only images with at least this many annotated categories (POPE: 3).",
        training={"min": 1, "help": _TRAINING + "only images with at least this many annotated categories (POPE: 3)."},
    )
    seed: int = _opt(0, "Seed of the image order and of POPE's negatives (same seed = same inputs).")
    vocabulary: str = _opt(
        "annotated",
        "CHAIR objects: annotated (the categories the annotation file declares) or coco (all 80).",
        choices=("annotated", "coco"),
    )
    chair_prompt: str = _opt("Please describe this image in detail.", "CHAIR instruction.")
    pope_suffix: str = _opt(
        "", "Text appended to each POPE question (LLaVA-1.5: ' Answer the question using a single word or phrase.')."
    )
    out: Optional[Path] = _opt(None, "Output directory (default: eval-<model name>); a re-run resumes there.")
    base_url: Optional[str] = _opt(None, "OpenAI-compatible endpoint (vLLM, TGI...), e.g. http://localhost:8000/v1.")
    api_key_env: str = _opt("OPENAI_API_KEY", "--base-url: environment variable holding the API key.")
    concurrency: int = _opt(16, "--base-url: requests in flight.", min=1)
    max_retries: int = _opt(5, "--base-url: retries on 429/5xx/timeouts/refused connections/empty answers.")
    request_timeout: float = _opt(
        60.0, "--base-url: seconds one attempt may take in all (connecting, sending, reading the whole answer)."
    )
    max_failures: float = _opt(
        0.01,
        "Fraction of requests that may fail (error or empty answer; never scored); above "
        "it nothing is scored and the exit code is 1.",
    )
    device: str = _opt("auto", "auto (cuda:LOCAL_RANK, else MPS, else CPU), cpu, cuda, cuda:N or mps.")
    dtype: str = _opt(
        "auto",
        "Precision: auto (bf16 on GPUs that have it, else fp16; fp32 on CPU/MPS).",
        choices=("auto", "bf16", "fp16", "fp32"),
    )
    device_map: Optional[str] = _opt(
        None,
        "Spread a model too large for one GPU over several (accelerate's strategies).",
        choices=("auto", "balanced", "balanced_low_0", "sequential"),
    )
    batch_size: int = _opt(
        8, "Prompts per generate call.", min=1, training={"help": _TRAINING + "prompts per generate call."}
    )
    pope_max_new_tokens: int = _opt(POPE_MAX_NEW_TOKENS, "Length bound of POPE answers.", min=1)
    chair_max_new_tokens: int = _opt(
        CHAIR_MAX_NEW_TOKENS,
        "Length bound of CHAIR descriptions.",
        min=1,
        training={
            "name": f"{TRAINING_PREFIX}_max_new_tokens",
            "help": _TRAINING + "length bound of the CHAIR descriptions.",
        },
    )
    trust_remote_code: bool = _opt(False, "Allow checkpoint code (off unless you trust it).")

    @classmethod
    def from_training_args(cls, args: Any) -> Optional[EvalConfig]:
        """The evaluation an ``RDPOConfig`` (or any object with the ``hallucination_eval_*`` attributes and ``seed``)
        asks for during training, or ``None`` when ``hallucination_eval`` is off."""
        if not getattr(args, TRAINING_PREFIX, None):
            return None
        values = {f.name: getattr(args, training_name(f)) for f in dataclasses.fields(cls) if "training" in f.metadata}
        return cls(**values, seed=getattr(args, "seed", 0), pope_splits=None)


def training_name(f: dataclasses.Field) -> str:
    """The ``RDPOConfig`` field of an :class:`EvalConfig` field that training takes."""
    return f.metadata["training"].get("name", f"{TRAINING_PREFIX}_{f.name}")


def too_small(config: Any, *, training: bool = False) -> Iterator[tuple[str, Any, int]]:
    """``(field, value, minimum)`` of each :class:`EvalConfig` setting below its ``min`` (``training``: the fields
    ``RDPOConfig`` has, by their ``hallucination_eval_*`` names, read from ``config``, with the training minimums)."""
    for f in dataclasses.fields(EvalConfig):
        if training and "training" not in f.metadata:
            continue
        low = f.metadata["training"].get("min", f.metadata.get("min")) if training else f.metadata.get("min")
        name = training_name(f) if training else f.name
        value = getattr(config, name)
        if low is not None and value is not None and value < low:
            yield name, value, low


def training_fields(cls: type) -> type:
    """Class decorator (under ``@dataclass``): give ``cls`` one field per :class:`EvalConfig` field that training
    takes, named ``hallucination_eval_*``, with its training default and help (so ``TrlParser`` makes them flags
    and YAML keys), and document them in ``cls``'s docstring."""
    import typing

    hints = typing.get_type_hints(EvalConfig)
    annotations = cls.__dict__.get("__annotations__", {})
    docs = []
    for f in dataclasses.fields(EvalConfig):
        spec = f.metadata.get("training")
        if spec is None:
            continue
        name, default, help_text = (
            training_name(f),
            spec.get("default", f.default),
            spec.get("help", f.metadata["help"]),
        )
        kind = _plain(hints[f.name])
        annotations[name] = Optional[kind] if default is None else kind
        setattr(cls, name, field(default=default, metadata={"help": help_text}))
        docs.append(
            f"        {name} (`{kind.__name__}`{' or `None`' if default is None else ''}, *optional*, "
            f"defaults to `{default!r}`):\n            {help_text}"
        )
    cls.__annotations__ = annotations
    if cls.__doc__:
        cls.__doc__ = cls.__doc__.rstrip() + "\n" + "\n".join(docs) + "\n"
    return cls


def _plain(hint: Any) -> type:
    """``int`` for ``int`` and ``Optional[int]``; ``str`` for paths (a training config is written as JSON)."""
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return str if args[0] is Path else args[0]
