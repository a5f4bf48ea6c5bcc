"""Stage 4, the preference data and arms.

Two ``realign-data build``s from the *training* corpus only (annotation filler, the trained encoder's knowledge
base, the CHAIR instruction as the one prompt): the Re-Align build (rejected image = retrieved image) and the MFPO
build (``--image-negative region-noise``). Then the arms, each from the same SFT checkpoint with the same rows,
steps, beta, learning rate and seed: ``dpo`` (TRL's sigmoid on the text pairs), ``rdpo``, ``rdpo_anchor`` (rDPO +
the mDPO anchor) and ``rdpo_region_noise`` (rDPO on the MFPO build).
"""

from __future__ import annotations

from pathlib import Path

from realign_trl.eval.suite import CHAIR_PROMPT

# arm -> (build, loss_type, extra RDPOConfig fields)
ARMS: dict[str, tuple[str, str, dict]] = {
    "dpo": ("retrieval", "sigmoid", {}),
    "rdpo": ("retrieval", "rdpo", {}),
    "rdpo_anchor": ("retrieval", "rdpo", {"rdpo_anchor_weight": 1.0}),
    "rdpo_region_noise": ("region-noise", "rdpo", {}),
    "rdpo_onpolicy": ("onpolicy", "rdpo", {}),  # its own builds, round by round (study_onpolicy.py)
}
ARM_LABELS = {
    "sft": "(a) SFT only",
    "dpo": "(b) DPO (sigmoid, text pairs)",
    "rdpo": "(c) rDPO",
    "rdpo_anchor": "(d) rDPO + mDPO anchor",
    "rdpo_region_noise": "(e) rDPO, region-noise images (MFPO)",
    "rdpo_onpolicy": "(f) rDPO, on-policy rounds",
}
ARM_ORDER = ("sft", "dpo", "rdpo", "rdpo_anchor", "rdpo_region_noise", "rdpo_onpolicy")


def build_config(out: Path, train_root: Path, index: Path, clip_paths: tuple[str, str], seed: int, **extra):
    """The study's ``realign-data build`` of the training root (annotation filler, the trained encoder's knowledge
    base, the lexical gate, the CHAIR instruction as the one prompt) into ``out``; ``extra`` sets the rest."""
    from realign_data.building.config import BuildConfig

    return BuildConfig(
        index=str(index),
        coco_root=str(train_root),
        out=str(out),
        kb_model=clip_paths[0],
        kb_pretrained=clip_paths[1],
        prompts=[CHAIR_PROMPT],
        gate="lexical",
        seed=seed,
        progress=False,
        device="cpu",
        **extra,
    )


def build_preferences(out: Path, train_root: Path, index: Path, clip_paths: tuple[str, str], seed: int) -> dict:
    """Both builds into ``out/retrieval`` and ``out/region-noise``; their row counts and drop reasons."""
    from realign_data.building.builder import build

    record = {}
    for negative in ("retrieval", "region-noise"):
        result = build(build_config(out / negative, train_root, index, clip_paths, seed, image_negative=negative))
        record[negative] = {
            "pairs": result.pairs_written,
            "drops": dict(result.drops),
            "blind_separability": result.report.get("blind_separability"),
        }  # text-only accuracy
    return record


def first_rows(built: Path, rows: int, seed: int):
    """The first ``rows`` rows (after a seeded shuffle) of the build in ``built``, as TRL's vision preference dataset
    plus the image ids the invariants check."""
    from realign_data.building.output import load_built

    ds = load_built(built).shuffle(seed=seed)
    ds = ds.select(range(min(rows, len(ds))))
    return ds.select_columns(
        ["images", "rejected_images", "prompt", "chosen", "rejected", "image_id", "rejected_image_id"]
    )


def common_rows(prefs: Path, wanted: int) -> int:
    """The data size every arm trains on: ``wanted``, or fewer when a build has fewer pairs."""
    from realign_data.building.output import load_built

    return min(wanted, *(len(load_built(prefs / b)) for b in ("retrieval", "region-noise")))


