"""The GPU check's driver (run it through ``benchmarks/gpu_check.sh``): rDPO at LLaVA-1.5-7B shape and eval throughput.

    python benchmarks/gpu_check.py run --out gpu_check.json            # CUDA: the real check
    python benchmarks/gpu_check.py run --device cpu --tiny --out x.json  # the same steps, tiny, on CPU (--dry-run)
    python benchmarks/gpu_check.py requirements                          # pinned wheels to carry to the GPU host
    python benchmarks/gpu_check.py direct                                # realign's own requirements, host's left out

Training arms (each in a fresh subprocess, so each peak is its own): LLaVA-1.5-7B's shape with random weights in
bf16 (CLIP ViT-L/14 at 336 px: 577 image tokens with CLS; Llama-2-7B: 4096 wide, 32 layers, 11008 MLP, vocabulary
32064), LoRA r128 / alpha 256 / dropout 0.05 on the language model's q/k/v/o projections as Re-Align's
``train_rdpo.py`` trains, the reference being the adapter-disabled model (TRL's PEFT path: a live reference that
costs a forward per step). Arms: ``sigmoid`` (TRL's DPO), ``rdpo`` (prefix sharing on), each with ``sdpa`` and, if
``flash_attn`` imports, ``flash_attention_2``; and ``rdpo_precomputed`` (``PRECOMPUTE_HOOK``: the reference log-probs computed once). Figures:
median step time after warm-up (CUDA-synchronised), tokens per second, peak GPU memory (allocated and reserved).
``--num-layers auto`` keeps all 32 layers on a card with >= 70 GiB and fewer on smaller cards (full width always).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
# what the GPU host brings (PyTorch + transformers and what they pin); never downloaded, never replaced
HOST = (
    "torch",
    "torchvision",
    "torchaudio",
    "triton",
    "transformers",
    "tokenizers",
    "safetensors",
    "flash-attn",
    "flash_attn",
)
# dataset building only (knowledge base, retrieval, the gate): the check never imports them, so no wheels for them
BUILD_ONLY = ("faiss-cpu", "open-clip-torch", "sentence-transformers")
WORDS = (
    "a small red cat sits on a wooden table next to a blue cup while two dogs play in the green park behind "
    "a white fence under a bright sky"
).split()
SHAPES = {  # LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf's config), and the same steps tiny for the CPU rehearsal
    "llava-1.5-7b": dict(
        image_size=336,
        patch=14,
        v_hidden=1024,
        v_layers=24,
        v_heads=16,
        v_mlp=4096,
        hidden=4096,
        layers=32,
        heads=32,
        mlp=11008,
        vocab=32064,
        lora_r=128,
    ),
    "tiny": dict(
        image_size=56,
        patch=14,
        v_hidden=32,
        v_layers=2,
        v_heads=2,
        v_mlp=64,
        hidden=64,
        layers=2,
        heads=4,
        mlp=128,
        vocab=32064,
        lora_r=8,
    ),
}
# rDPO with reference log-probs computed once before training (realign_trl/ref_logps.py): the one-off pass shows in
# the arm's until_first_step_s. An arm that fails records its "error" and the check goes on; `--precompute off`
# leaves it out.
PRECOMPUTE_HOOK = {"precompute_ref_log_probs": True}
ARMS = {
    "sigmoid": ("sigmoid", "off", {}),
    "rdpo": ("rdpo", "on", {}),
    "rdpo_precomputed": ("rdpo", "on", PRECOMPUTE_HOOK),
}


# ------------------------------------------------------------------------------------------ requirements
def _name(req: str) -> str:
    import re

    return re.split(r"[\s;<>=!~\[(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(pinned: bool) -> list[str]:
    """realign's requirements without the host's and the build-only ones: direct specifiers, or (``pinned``) the
    installed versions of their closure."""
    import importlib.metadata as md

    host = {h.replace("_", "-") for h in HOST}
    direct = [
        r
        for r in md.requires("realign") or []
        if "extra ==" not in r and _name(r) not in host and _name(r) not in BUILD_ONLY
    ]
    if not pinned:
        return direct
    seen: dict[str, str] = {}
    todo = [_name(r) for r in direct]
    while todo:
        name = todo.pop()
        if name in seen or name in host or name.startswith(("nvidia-", "cuda-")):
            continue
        try:
            seen[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
        for r in md.requires(name) or []:
            if "extra ==" not in r and 'sys_platform == "win32"' not in r:
                todo.append(_name(r))
    return [f"{n}=={v}" for n, v in sorted(seen.items())]


# ------------------------------------------------------------------------------------------------ worker
def _dataset(n: int, image_size: int, tokenizer, seed: int = 0):
    import numpy as np
    from datasets import Dataset
    from PIL import Image

    rng = np.random.RandomState(seed)

    def answer(k: int) -> str:
        out: list[str] = []
        target = 100 + int(rng.randint(-40, 41))  # 60-140 tokens, as issue 24 asks
        while len(tokenizer(" ".join(out), add_special_tokens=False)["input_ids"]) < target:
            out.append(WORDS[(len(out) + k) % len(WORDS)])
        return " ".join(out)

    img = lambda: Image.fromarray(rng.randint(0, 256, (image_size, image_size, 3), dtype=np.uint8))  # noqa: E731
    msg = lambda role, text: [{"role": role, "content": [{"type": "text", "text": text}]}]  # noqa: E731
    return Dataset.from_dict(
        {
            "images": [[img()] for _ in range(n)],
            "rejected_images": [[img()] for _ in range(n)],
            "prompt": [
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe the image"}]}]
            ]
            * n,
            "chosen": [msg("assistant", answer(i)) for i in range(n)],
            "rejected": [msg("assistant", answer(i + 7)) for i in range(n)],
        }
    )


def worker(arm: str, attn: str, cfg: dict) -> dict:
    import torch
    from peft import LoraConfig
    from transformers import (
        AutoProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        TrainerCallback,
    )

    import realign_trl
    from realign_trl import RDPOConfig

    realign_trl.register()
    from trl import DPOTrainer

    s, device, cuda = SHAPES[cfg["shape"]], cfg["device"], cfg["device"] == "cuda"
    processor = AutoProcessor.from_pretrained(cfg["processor"])
    tok = processor.tokenizer
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=s["v_hidden"],
            intermediate_size=s["v_mlp"],
            num_hidden_layers=s["v_layers"],
            num_attention_heads=s["v_heads"],
            image_size=s["image_size"],
            patch_size=s["patch"],
        ),
        text_config=LlamaConfig(
            vocab_size=s["vocab"],
            hidden_size=s["hidden"],
            intermediate_size=s["mlp"],
            num_hidden_layers=cfg["num_layers"],
            num_attention_heads=s["heads"],
            num_key_value_heads=s["heads"],
            max_position_embeddings=4096,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-2,
    )
    torch.manual_seed(0)
    dtype = torch.bfloat16 if cuda else torch.float32
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, attn_implementation=attn, dtype=dtype)
    lora = LoraConfig(
        r=s["lora_r"],
        lora_alpha=2 * s["lora_r"],
        lora_dropout=0.05,
        task_type="CAUSAL_LM",
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
    )
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    loss_type, sharing, extra = ARMS[arm]
    total = cfg["steps"] + cfg["warmup"]
    args = RDPOConfig(
        output_dir=tempfile.mkdtemp(),
        use_cpu=not cuda,
        bf16=cuda,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=cfg["batch_size"],
        max_steps=total,
        learning_rate=1e-5,
        logging_steps=total,
        loss_type=loss_type,
        max_length=None,
        seed=0,
        disable_tqdm=True,
        gradient_checkpointing=cfg["gradient_checkpointing"],
        rdpo_prefix_sharing=sharing,
        **extra,
    )
    data = _dataset(cfg["batch_size"] * total, s["image_size"], tok)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_init = time.perf_counter()
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=data, processing_class=processor, peft_config=lora, callbacks=[Clock()]
    )  # a precomputing arm runs its one reference pass in here
    init_s = time.perf_counter() - t_init
    # the trainer's own copy of the rows: a precomputing arm added its reference log-probs to it
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(cfg["batch_size"])])
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    steps = (
        [b - a for a, b in zip(stamps[cfg["warmup"] - 1 :], stamps[cfg["warmup"] :])]
        if cfg["warmup"]
        else [b - a for a, b in zip(stamps, stamps[1:])]
    )
    step = statistics.median(steps)
    tokens = int(batch["attention_mask"].sum())
    return {
        "arm": arm,
        "attn": attn,
        "step_time_s": step,
        "step_times_s": steps,
        "tokens_per_batch": tokens,
        "rows_per_batch": int(batch["input_ids"].size(0)),
        "tokens_per_s": tokens / step,
        "init_s": init_s,  # the trainer's construction: where the one-off reference pass of precompute shows
        "train_s": train_s,
        "until_first_step_s": stamps[0] - t0,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }


# ----------------------------------------------------------------------------------------------- driver
def _layers(device: str, shape: str, asked: str) -> int:
    if asked != "auto":
        return int(asked)
    if shape == "tiny":
        return SHAPES["tiny"]["layers"]
    import torch

    gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    return 32 if gib >= 70 else 16 if gib >= 38 else 8


def _eval_throughput(work: Path, device: str, num_images: int, timeout: float) -> dict:
    from realign_data.testing.sample import make_sample_corpus
    from realign_data.testing.tiny_models import build_tiny_llava

    corpus = make_sample_corpus(work / "coco", num_images=max(40, num_images), seed=0)
    model = build_tiny_llava(work / "tiny-llava", image_size=32)
    out = work / "eval"
    cmd = [
        sys.executable,
        "-c",
        "import sys; sys.argv[0] = 'realign-trl'; from realign_trl.cli import main; main()",
        "eval",
        "--model",
        str(model),
        "--coco-root",
        str(corpus),
        "--num-images",
        str(num_images),
        "--min-objects",
        "1",
        "--pope-max-new-tokens",
        "8",
        "--chair-max-new-tokens",
        "32",
        "--batch-size",
        "16",
        "--device",
        device,
        "--out",
        str(out),
        "--quiet",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    data = json.loads((out / "eval_results.json").read_text())
    # one line per generated answer in the run's record files (POPE questions, CHAIR descriptions)
    questions = sum(sum(1 for _ in open(out / name)) for name in data.get("records", {}).values())
    return {
        "model": "tiny LLaVA (build_tiny_llava, 32 px)",
        "num_images": num_images,
        "generations": questions,
        "wall_s": wall,
        "generations_per_s": questions / wall if wall else None,
        "pope_random_f1": data["flat"].get("pope_random_f1"),
    }


def run(a) -> int:
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA device is visible to PyTorch {torch.__version__} (CUDA build "
            f"{torch.version.cuda}); run it on a CUDA machine, or `benchmarks/gpu_check.sh --dry-run` on CPU",
            file=sys.stderr,
        )
        return 2
    start, shape = time.monotonic(), "tiny" if a.tiny else "llava-1.5-7b"
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    from realign_data.testing.tiny_models import build_tiny_llava

    s = SHAPES[shape]
    proc_dir = build_tiny_llava(work / "processor", image_size=s["image_size"], patch_size=s["patch"])
    cfg = {
        "shape": shape,
        "device": a.device,
        "processor": str(proc_dir),
        "steps": a.steps,
        "warmup": a.warmup,
        "batch_size": a.batch_size,
        "num_layers": _layers(a.device, shape, a.num_layers),
        "gradient_checkpointing": a.gradient_checkpointing,
    }
    attns = ["sdpa"]
    if a.device == "cuda":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            attns.append("flash_attention_2")
    plan = [(arm, attn) for attn in attns for arm in ("sigmoid", "rdpo")]
    if a.precompute != "off":
        plan.append(("rdpo_precomputed", "sdpa"))
    arms = []
    for arm, attn in plan:
        left = a.budget_s - (time.monotonic() - start) - 60  # keep a minute for the eval
        if left < 30:
            arms.append({"arm": arm, "attn": attn, "skipped": "time budget spent"})
            continue
        cmd = [sys.executable, str(HERE), "worker", arm, attn, json.dumps(cfg)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
            lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT=")]
            err = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
            arms.append(
                json.loads(lines[-1][7:]) if p.returncode == 0 and lines else {"arm": arm, "attn": attn, "error": err}
            )
        except subprocess.TimeoutExpired:
            arms.append({"arm": arm, "attn": attn, "error": f"timed out after {left:.0f} s"})
        print(json.dumps(arms[-1])[:300], flush=True)
    left = max(30.0, a.budget_s - (time.monotonic() - start))
    ev = _eval_throughput(work, a.device, a.eval_images, left)
    by = {(r["arm"], r["attn"]): r for r in arms if "step_time_s" in r}
    ratios = {}
    for attn in attns:
        base = by.get(("sigmoid", attn))
        for arm in ("rdpo", "rdpo_precomputed"):
            r = by.get((arm, attn))
            if base and r:
                ratios[f"{arm}/{attn}"] = {
                    "step_time_ratio": r["step_time_s"] / base["step_time_s"],
                    "peak_memory_ratio": (
                        r["peak_allocated_gib"] / base["peak_allocated_gib"] if base["peak_allocated_gib"] else None
                    ),
                }
    from realign_data.runtime.jobs import library_versions

    result = {
        "device": torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu",
        "shape": shape,
        "config": cfg | {"attn_implementations": attns},
        "arms": arms,
        "ratios_vs_sigmoid": ratios,
        "eval": ev,
        "wall_s": time.monotonic() - start,
        "versions": library_versions(["torch", "transformers", "trl", "peft", "flash-attn"], python=True),
    }
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"gpu_check: wrote {a.out} ({result['wall_s']:.0f} s on {result['device']})")
    return 0 if by and "error" not in ev else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", default="gpu_check.json")
    r.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    r.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU rehearsal of the same steps)")
    r.add_argument("--num-layers", default="auto", help="language-model layers (auto: 32 on >= 70 GiB cards)")
    r.add_argument("--batch-size", type=int, default=2)
    r.add_argument("--steps", type=int, default=5)
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--gradient-checkpointing", action="store_true")
    r.add_argument(
        "--precompute",
        choices=["auto", "off"],
        default="auto",
        help="the rdpo_precomputed arm (reference log-probs computed once)",
    )
    r.add_argument("--eval-images", type=int, default=50)
    r.add_argument("--budget-s", type=float, default=420, help="stop starting arms after this (the check: < 8 min)")
    w = sub.add_parser("worker")
    w.add_argument("arm", choices=list(ARMS))
    w.add_argument("attn")
    w.add_argument("cfg")
    sub.add_parser("requirements")
    sub.add_parser("direct")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if a.cmd == "worker":
        print("RESULT=" + json.dumps(worker(a.arm, a.attn, json.loads(a.cfg))))
    elif a.cmd in ("requirements", "direct"):
        print("\n".join(requirements(pinned=a.cmd == "requirements")))
    else:
        sys.exit(run(a))


if __name__ == "__main__":
    main()
