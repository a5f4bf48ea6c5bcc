"""OpenAI-compatible filler throughput inside the builder, against a local server with fixed latency.

The local test server (``tests/support/openai_server.py``, a real HTTP server on 127.0.0.1, run in its own process as a
real endpoint would be, so it does not compete with the builder for the GIL) answers every chat completion
after ``--latency`` seconds. With ``--concurrency C`` requests in flight the ideal request rate
is ``C / latency``; the benchmark runs a real build (sample corpus, tiny open_clip knowledge base, the
``openai`` filler) and reports the requests served per second of the build's fill stage as a fraction of
that ideal (target >= 0.8 at concurrency 16).

    python benchmarks/openai_filler_bench.py --json openai_bench.json [--latency 0.2 --concurrency 16]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SERVER = Path(__file__).resolve().parent.parent / "tests" / "openai_server.py"


@contextlib.contextmanager
def server_process(latency: float):
    """The local OpenAI-compatible server in a subprocess; yields its base URL."""
    proc = subprocess.Popen([sys.executable, str(SERVER), str(latency)], stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=10) as resp:
        return json.loads(resp.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from realign_data import BuildConfig, build
    from realign_data.kb.corpus import open_source
    from realign_data.kb.knowledge_base_build import build_knowledge_base
    from realign_data.testing.sample import make_sample_corpus
    from realign_data.testing.tiny_models import build_tiny_open_clip, register_tiny_open_clip

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        corpus = make_sample_corpus(root / "coco", num_images=args.images, seed=0)
        ckpt = build_tiny_open_clip(root / "clip.safetensors")
        build_knowledge_base(
            open_source("coco", corpus),
            root / "kb",
            model=register_tiny_open_clip(),
            pretrained=str(ckpt),
            num_workers=0,
            progress=False,
        )
        with server_process(args.latency) as base_url:
            cfg = BuildConfig(
                index=str(root / "kb"),
                out=str(root / "out"),
                filler="openai",
                model="bench",
                base_url=base_url,
                concurrency=args.concurrency,
                gate="lexical",
                progress=False,
                chunk_size=256,
            )
            t = time.time()
            res = build(cfg)
            wall = time.time() - t
            stats = server_stats(base_url)
            requests, peak = stats["requests"], stats["max_in_flight"]
    building = res.report["throughput"]["seconds_building"]
    ideal = args.concurrency / args.latency
    figures = {
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "requests": requests,
        "pairs": res.pairs_written,
        "seconds_building": round(building, 3),
        "seconds_total": round(wall, 3),
        "throughput_rps": round(requests / building, 2),
        "ideal_rps": round(ideal, 2),
        "efficiency": round(requests / building / ideal, 3),
        "max_in_flight": peak,
    }
    for k, v in figures.items():
        print(f"{k:18} {v}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
