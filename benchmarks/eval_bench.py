"""Evaluation harness throughput vs the same model's bare batched ``generate`` on the same inputs.

``realign_trl.eval.evaluate`` (what ``realign-trl eval`` and the training callback run) does, per batch: decode the
images, apply the chat template, run the processor, generate, decode the tokens, parse and score. The baseline
gets the very same batches already tokenised and processed (built before the clock starts) and only calls
``model.generate`` with the same greedy settings. Both generate the same distinct prompts (the POPE questions
the three splits share are generated once by the harness, so the baseline gets that list too) for the same
held-out images of the synthetic sample corpus.

    efficiency = (images/s of evaluate) / (images/s of bare generate)      goal >= 0.8

Reported for POPE alone (short answers: the harness's share is largest), CHAIR alone, and both (the default
``realign-trl eval --bench pope,chair``). Arms are interleaved ``--repeats`` times; the best run of each is kept.
The model is a tiny random LLaVA (it never stops early, so every prompt runs to its token bound in both arms).
``serial_components_both`` times the harness's own work (preparing, decoding, scoring) without overlap, against
the generation time: a figure far less sensitive to other jobs on the machine than the throughput ratio.

    python benchmarks/eval_bench.py --json eval_bench.json

``--endpoint`` measures the endpoint client instead (``OpenAIBackend``, what ``realign-trl eval --base-url`` runs)
against the local server of ``tests/support/openai_server.py`` started in its own process with *variable* latency: each
request sleeps a lognormal draw (median ``--median`` 0.2 s, 99th percentile ``--p99`` 2 s; seeded, so both arms
see the same latency sequence in arrival order). The work is the POPE and CHAIR prompts of sample images (each
request carries its image), answered through ``generate_answers`` with the resumable answer store, as in a real run.

    ideal      = the time a zero-overhead client keeping ``--concurrency`` requests in flight would take with the
                 latencies the server actually slept: each request starts, in arrival order, on the first slot
                 that frees (greedy list scheduling; >= max(sum / concurrency, longest))
    efficiency = ideal / measured wall-clock time                                      goal >= 0.9 at 32

Two arms, the same latencies: ``window`` (today's client: a bounded window, a new request as soon as one finishes)
and ``chunked`` (the former client: chunks of 4 x concurrency with a barrier after each).

    python benchmarks/eval_bench.py --endpoint --images 48 --concurrency 32 --json eval_bench_endpoint.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def bare_generate(backend, suite, bounds: dict) -> float:
    """Seconds for ``model.generate`` alone over the pre-processed batches of the suite's benchmarks."""
    import torch

    from realign_trl.eval.backends import _greedy_config
    from realign_trl.eval.runner import work_items

    work = []
    for bench, keys in work_items(suite).items():
        items = [(prompt, (lambda i=image_id: suite.image(i)), None) for image_id, prompt in keys]
        config = _greedy_config(backend.model, backend.processor, bounds[bench])
        work += [
            (backend._prepare(items[i : i + backend.batch_size]), config)
            for i in range(0, len(items), backend.batch_size)
        ]
    start = time.perf_counter()
    with torch.inference_mode():
        for inputs, config in work:
            backend.model.generate(**inputs, generation_config=config)
    return time.perf_counter() - start


def components(backend, suite, bounds: dict) -> dict:
    """The harness's own work, timed serially: preparing batches, decoding tokens, scoring (vs generating)."""
    import torch

    from realign_trl.eval.backends import _greedy_config
    from realign_trl.eval.runner import generate_answers, score, work_items

    suite._decoded.clear()
    times = {"prepare_s": 0.0, "generate_s": 0.0, "decode_s": 0.0, "score_s": 0.0}
    for bench, keys in work_items(suite).items():
        items = [(prompt, (lambda i=image_id: suite.image(i)), None) for image_id, prompt in keys]
        config = _greedy_config(backend.model, backend.processor, bounds[bench])
        for i in range(0, len(items), backend.batch_size):
            t = time.perf_counter()
            inputs = backend._prepare(items[i : i + backend.batch_size])
            times["prepare_s"] += time.perf_counter() - t
            t = time.perf_counter()
            with torch.inference_mode():
                out = backend.model.generate(**inputs, generation_config=config)
            times["generate_s"] += time.perf_counter() - t
            t = time.perf_counter()
            backend.processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            times["decode_s"] += time.perf_counter() - t
    answers = generate_answers(backend, suite, pope_max_new_tokens=1, chair_max_new_tokens=1)
    t = time.perf_counter()
    score(suite, answers)
    times["score_s"] = time.perf_counter() - t
    own = times["prepare_s"] + times["decode_s"] + times["score_s"]
    times["harness_share"] = own / (own + times["generate_s"])
    return {k: round(v, 4) for k, v in times.items()}


