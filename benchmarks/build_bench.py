"""Builder throughput and memory: annotation-filler build on the synthetic sample corpus.

Builds a tiny-open_clip knowledge base over the sample corpus once, then runs the builder in fresh
subprocesses at 1x and 4x the number of seeds (COCO-caption seeds of 1x and 4x sample corpora), reading each
subprocess's peak RSS (``ru_maxrss``). Memory must not grow with the number of seeds: the ratio should stay
near 1. Reports pairs/s of the build stage (knowledge base excluded).

``--kinds`` sweeps the visual-negative kinds instead (``retrieval,region-noise,crop,noise``): the same
seeds built once per kind, each in a fresh subprocess, interleaved over ``--repeats`` rounds (best of the
rounds reported), with the throughput of each kind as a ratio to ``retrieval`` measured in the same run.

    python benchmarks/build_bench.py --json build_bench.json [--images 200]
    python benchmarks/build_bench.py --kinds retrieval,region-noise,crop,noise --repeats 3 --json kinds.json
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
from realign_data import BuildConfig, build
cfg = BuildConfig(**json.loads(sys.argv[1]))
t = time.time()
res = build(cfg)
print(json.dumps({"pairs": res.pairs_written, "seeds": res.seeds_read, "seconds": time.time() - t,
                  "build_seconds": res.report["throughput"]["seconds_building"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_kb(root: Path, images: int) -> Path:
    from realign_data.kb.corpus import open_source
    from realign_data.kb.knowledge_base_build import build_knowledge_base
    from realign_data.testing.sample import make_sample_corpus
    from realign_data.testing.tiny_models import build_tiny_open_clip, register_tiny_open_clip

    corpus = make_sample_corpus(root / f"coco{images}", num_images=images, seed=0)
    ckpt = build_tiny_open_clip(root / "tiny_clip.safetensors")
    kb = root / f"kb{images}"
    build_knowledge_base(
        open_source("coco", corpus),
        kb,
        model=register_tiny_open_clip(),
        pretrained=str(ckpt),
        num_workers=0,
        progress=False,
    )
    return kb


def run(kb: Path, out: Path, **extra) -> dict:
    cfg = {"index": str(kb), "out": str(out), "gate": "lexical", "progress": False, **extra}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def sweep_kinds(kinds: list[str], images: int, repeats: int) -> dict:
    """Build the same seeds once per kind and round; best pairs/s of the build stage per kind."""
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        kb = make_kb(root, images)
        for r in range(repeats):
            for kind in kinds:
                res = run(kb, root / f"out-{kind}-{r}", image_negative=kind)
                pps = res["pairs"] / res["build_seconds"]
                if kind not in best or pps > best[kind]["pairs_per_second"]:
                    best[kind] = {
                        "pairs": res["pairs"],
                        "seeds": res["seeds"],
                        "pairs_per_second": round(pps, 1),
                        "peak_rss_mb": round(res["peak_rss_mb"], 1),
                    }
    base = best.get("retrieval", next(iter(best.values())))["pairs_per_second"]
    for v in best.values():
        v["throughput_vs_retrieval"] = round(v["pairs_per_second"] / base, 3)
    return {"images": images, "repeats": repeats, "kinds": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="1x corpus size (seeds = images)")
    ap.add_argument(
        "--kinds",
        help="comma-separated visual-negative kinds to sweep (e.g. "
        "retrieval,region-noise,crop,noise) instead of the 1x/4x memory run",
    )
    ap.add_argument("--repeats", type=int, default=3, help="--kinds: rounds, best of them reported")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    if args.kinds:
        figures = sweep_kinds([k.strip() for k in args.kinds.split(",") if k.strip()], args.images, args.repeats)
        print(f"{'kind':14}{'seeds':>7}{'pairs':>7}{'pairs/s':>10}{'vs retrieval':>14}{'peak RSS MB':>13}")
        for kind, v in figures["kinds"].items():
            print(
                f"{kind:14}{v['seeds']:>7}{v['pairs']:>7}{v['pairs_per_second']:>10}"
                f"{v['throughput_vs_retrieval']:>14}{v['peak_rss_mb']:>13}"
            )
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        small = run(make_kb(root, args.images), root / "out1")
        large = run(make_kb(root, 4 * args.images), root / "out4")
    figures = {
        "seeds_1x": small["seeds"],
        "seeds_4x": large["seeds"],
        "pairs_1x": small["pairs"],
        "pairs_4x": large["pairs"],
        "pairs_per_second_1x": round(small["pairs"] / small["build_seconds"], 1),
        "pairs_per_second_4x": round(large["pairs"] / large["build_seconds"], 1),
        "peak_rss_mb_1x": round(small["peak_rss_mb"], 1),
        "peak_rss_mb_4x": round(large["peak_rss_mb"], 1),
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
