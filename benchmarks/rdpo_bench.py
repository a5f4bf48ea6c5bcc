"""rDPO vs TRL's sigmoid DPO: seconds per training step and peak memory, side by side in one run.

    python benchmarks/rdpo_bench.py --json rdpo_bench.json
    python benchmarks/rdpo_bench.py --image-tokens 576 --json rdpo_llava.json   # LLaVA-1.5 proportions
    python benchmarks/rdpo_bench.py --precompute-ref --image-tokens 576 --json rdpo_pre.json   # issue 24

All arms train the same tiny-but-not-trivial LLaVA (CLIP tower + 8-layer, 512-wide Llama; ~22M parameters)
with the stock ``trl.DPOTrainer``, an explicit reference model, full fine-tuning, the same batch of examples
and the same seed. Three arms: TRL's ``sigmoid`` (2B sequences per step), ``rdpo`` with prefix sharing (2B rows:
B packed ``[image + prompt | chosen | rejected]`` rows and B visual rows) and ``rdpo_unshared``
(``rdpo_prefix_sharing=off``: 3B rows, ~1.5x compute). ``--image-tokens 576`` gives LLaVA-1.5's proportions: a
192 px image at patch 8 (577 tokens with CLS) and answers of 60-140 tokens (100 +- ``--answer-spread`` 40: real
answers differ in length, so every arm's batch is padded), where the image+prompt prefix is most of each sequence
and sharing it matters most. ``--answer-spread 0`` makes every answer equally long: then sigmoid's rows need no
attention mask and CPU sdpa runs its causal kernel, which skips the masked half, while the packed rows always
need their 4D mask (sigmoid's best case).

``--precompute-ref`` runs two arms instead: TRL's ``sigmoid`` with its live reference (as above) and
``rdpo_precomputed`` (``loss_type="rdpo"``, prefix sharing on, ``precompute_ref_log_probs=True``: no reference
model is loaded; the reference log-probs are scored once before training, from the policy, into a fresh side
file). It also reports the one-off precompute time (``precompute_s``: hashing the rows and the reference, the
batched reference pass and the atomic write; ``precompute_rows``) and the time to reuse the stored file in a
second trainer built on a fresh copy of the initial model (``reuse_s``, ``reuse_scored_rows``: 0 when every row
was found; measured after training so it does not touch the peak memory).

Method:
* every arm runs in a fresh subprocess (so peak memory is not polluted by another arm) and arms are
  interleaved ``--repeats`` times. Step time per arm is the *minimum* over repeats of each run's median step
  (as ``timeit`` recommends: on a shared machine other tenants only ever add time); the ratio of medians
  over repeats is reported too (``step_time_ratio_median``). Memory figures are medians over repeats;
* step time: median wall time between consecutive ``on_step_end`` callbacks after ``--warmup`` steps
  (it includes collation/image processing, the policy and reference forwards, backward and optimizer step);
  the CPU time of the worker process over the same steps (``time.process_time``) is reported too
  (``cpu_time_ratio``): on a loaded machine it is less disturbed by other tenants than wall time;
* peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the worker at the end (peak RSS, what the
  machine must provide). ``tracemalloc`` does not see torch's allocator, hence RSS. Because RSS also counts
  the interpreter, libraries, both models and the optimizer state, the training-only increment
  (peak RSS minus RSS right before ``train()``) is reported too, as ``peak_memory_delta_ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LONG = (
    "a small red cat sits on a wooden table next to a blue cup while two dogs play in the green park "
    "behind a white fence under a bright sky"
)
ARMS = {"sigmoid": ("sigmoid", "off"), "rdpo": ("rdpo", "on"), "rdpo_unshared": ("rdpo", "off")}
PRECOMPUTE_ARMS = {"sigmoid": ("sigmoid", "off"), "rdpo_precomputed": ("rdpo", "on")}
WORKER_ARMS = {**ARMS, **PRECOMPUTE_ARMS}
PATCH = 8


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _answer(words: list[str], tokens: int | None, tokenizer) -> str:
    """The words as a sentence, repeated until it is ``tokens`` tokens long (``None``: once)."""
    if tokens is None:
        return " ".join(words)
    out: list[str] = []
    while len(tokenizer(" ".join(out), add_special_tokens=False)["input_ids"]) < tokens:
        out.append(words[len(out) % len(words)])
    return " ".join(out)


def _dataset(n: int, image_size: int, answer_tokens: int | None, tokenizer, spread: int = 0):
    import numpy as np
    from datasets import Dataset
    from PIL import Image

    rng = np.random.RandomState(0)
    img = lambda: Image.fromarray(rng.randint(0, 256, (image_size, image_size, 3), dtype=np.uint8))  # noqa: E731
    words = LONG.split()

    def length() -> int | None:
        """Answer lengths in answer_tokens +- spread, as in real data (then every arm's batch has padding)."""
        return answer_tokens + int(rng.randint(-spread, spread + 1)) if answer_tokens and spread else answer_tokens

    fixed_rejected = _answer(list(reversed(words)), answer_tokens, tokenizer)
    rows = {"images": [], "rejected_images": [], "prompt": [], "chosen": [], "rejected": []}
    for i in range(n):
        rows["images"].append([img()])
        rows["rejected_images"].append([img()])
        rows["prompt"].append(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe the image"}]}]
        )
        chosen = _answer(words[i % 5 :] + words[: i % 5], length(), tokenizer)
        rejected = _answer(list(reversed(words)), length(), tokenizer) if spread else fixed_rejected
        rows["chosen"].append([{"role": "assistant", "content": [{"type": "text", "text": chosen}]}])
        rows["rejected"].append([{"role": "assistant", "content": [{"type": "text", "text": rejected}]}])
    return Dataset.from_dict(rows)


def worker(
    arm: str,
    model_dir: str,
    steps: int,
    warmup: int,
    batch_size: int,
    image_size: int,
    answer_tokens: int | None,
    spread: int = 0,
) -> dict:
    import torch

    import realign_trl
    from realign_trl import RDPOConfig

    realign_trl.register()
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import DPOTrainer

    stamps: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append((time.perf_counter(), time.process_time()))

    loss_type, sharing = WORKER_ARMS[arm]
    precompute = arm == "rdpo_precomputed"
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    ref = None if precompute else AutoModelForImageTextToText.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    total = steps + warmup
    cache = tempfile.mkdtemp()

    def make_args():
        return RDPOConfig(
            output_dir=tempfile.mkdtemp(),
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            per_device_train_batch_size=batch_size,
            max_steps=total,
            learning_rate=1e-5,
            logging_steps=total,
            loss_type=loss_type,
            max_length=None,
            seed=0,
            gradient_checkpointing=False,
            disable_tqdm=True,
            rdpo_prefix_sharing=sharing,
            precompute_ref_log_probs=precompute,
            ref_logps_cache_dir=cache,
        )

    args = make_args()
    dataset = _dataset(batch_size * total, image_size, answer_tokens, processor.tokenizer, spread)
    from realign_trl import ref_logps

    spent = [0.0]
    original_precompute = ref_logps.precompute

    def timed_precompute(*a, **k):
        start = time.perf_counter()
        try:
            return original_precompute(*a, **k)
        finally:
            spent[0] += time.perf_counter() - start

    ref_logps.precompute = timed_precompute
    trainer = DPOTrainer(
        model=model, ref_model=ref, args=args, train_dataset=dataset, processing_class=processor, callbacks=[Clock()]
    )
    precompute_s = spent[0]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(batch_size)])
    rss_before = _rss_mb()
    trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timed = stamps[warmup - 1 :] if warmup else stamps
    wall = [b[0] - a[0] for a, b in zip(timed, timed[1:])]
    cpu = [b[1] - a[1] for a, b in zip(timed, timed[1:])]
    reuse_s = reuse_scored = None
    if precompute:  # a second trainer on a fresh copy of the initial model (the trained one is another reference)
        spent[0] = 0.0
        scored = [0]
        original_score = ref_logps._score

        def counted(trainer, subset, *a, **k):
            scored[0] += len(subset)
            return original_score(trainer, subset, *a, **k)

        ref_logps._score = counted
        DPOTrainer(
            model=AutoModelForImageTextToText.from_pretrained(model_dir),
            args=make_args(),
            train_dataset=dataset,
            processing_class=processor,
        )
        reuse_s, reuse_scored = spent[0], scored[0]
    return {
        "arm": arm,
        "precompute_s": precompute_s if precompute else None,
        "precompute_rows": len(dataset) if precompute else None,
        "reuse_s": reuse_s,
        "reuse_scored_rows": reuse_scored,
        "step_time_s": statistics.median(wall),
        "cpu_time_s": statistics.median(cpu),
        "peak_rss_mb": peak,
        "rss_before_train_mb": rss_before,
        "peak_delta_mb": peak - rss_before,
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "rows_per_batch": int(batch["input_ids"].size(0)),
        "tokens_per_batch": int(batch["attention_mask"].sum()),
        "images_per_batch": int(batch["pixel_values"].size(0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument(
        "--model-dir", type=Path, help="reuse a built benchmark model (built if missing; it must match --image-tokens)"
    )
    parser.add_argument("--steps", type=int, default=8, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--image-tokens",
        type=int,
        help="image tokens per image without CLS: a square number; the image is "
        f"sqrt(N) * {PATCH} px (576: LLaVA-1.5's count, 192 px). Default 64 (64 px)",
    )
    parser.add_argument(
        "--answer-tokens",
        type=int,
        help="length of every chosen and rejected answer in tokens (default: ~100 when "
        "--image-tokens is given, LLaVA-1.5's proportions; else one 27-word sentence)",
    )
    parser.add_argument(
        "--answer-spread",
        type=int,
        help="answers vary in length by up to this many tokens around --answer-tokens, as real "
        "answers do (default: 40 with --image-tokens, i.e. 60-140 tokens; else 0). 0 makes "
        "every answer equal, so sigmoid's rows need no padding mask: its best case",
    )
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs per arm (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch default)")
    parser.add_argument(
        "--precompute-ref",
        action="store_true",
        help="compare rDPO with precomputed reference log-probs and prefix sharing (no reference "
        "model) against TRL's sigmoid with its live reference; report the precompute time",
    )
    parser.add_argument("--worker", choices=list(WORKER_ARMS), help=argparse.SUPPRESS)
    a = parser.parse_args()
    image_tokens = a.image_tokens or 64
    side = int(round(image_tokens**0.5))
    if side * side != image_tokens or image_tokens < 1:
        parser.error(f"--image-tokens must be a square number (64, 144, 576, ...), got {image_tokens}")
    image_size = side * PATCH
    answer_tokens = a.answer_tokens
    if answer_tokens is None and a.image_tokens is not None and not a.worker:
        answer_tokens = 100
        if a.answer_spread is None:
            a.answer_spread = 40
    a.answer_spread = a.answer_spread or 0

    if a.worker:
        if a.threads:
            import torch

            torch.set_num_threads(a.threads)
        print(
            "RESULT="
            + json.dumps(
                worker(
                    a.worker,
                    str(a.model_dir),
                    a.steps,
                    a.warmup,
                    a.batch_size,
                    image_size,
                    answer_tokens,
                    a.answer_spread,
                )
            )
        )
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    model_dir = a.model_dir or Path(tempfile.mkdtemp()) / "bench-llava"
    if not (Path(model_dir) / "config.json").exists():
        from realign_data.testing.tiny_models import build_tiny_llava

        build_tiny_llava(
            model_dir, image_size=image_size, patch_size=PATCH, hidden_size=a.hidden_size, num_layers=a.num_layers
        )

    arms = PRECOMPUTE_ARMS if a.precompute_ref else ARMS
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for _ in range(a.repeats):
        for arm in arms:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                arm,
                "--model-dir",
                str(model_dir),
                "--steps",
                str(a.steps),
                "--warmup",
                str(a.warmup),
                "--batch-size",
                str(a.batch_size),
                "--image-tokens",
                str(image_tokens),
                "--threads",
                str(a.threads),
            ]
            if answer_tokens is not None:
                cmd += ["--answer-tokens", str(answer_tokens), "--answer-spread", str(a.answer_spread)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"worker {arm} failed:\n{proc.stderr[-4000:]}")
            line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))
            runs[arm].append(json.loads(line[7:]))

    fields = ("step_time_s", "cpu_time_s", "peak_rss_mb", "peak_delta_mb")
    med = {k: {f: statistics.median(r[f] for r in v) for f in fields} for k, v in runs.items()}
    best = {k: min(r["step_time_s"] for r in v) for k, v in runs.items()}
    best_cpu = {k: min(r["cpu_time_s"] for r in v) for k, v in runs.items()}
    result = {}
    compared = (("rdpo_precomputed", ""),) if a.precompute_ref else (("rdpo", ""), ("rdpo_unshared", "_unshared"))
    for arm, suffix in compared:
        result.update(
            {
                f"step_time_ratio{suffix}": best[arm] / best["sigmoid"],
                f"step_time_ratio_median{suffix}": med[arm]["step_time_s"] / med["sigmoid"]["step_time_s"],
                f"cpu_time_ratio{suffix}": best_cpu[arm] / best_cpu["sigmoid"],
                f"peak_memory_ratio{suffix}": med[arm]["peak_rss_mb"] / med["sigmoid"]["peak_rss_mb"],
                f"peak_memory_delta_ratio{suffix}": med[arm]["peak_delta_mb"] / med["sigmoid"]["peak_delta_mb"],
            }
        )
    first = {arm: v[0] for arm, v in runs.items()}
    main_arm = compared[0][0]
    if a.precompute_ref:
        result["precompute_s"] = statistics.median(r["precompute_s"] for r in runs[main_arm])
        result["precompute_rows"] = first[main_arm]["precompute_rows"]
        result["reuse_s"] = statistics.median(r["reuse_s"] for r in runs[main_arm])
        result["reuse_scored_rows"] = max(r["reuse_scored_rows"] for r in runs[main_arm])
        result["precompute_s_per_step"] = result["precompute_s"] / (a.steps + a.warmup)
    result.update(
        {
            "step_time_s_min": best,
            "cpu_time_s_min": best_cpu,
            **{arm: med[arm] for arm in arms},
            "batch_shape": {
                arm: {k: first[arm][k] for k in ("rows_per_batch", "tokens_per_batch", "images_per_batch")}
                for arm in arms
            },
            "model_params": first[main_arm]["params"],
            "torch_threads": first[main_arm]["threads"],
            "load_average": os.getloadavg(),
            "config": {
                "batch_size": a.batch_size,
                "steps": a.steps,
                "warmup": a.warmup,
                "repeats": a.repeats,
                "image_size": image_size,
                "image_tokens": image_tokens + 1,
                "answer_tokens": answer_tokens,
                "answer_spread": a.answer_spread,
                "hidden_size": a.hidden_size,
                "num_layers": a.num_layers,
            },
            "runs": runs,
        }
    )
    spread = f" +- {a.answer_spread}" if a.answer_spread else ""
    print(
        f"model: tiny LLaVA, {result['model_params'] / 1e6:.1f}M params; batch {a.batch_size}; {image_size} px "
        f"({image_tokens + 1} image tokens), answers {answer_tokens or 'one sentence'}{spread}; {a.steps} timed steps x "
        f"{a.repeats} interleaved runs"
    )
    names = [arm for arm, _ in compared]
    heads = {"rdpo": "rdpo", "rdpo_unshared": "unshared", "rdpo_precomputed": "rdpo+pre"}
    print(
        f"{'':26}{'sigmoid':>10}"
        + "".join(f"{heads[n]:>10}" for n in names)
        + f"{'ratio':>8}"
        + "".join(f"{heads[n]:>10}" for n in names[1:])
    )
    rows = [
        ("step time, min (s)", best, "step_time_ratio"),
        ("CPU time/step, min (s)", best_cpu, "cpu_time_ratio"),
        ("step time, median (s)", {k: med[k]["step_time_s"] for k in arms}, "step_time_ratio_median"),
        ("peak RSS (MB)", {k: med[k]["peak_rss_mb"] for k in arms}, "peak_memory_ratio"),
        ("peak - pre-train (MB)", {k: med[k]["peak_delta_mb"] for k in arms}, "peak_memory_delta_ratio"),
    ]
    for label, values, ratio in rows:
        print(
            f"{label:26}{values['sigmoid']:>10.3f}"
            + "".join(f"{values[n]:>10.3f}" for n in names)
            + f"{result[ratio]:>8.3f}"
            + "".join(f"{result[ratio + s]:>10.3f}" for _, s in compared[1:])
        )
    if a.precompute_ref:
        print(
            f"one-off precompute: {result['precompute_s']:.2f} s for {result['precompute_rows']} rows "
            f"({result['precompute_s_per_step']:.2f} s per training step of this run); reuse of the stored file: "
            f"{result['reuse_s']:.2f} s ({result['reuse_scored_rows']} rows scored again)"
        )
    for arm in arms:
        shape = result["batch_shape"][arm]
        print(
            f"{arm}: {shape['rows_per_batch']} rows, {shape['tokens_per_batch']} tokens, "
            f"{shape['images_per_batch']} images per batch"
        )
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