def harness(backend, suite, **bounds) -> float:
    from realign_trl.eval import evaluate

    suite._decoded.clear()  # images are decoded inside the timed run, as in a fresh evaluation
    start = time.perf_counter()
    evaluate(backend, suite, **bounds)
    return time.perf_counter() - start


def ideal_seconds(latencies: list[float], concurrency: int) -> float:
    """Makespan of the latencies started in order, each on the first of ``concurrency`` slots that frees."""
    import heapq

    slots = [0.0] * concurrency
    for latency in latencies:
        heapq.heappush(slots, heapq.heappop(slots) + latency)
    return max(slots)


class Chunked:
    """The former endpoint client: chunks of 4 x concurrency, each waited for in full (the baseline arm)."""

    kind = "openai"

    def __init__(self, backend) -> None:
        self.backend = backend

    def generate(self, items, max_new_tokens):
        client, step = self.backend._client(), 4 * self.backend.options["concurrency"]
        for start in range(0, len(items), step):
            results = client.generate([(*item, max_new_tokens) for item in items[start : start + step]])
            yield [(r.text, None) if r.error is None else (None, r.error) for r in results]

    def describe(self):
        return self.backend.describe()


def endpoint(args) -> dict:
    """Both arms of ``--endpoint`` (see the module docstring), each against a fresh server with the same seed."""
    import subprocess
    import sys
    import urllib.request

    from realign_data.testing.sample import make_sample_corpus
    from realign_trl.eval import EvalSuite
    from realign_trl.eval.answer_store import AnswerStore, answers_fingerprint
    from realign_trl.eval.backends import OpenAIBackend
    from realign_trl.eval.runner import generate_answers, work_items

    server_py = Path(__file__).resolve().parents[1] / "tests" / "openai_server.py"
    figures: dict = {"concurrency": args.concurrency, "median_s": args.median, "p99_s": args.p99}
    with tempfile.TemporaryDirectory() as d:
        corpus = make_sample_corpus(
            Path(d) / "coco", num_images=args.images, seed=0, width=args.image_size, height=args.image_size
        )
        suite = EvalSuite.from_coco(corpus, num_images=args.images, min_objects=1)
        figures["requests"] = sum(len(k) for k in work_items(suite).values())
        for arm in args.arms.split(","):
            proc = subprocess.Popen(
                [sys.executable, str(server_py), "--lognormal", str(args.median), str(args.p99), str(args.seed)],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                base_url = proc.stdout.readline().strip()
                backend = OpenAIBackend("bench", base_url=base_url, concurrency=args.concurrency, max_retries=0)
                runner = backend if arm == "window" else Chunked(backend)
                settings = {
                    "backend": backend.describe(),
                    "suite": suite.describe(),
                    "generation": {"pope_max_new_tokens": 8, "chair_max_new_tokens": 8, "do_sample": False},
                }
                store = AnswerStore(Path(d) / f"out-{arm}", answers_fingerprint(settings), suite)
                backend._client()  # the client (threads, connection pool) exists before the clock starts
                start = time.perf_counter()
                answers = generate_answers(runner, suite, pope_max_new_tokens=8, chair_max_new_tokens=8, store=store)
                measured = time.perf_counter() - start
                store.close()
                backend.close()
                with urllib.request.urlopen(f"{base_url}/stats") as resp:
                    latencies = json.loads(resp.read())["latencies"]
            finally:
                proc.terminate()
                proc.wait()
            ideal = ideal_seconds(latencies, args.concurrency)
            bound = max(sum(latencies) / args.concurrency, max(latencies))
            figures[arm] = {
                "measured_s": round(measured, 3),
                "ideal_s": round(ideal, 3),
                "lower_bound_s": round(bound, 3),
                "efficiency": round(ideal / measured, 3),
                "failed": sum(a[1] is not None for a in answers.values()),
                "latency_sum_s": round(sum(latencies), 2),
                "latency_max_s": round(max(latencies), 3),
                "latency_median_s": round(sorted(latencies)[len(latencies) // 2], 3),
            }
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", action="store_true", help="measure the endpoint client (see the docstring)")
    ap.add_argument("--concurrency", type=int, default=32, help="--endpoint: requests in flight")
    ap.add_argument("--median", type=float, default=0.2, help="--endpoint: median latency (s)")
    ap.add_argument("--p99", type=float, default=2.0, help="--endpoint: 99th percentile latency (s)")
    ap.add_argument("--seed", type=int, default=0, help="--endpoint: seed of the latencies")
    ap.add_argument("--arms", default="window,chunked", help="--endpoint: window, chunked or both")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=64, help="square sample images and model input size")
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--num-layers", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--pope-max-new-tokens", type=int, default=32)
    ap.add_argument("--chair-max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.endpoint:
        figures = endpoint(args)
        for k, v in figures.items():
            print(f"{k:14} {v}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from realign_data.testing.sample import make_sample_corpus
    from realign_data.testing.tiny_models import build_tiny_llava
    from realign_trl.eval import EvalSuite
    from realign_trl.eval.backends import TransformersBackend
    from realign_trl.eval.runner import work_items

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        corpus = make_sample_corpus(
            root / "coco", num_images=args.images, seed=0, width=args.image_size, height=args.image_size
        )
        model_dir = build_tiny_llava(
            root / "llava", image_size=args.image_size, hidden_size=args.hidden_size, num_layers=args.num_layers
        )
        t = time.perf_counter()
        suite = EvalSuite.from_coco(corpus, num_images=args.images, min_objects=1)
        suite_s = time.perf_counter() - t
        t = time.perf_counter()
        backend = TransformersBackend(str(model_dir), device="cpu", batch_size=args.batch_size)
        load_s = time.perf_counter() - t
        params = sum(p.numel() for p in backend.model.parameters())
        bounds = {"pope": args.pope_max_new_tokens, "chair": args.chair_max_new_tokens}
        arms = {"pope": suite.select(list(suite.images)), "chair": suite.select(list(suite.images)), "both": suite}
        arms["pope"].benches, arms["chair"].benches = ("pope",), ("chair",)
        best = {arm: {"harness": float("inf"), "bare": float("inf")} for arm in arms}
        runs: dict[str, list] = {arm: [] for arm in arms}
        harness(backend, arms["pope"], pope_max_new_tokens=2, chair_max_new_tokens=2)  # warm-up
        for _ in range(args.repeats):
            for arm, s in arms.items():
                h = harness(backend, s, pope_max_new_tokens=bounds["pope"], chair_max_new_tokens=bounds["chair"])
                b = bare_generate(backend, s, bounds)
                runs[arm].append({"harness_s": round(h, 3), "bare_s": round(b, 3)})
                best[arm]["harness"] = min(best[arm]["harness"], h)
                best[arm]["bare"] = min(best[arm]["bare"], b)
        parts = components(backend, suite, bounds)
        backend.close()

    n = args.images
    figures = {
        "images": n,
        "model_parameters": params,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "pope_max_new_tokens": bounds["pope"],
        "chair_max_new_tokens": bounds["chair"],
        "torch_threads": torch.get_num_threads(),
        "distinct_prompts": {b: len(k) for b, k in work_items(suite).items()},
        "suite_build_s": round(suite_s, 3),
        "model_load_s": round(load_s, 3),
    }
    for arm, suffix in (("pope", "_pope"), ("chair", "_chair"), ("both", "")):
        h, b = best[arm]["harness"], best[arm]["bare"]
        figures[f"images_per_s{suffix}"] = round(n / h, 2)
        figures[f"bare_images_per_s{suffix}"] = round(n / b, 2)
        figures[f"efficiency{suffix}"] = round(b / h, 3)
    figures["serial_components_both"] = parts
    figures["runs"] = runs
    for k, v in figures.items():
        if k != "runs":
            print(f"{k:26} {v}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
