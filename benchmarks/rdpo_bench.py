"""rDPO vs TRL's sigmoid DPO: seconds per training step and peak memory, side by side in one run.

    python benchmarks/rdpo_bench.py --json rdpo_bench.json

Both arms train the same tiny-but-not-trivial LLaVA (CLIP tower + 8-layer, 512-wide Llama; ~30M parameters)
with the stock ``trl.DPOTrainer``, an explicit reference model, full fine-tuning, the same batch of examples
and the same seed; only ``loss_type`` differs. rDPO runs 3B sequences per step (chosen, rejected, chosen on the
rejected image) against sigmoid's 2B, so ~1.5x compute is the expected cost.

Method:
* every arm runs in a fresh subprocess (so peak memory is not polluted by the other arm) and arms are
  interleaved ``--repeats`` times. Step time per arm is the *minimum* over repeats of each run's median step
  (as ``timeit`` recommends: on a shared machine other tenants only ever add time); the ratio of medians
  over repeats is reported too (``step_time_ratio_median``). Memory figures are medians over repeats;
* step time: median wall time between consecutive ``on_step_end`` callbacks after ``--warmup`` steps
  (it includes collation/image processing, the policy and reference forwards, backward and optimizer step);
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

LONG = ("a small red cat sits on a wooden table next to a blue cup while two dogs play in the green park "
        "behind a white fence under a bright sky")


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _dataset(n: int, image_size: int):
    import numpy as np
    from datasets import Dataset
    from PIL import Image

    rng = np.random.RandomState(0)
    img = lambda: Image.fromarray(rng.randint(0, 256, (image_size, image_size, 3), dtype=np.uint8))  # noqa: E731
    words = LONG.split()
    rows = {"images": [], "rejected_images": [], "prompt": [], "chosen": [], "rejected": []}
    for i in range(n):
        rows["images"].append([img()])
        rows["rejected_images"].append([img()])
        rows["prompt"].append([{"role": "user", "content": [{"type": "image"},
                                                            {"type": "text", "text": "describe the image"}]}])
        chosen = " ".join(words[i % 5:] + words[: i % 5])
        rejected = " ".join(reversed(words))
        rows["chosen"].append([{"role": "assistant", "content": [{"type": "text", "text": chosen}]}])
        rows["rejected"].append([{"role": "assistant", "content": [{"type": "text", "text": rejected}]}])
    return Dataset.from_dict(rows)


def worker(loss_type: str, model_dir: str, steps: int, warmup: int, batch_size: int, image_size: int) -> dict:
    import torch

    import realign_trl
    from realign_trl import RDPOConfig

    realign_trl.register()
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import DPOTrainer

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    ref = AutoModelForImageTextToText.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    total = steps + warmup
    args = RDPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, report_to="none", save_strategy="no",
                      per_device_train_batch_size=batch_size, max_steps=total, learning_rate=1e-5,
                      logging_steps=total, loss_type=loss_type, max_length=None, seed=0,
                      gradient_checkpointing=False, disable_tqdm=True)
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=_dataset(batch_size * total, image_size),
                         processing_class=processor, callbacks=[Clock()])
    rss_before = _rss_mb()
    trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = [b - a for a, b in zip(stamps[warmup - 1:], stamps[warmup:])] if warmup else []
    return {
        "loss_type": loss_type,
        "step_time_s": statistics.median(times),
        "peak_rss_mb": peak,
        "rss_before_train_mb": rss_before,
        "peak_delta_mb": peak - rss_before,
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--model-dir", type=Path, help="reuse a built benchmark model (built if missing)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs per arm (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch default)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    a = parser.parse_args()

    if a.worker:
        if a.threads:
            import torch

            torch.set_num_threads(a.threads)
        print("RESULT=" + json.dumps(worker(a.worker, str(a.model_dir), a.steps, a.warmup, a.batch_size,
                                            a.image_size)))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    model_dir = a.model_dir or Path(tempfile.mkdtemp()) / "bench-llava"
    if not (Path(model_dir) / "config.json").exists():
        from realign_data.tiny_models import build_tiny_llava

        build_tiny_llava(model_dir, image_size=a.image_size, hidden_size=a.hidden_size, num_layers=a.num_layers)

    runs: dict[str, list[dict]] = {"sigmoid": [], "rdpo": []}
    for _ in range(a.repeats):
        for loss_type in ("sigmoid", "rdpo"):
            cmd = [sys.executable, __file__, "--worker", loss_type, "--model-dir", str(model_dir),
                   "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch-size", str(a.batch_size),
                   "--image-size", str(a.image_size), "--threads", str(a.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"worker {loss_type} failed:\n{proc.stderr[-4000:]}")
            line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))
            runs[loss_type].append(json.loads(line[7:]))

    med = {k: {f: statistics.median(r[f] for r in v) for f in ("step_time_s", "peak_rss_mb", "peak_delta_mb")}
           for k, v in runs.items()}
    best = {k: min(r["step_time_s"] for r in v) for k, v in runs.items()}
    result = {
        "step_time_ratio": best["rdpo"] / best["sigmoid"],
        "step_time_ratio_median": med["rdpo"]["step_time_s"] / med["sigmoid"]["step_time_s"],
        "step_time_s_min": best,
        "peak_memory_ratio": med["rdpo"]["peak_rss_mb"] / med["sigmoid"]["peak_rss_mb"],
        "peak_memory_delta_ratio": med["rdpo"]["peak_delta_mb"] / med["sigmoid"]["peak_delta_mb"],
        "sigmoid": med["sigmoid"],
        "rdpo": med["rdpo"],
        "model_params": runs["rdpo"][0]["params"],
        "torch_threads": runs["rdpo"][0]["threads"],
        "config": {"batch_size": a.batch_size, "steps": a.steps, "warmup": a.warmup, "repeats": a.repeats,
                   "image_size": a.image_size, "hidden_size": a.hidden_size, "num_layers": a.num_layers},
        "runs": runs,
    }
    print(f"model: tiny LLaVA, {result['model_params'] / 1e6:.1f}M params; batch {a.batch_size}; "
          f"{a.steps} timed steps x {a.repeats} interleaved runs")
    print(f"{'':24}{'sigmoid':>12}{'rdpo':>12}{'ratio':>8}")
    print(f"{'step time, min (s)':24}{best['sigmoid']:>12.3f}{best['rdpo']:>12.3f}{result['step_time_ratio']:>8.3f}")
    rows = [("step time, median (s)", "step_time_s", "step_time_ratio_median"),
            ("peak RSS (MB)", "peak_rss_mb", "peak_memory_ratio"),
            ("peak - pre-train (MB)", "peak_delta_mb", "peak_memory_delta_ratio")]
    for label, field, ratio in rows:
        print(f"{label:24}{med['sigmoid'][field]:>12.3f}{med['rdpo'][field]:>12.3f}{result[ratio]:>8.3f}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
