"""Builder throughput and memory: annotation-filler build on the synthetic sample corpus.

Builds a tiny-open_clip knowledge base over the sample corpus once, then runs the builder in fresh
subprocesses at 1x and 4x the number of seeds (COCO-caption seeds of 1x and 4x sample corpora), reading each
subprocess's peak RSS (``ru_maxrss``). Memory must not grow with the number of seeds: the ratio should stay
near 1. Reports pairs/s of the build stage (knowledge base excluded).

    python benchmarks/build_bench.py --json build_bench.json [--images 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from realign_data.builder import BuildConfig, build
cfg = BuildConfig(**json.loads(sys.argv[1]))
t = time.time()
res = build(cfg)
print(json.dumps({"pairs": res.pairs_written, "seeds": res.seeds_read, "seconds": time.time() - t,
                  "build_seconds": res.report["throughput"]["seconds_building"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_kb(root: Path, images: int) -> Path:
    from realign_data.corpus import open_source
    from realign_data.knowledge_base import build_knowledge_base
    from realign_data.sample import make_sample_corpus
    from realign_data.tiny_models import build_tiny_open_clip, register_tiny_open_clip

    corpus = make_sample_corpus(root / f"coco{images}", num_images=images, seed=0)
    ckpt = build_tiny_open_clip(root / "tiny_clip.safetensors")
    kb = root / f"kb{images}"
    build_knowledge_base(open_source("coco", corpus), kb, model=register_tiny_open_clip(), pretrained=str(ckpt),
                         num_workers=0, progress=False)
    return kb


def run(kb: Path, out: Path) -> dict:
    cfg = {"index": str(kb), "out": str(out), "gate": "lexical", "progress": False}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="1x corpus size (seeds = images)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        small = run(make_kb(root, args.images), root / "out1")
        large = run(make_kb(root, 4 * args.images), root / "out4")
    figures = {
        "seeds_1x": small["seeds"], "seeds_4x": large["seeds"],
        "pairs_1x": small["pairs"], "pairs_4x": large["pairs"],
        "pairs_per_second_1x": round(small["pairs"] / small["build_seconds"], 1),
        "pairs_per_second_4x": round(large["pairs"] / large["build_seconds"], 1),
        "peak_rss_mb_1x": round(small["peak_rss_mb"], 1), "peak_rss_mb_4x": round(large["peak_rss_mb"], 1),
        "rss_ratio_4x_over_1x": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
    }
    print(f"{'':22}{'1x':>10}{'4x':>10}")
    for key in ("seeds", "pairs", "pairs_per_second", "peak_rss_mb"):
        print(f"{key:22}{figures[key + '_1x']:>10}{figures[key + '_4x']:>10}")
    print(f"peak RSS ratio 4x/1x: {figures['rss_ratio_4x_over_1x']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
