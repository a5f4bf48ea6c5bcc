"""The study's sizes: ``FULL`` (the reported run, about 2 hours on 2 quiet cores for 3 seeds) and ``SMOKE`` (the CI
check: tiny everything, about a minute). Every value is recorded with the results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Sizes:
    # world (realign-data sample's world options)
    image_size: int = 64
    train_images: int = 1500
    heldout_images: int = 200
    cooccurrence: float = 0.9
    partners: str = ""  # the prior's pairs, realign-data sample --partners (empty: its six default pairs)
    min_visible: float = 0.3
    # retrieval encoder (tiny open_clip, contrastive)
    clip_steps: int = 300
    clip_batch: int = 64
    clip_lr: float = 1e-3
    # base model (tiny LLaVA) and its supervised fine-tuning
    hidden_size: int = 256
    num_layers: int = 4
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_init: str = "encoder"  # the base model's vision tower: the trained retrieval encoder's, or "random"
    # the language model's input and output embeddings share one matrix: without it the model never links a word
    # it reads (the object in a yes/no question) to what captions taught it to write for an image (EVIDENCE.md, POPE)
    tie_embeddings: bool = True
    # LLaVA's first stage, in the study's terms: steps that pull the image tokens towards the embeddings of the words
    # naming what the image shows, before SFT (study_align.py); 0 skips it
    align_steps: int = 0
    sft_steps: int = 4000
    sft_batch: int = 16
    sft_lr: float = 1e-3
    yes_no_per_image: int = 4
    # then the verdict phase (study_verdict.py): the yes/no verdict and the captions weigh the same; 0 skips it
    verdict_steps: int = 600
    verdict_lr: float = 3e-4
    align_weight: float = 0.0  # the alignment loss beside the verdict phase's, on its yes/no batch's images; 0: off
    # preference arms: same rows, steps, beta and learning rate for every arm
    pref_rows: int = 1200
    pref_steps: int = 250
    pref_batch: int = 8
    pref_lr: float = 1e-4
    beta: float = 0.1
    sft_weight: float = 0.0  # SFT term on the chosen answer (rDPO: rdpo_sft_weight; DPO: TRL's loss_type sigmoid+sft)
    pref_lora_r: int = 0  # LoRA rank on the language model's linear layers (alpha 2r, as Re-Align's r128/256); 0: full
    # the on-policy arm (study_onpolicy.py): rounds splitting pref_rows and pref_steps; captions drawn per image
    onpolicy_rounds: int = 3
    onpolicy_responses: int = 2
    onpolicy_temperature: float = 0.7
    # which facts the rounds check and correct (realign-data build --mask-kind, comma-separated): "" = object, count
    # and colour; "object" leaves wrong counts and colours alone (the default world's rounds were mostly counts)
    onpolicy_kinds: str = ""
    # evaluation on held-out images
    eval_images: int = 200
    eval_batch: int = 32
    chair_max_new_tokens: int = 64

    def to_dict(self) -> dict:
        return asdict(self)

    def onpolicy_kind_list(self) -> list[str] | None:
        """``onpolicy_kinds`` as the build's ``mask_kinds``: a list, or None for every kind."""
        return [k for k in self.onpolicy_kinds.split(",") if k] or None


FULL = Sizes()
# what only the preference arms read: a lever sweep over these can reuse every earlier stage (run.py --reuse)
ARM_FIELDS = ("pref_rows", "pref_steps", "pref_batch", "pref_lr", "beta", "sft_weight", "pref_lora_r")
ARM_FIELDS += ("onpolicy_rounds", "onpolicy_responses", "onpolicy_temperature", "onpolicy_kinds")
# every size each stage before the arms depends on, its upstream stages' included: run.py --reuse links a finished
# stage of another run when these match, so a new verdict phase reuses the hour of SFT and a new SFT the encoder
_WORLD = ("image_size", "train_images", "heldout_images", "cooccurrence", "partners", "min_visible")
_CLIP = _WORLD + ("clip_steps", "clip_batch", "clip_lr", "vision_hidden_size", "vision_layers")
_SFT = _CLIP + ("hidden_size", "num_layers", "vision_init", "tie_embeddings", "sft_steps", "sft_batch", "sft_lr")
_SFT += ("yes_no_per_image", "align_steps")
_VERDICT = _SFT + ("verdict_steps", "verdict_lr", "align_weight")
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "world": _WORLD,
    "clip": _CLIP,
    "sft": _SFT,
    "sft_verdict": _VERDICT,
    "prefs": _CLIP,
    "eval/sft": _VERDICT + ("eval_images", "eval_batch", "chair_max_new_tokens"),
    "eval/sft_training_questions": _VERDICT + ("eval_batch",),
}
SMOKE = Sizes(
    image_size=32,
    train_images=40,
    heldout_images=12,
    clip_steps=6,
    clip_batch=16,
    hidden_size=32,
    num_layers=1,
    vision_hidden_size=32,
    vision_layers=1,
    sft_steps=12,
    sft_batch=4,
    yes_no_per_image=1,
    verdict_steps=2,
    pref_rows=8,
    pref_steps=2,
    pref_batch=2,
    onpolicy_rounds=2,
    onpolicy_responses=1,
    eval_images=8,
    eval_batch=8,
    chair_max_new_tokens=24,
)


def with_overrides(sizes: Sizes, overrides: dict) -> Sizes:
    """``sizes`` with some fields replaced (``--set name=value`` on the command line), values cast to the field type."""
    current = asdict(sizes)
    typed = {}
    for name, value in overrides.items():
        if name not in current:
            raise ValueError(f"unknown size {name!r}; known: {', '.join(current)}")
        typed[name] = _cast(name, value, type(current[name]))
    changed = replace(sizes, **typed)
    if "onpolicy_kinds" in typed:  # checked here, not an hour later when the first round builds
        from realign_data.building.facts import FACT_KINDS

        other = [k for k in changed.onpolicy_kind_list() or () if k not in FACT_KINDS]
        if other:
            raise ValueError(f"onpolicy_kinds takes some of {', '.join(FACT_KINDS)}, not {other[0]!r}")
    return changed


def _cast(name: str, value: str, kind: type):
    if kind is bool:  # bool("false") is True: read the words
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if str(value).lower() not in words:
            raise ValueError(f"{name} takes true or false, not {value!r}")
        return words[str(value).lower()]
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name} takes a number ({kind.__name__}), not {value!r}") from None
