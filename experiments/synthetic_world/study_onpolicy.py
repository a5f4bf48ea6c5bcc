"""The on-policy arm (issue #26): ``onpolicy_rounds`` rounds of build from the policy's own answers -> rDPO.

Round ``r`` (``arms/rdpo_onpolicy_rounds/round-r``, each a cached stage, so a killed run resumes at the unfinished
round): an on-policy ``realign-data build --responses-from POLICY --round r`` from the training images (the policy
captions each image ``onpolicy_responses`` times at ``onpolicy_temperature``; captions that name an object the
annotations do not have, or a wrong count or colour (``onpolicy_kinds`` narrows which), are corrected span by span
from the truth: chosen = the correction, rejected = the policy's own caption, rejected image = the retrieved one),
then rDPO from POLICY (also the reference) on its rows, then POPE + CHAIR on the held-out images. The trained model
is the next round's policy.

Against the off-policy ``rdpo`` arm, the budget is the same: the rounds split ``pref_rows`` rows and ``pref_steps``
steps between them (the first rounds take the remainder), with the recipe of every arm (beta, lr, SFT term, LoRA).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

ARM = "rdpo_onpolicy"
ROUNDS_DIR = "rdpo_onpolicy_rounds"


def share(total: int, parts: int, k: int) -> int:
    """Part ``k`` (1-based) of ``total`` split into ``parts`` near-equal whole parts (the first take the remainder)."""
    return total // parts + (1 if k <= total % parts else 0)


def onpolicy_build(out: Path, policy: str, train_root: Path, index: Path, clip_paths, sizes, seed: int, r: int):
    """Round ``r``'s on-policy build of ``policy``'s captions of the training images into ``out``; its record."""
    from study_prefs import build_config

    from realign_data.building.builder import build

    config = build_config(
        out,
        train_root,
        index,
        clip_paths,
        seed * 100 + r,  # fresh draws each round
        image_negative="retrieval",
        responses_from=policy,
        responses_backend="transformers",
        num_responses=sizes.onpolicy_responses,
        temperature=sizes.onpolicy_temperature,
        round=r,
        mask_kinds=sizes.onpolicy_kind_list(),
        max_new_tokens=sizes.chair_max_new_tokens,
        batch_size=sizes.eval_batch,
    )
    result = build(config)
    return {
        "pairs": result.pairs_written,
        "drops": dict(result.drops),
        "onpolicy": result.report.get("onpolicy"),
        "blind_separability": result.report.get("blind_separability"),
    }


def train_onpolicy_arm(
    root: Path,
    sft_model: str,
    train_root: Path,
    clip_dir: Path,
    sizes,
    seed: int,
    evaluated: Callable[[str, str], dict],
) -> dict:
    """Every round of the arm for one seed (``root`` = the seed's directory); ``evaluated(name, model)`` evaluates a
    checkpoint as a cached stage ``eval/<name>``. Returns the arm's record: the last round's model, the rounds'
    logs joined, and per round its build, training and evaluation."""
    from study_clip import model_paths
    from study_prefs import first_rows, last_quarter, train_preferences
    from study_stages import stage

    policy, rounds, logs, steps = sft_model, [], [], 0
    used: dict[str, list] = {"image_id": [], "rejected_image_id": []}
    n = sizes.onpolicy_rounds
    for r in range(1, n + 1):

        def one_round(d: Path, r=r, policy=policy) -> dict:
            built = onpolicy_build(
                d / "data", policy, train_root, clip_dir / "index", model_paths(clip_dir), sizes, seed, r
            )
            ds = first_rows(d / "data", share(sizes.pref_rows, n, r), seed)
            trained = train_preferences(d, ds, "rdpo", {}, policy, sizes, seed + r, steps=share(sizes.pref_steps, n, r))
            return {"round": r, "policy": policy, "build": built, **trained}

        record = stage(root / "arms" / ROUNDS_DIR / f"round-{r}", f"seed {seed} arm {ARM} round {r}/{n}", one_round)
        policy = str(root / "arms" / ROUNDS_DIR / f"round-{r}" / "model")
        name = ARM if r == n else f"{ROUNDS_DIR}/round-{r}"  # the last round's evaluation is the arm's
        rounds.append({k: record[k] for k in ("round", "build", "rows", "steps", "global_step")})
        rounds[-1]["eval"] = evaluated(name, policy)
        logs += record["log"]
        steps += record["global_step"]
        for key in used:
            used[key] += record[key]
    return {
        "model": policy,
        "arm": ARM,
        "build": "onpolicy",
        "loss_type": "rdpo",
        "global_step": steps,
        "rows": sum(x["rows"] for x in rounds),
        "steps": sizes.pref_steps,
        "log": logs,
        "last_quarter": last_quarter(logs),
        "rounds": rounds,
        **used,
    }