def train_arm(out: Path, arm: str, sft_model: str, prefs: Path, sizes, seed: int) -> dict:
    """Train one arm; save the policy to ``out/model``; return its logged diagnostics (reward margins, accuracies)."""
    build_name, loss_type, extra = ARMS[arm]
    ds = first_rows(prefs / build_name, common_rows(prefs, sizes.pref_rows), seed)
    return {"arm": arm, "build": build_name, **train_preferences(out, ds, loss_type, extra, sft_model, sizes, seed)}


def train_preferences(
    out: Path, ds, loss_type: str, extra: dict, start: str, sizes, seed: int, steps: int | None = None
) -> dict:
    """``steps`` (default ``sizes.pref_steps``) preference steps from the checkpoint ``start`` (also the reference)
    on ``ds`` with the recipe of ``sizes``; save the policy to ``out/model``; return the logged diagnostics."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOTrainer

    import realign_trl  # noqa: F401  (registers loss_type="rdpo")
    from realign_trl import RDPOConfig

    steps = sizes.pref_steps if steps is None else steps
    used = {"image_id": list(ds["image_id"]), "rejected_image_id": list(ds["rejected_image_id"])}
    ds = ds.remove_columns(["image_id", "rejected_image_id"] + (["rejected_images"] if loss_type != "rdpo" else []))
    model = AutoModelForImageTextToText.from_pretrained(start)
    processor = AutoProcessor.from_pretrained(start)
    lora = lora_config(sizes.pref_lora_r)
    # with LoRA the reference is the policy with its adapter disabled, as TRL does it
    ref = None if lora else AutoModelForImageTextToText.from_pretrained(start)
    extra, loss = dict(extra), {"loss_type": loss_type}
    if sizes.sft_weight and loss_type == "rdpo":
        extra["rdpo_sft_weight"] = sizes.sft_weight
    elif sizes.sft_weight:  # the same SFT term for DPO: TRL's own "sft" loss beside its sigmoid loss
        loss = {"loss_type": [loss_type, "sft"], "loss_weights": [1.0, sizes.sft_weight]}
    args = RDPOConfig(
        output_dir=str(out / "trainer"),
        **loss,
        beta=sizes.beta,
        learning_rate=sizes.pref_lr,
        max_steps=steps,
        per_device_train_batch_size=sizes.pref_batch,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        logging_steps=max(1, min(5, steps // 4)),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        max_length=None,
        gradient_checkpointing=False,
        **extra,
    )
    trainer = DPOTrainer(
        model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=processor, peft_config=lora
    )
    trainer.train()
    policy = trainer.model.merge_and_unload() if lora else trainer.model  # the evaluation loads a whole model
    policy.save_pretrained(str(out / "model"))
    processor.save_pretrained(str(out / "model"))
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "model": str(out / "model"),
        "global_step": trainer.state.global_step,
        "loss_type": loss["loss_type"],
        "extra": extra,
        "lora_r": sizes.pref_lora_r,
        "rows": len(ds),
        **used,
        "steps": steps,
        "log": logs,
        "last_quarter": last_quarter(logs),
    }


def last_quarter(logs: list[dict]) -> dict:
    """The mean of each logged reward, loss and log-probability over the last quarter of the logged steps."""
    keys = sorted({k for h in logs for k in h if k.startswith(("rewards/", "loss", "logps/"))})
    tail = logs[-max(1, len(logs) // 4) :]
    return {k: sum(h[k] for h in tail if k in h) / max(1, sum(k in h for h in tail)) for k in keys}


def lora_config(rank: int):
    """LoRA of rank ``rank`` (alpha ``2 * rank``, as Re-Align's r128 / alpha 256) on the language model's attention
    and MLP projections, the vision tower and projector frozen; ``None`` for rank 0 (full fine-tuning)."""
    if not rank:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.05,
        task_type="CAUSAL_LM",
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    )
