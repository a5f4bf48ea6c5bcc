"""No traceback for a user's mistake: every case of issue #15's list, run as a real process, exits 2 (usage) or 1
(runtime) with one sentence naming the bad value, and nothing on stderr or stdout says "Traceback"."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from fault_procs import shared_commands


@pytest.fixture(scope="module")
def commands():
    return shared_commands()


@pytest.fixture(scope="module")
def files(tmp_path_factory, sample_corpus):
    d = tmp_path_factory.mktemp("mistakes")
    (d / "a-file").write_text("not a folder")
    for name, text in (("malformed", '{"images": ['), ("shaped", '{"images": "nope", "annotations": {"a": 1}}')):
        root = d / f"{name}-coco"
        (root / "annotations").mkdir(parents=True)
        (root / "train2014").symlink_to(sample_corpus / "train2014")
        (root / "annotations" / "captions_train2014.json").write_text(text)
    (d / "no-captions" / "train2014").mkdir(parents=True)
    (d / "typed.json").write_text(json.dumps({"index": "x", "out": str(d / "typed-out"), "top_k": "eight"}))
    (d / "bad.yaml").write_text("model_name_or_path: [1\n")
    (d / "python.yaml").write_text('model_name_or_path: !!python/object/apply:os.system ["echo hi"]\n')
    (d / "no-dataset.yaml").write_text(f"model_name_or_path: x\ndataset_name: {d / 'missing-dataset'}\n")
    (d / "not-a-model").mkdir()
    (d / "empty.jsonl").write_text("")
    return d


def broken_datasets(built, d) -> None:
    """Copies of a built dataset without rejected_images, without chosen, and with images that do not open."""
    import datasets

    ds = datasets.load_from_disk(str(built))
    ds.remove_columns("rejected_images").save_to_disk(str(d / "no-rejected-images"))
    ds.remove_columns("chosen").save_to_disk(str(d / "no-chosen"))
    garbled = ds.cast_column("images", datasets.List(datasets.Image(decode=False))).map(
        lambda row: {"images": [{"bytes": b"not an image", "path": None} for _ in row["images"]]}
    )
    garbled.save_to_disk(str(d / "bad-images"))


def cases(kb, corpus, d, built):
    """(name, argv, exit code, words the message must contain)."""
    tiny = ["--model", "realign-tiny-clip", "--pretrained", "none", "--num-workers", "0", "--quiet"]
    trl = ["--use_cpu", "true", "--output_dir", str(d / "trl-out")]
    return [
        (
            "index build --out file",
            ["index", "build", "--source", "coco", "--root", corpus, "--out", d / "a-file", *tiny],
            2,
            "is a file, not a directory",
        ),
        ("build --out file", ["build", "--index", kb, "--out", d / "a-file"], 2, "is a file, not a directory"),
        ("merge --out file", ["merge", d / "x", "--out", d / "a-file"], 2, "is a file, not a directory"),
        (
            "malformed COCO",
            ["build", "--index", kb, "--coco-root", d / "malformed-coco", "--out", d / "o1"],
            2,
            "is not valid JSON",
        ),
        (
            "wrongly shaped COCO",
            ["build", "--index", kb, "--coco-root", d / "shaped-coco", "--out", d / "o2"],
            2,
            "is not shaped like COCO's",
        ),
        (
            "IVF4096 on a small corpus",
            [
                "index",
                "build",
                "--source",
                "coco",
                "--root",
                corpus,
                "--out",
                d / "ivf",
                "--index-type",
                "IVF4096,Flat",
                *tiny,
            ],
            2,
            "use --index-type auto",
        ),
        ("wrongly typed --config value", ["build", "--config", d / "typed.json"], 2, "top_k must be an integer"),
        (
            "--base-url not a url",
            [
                "build",
                "--index",
                kb,
                "--out",
                d / "o3",
                "--filler",
                "openai",
                "--model",
                "m",
                "--base-url",
                "not a url",
            ],
            2,
            "is not an http(s) URL",
        ),
        ("sample --num-images 600000", ["sample", "--out", d / "s", "--num-images", "600000"], 2, "at most 599999"),
        (
            "index search --image non-image",
            ["index", "search", "--index", kb, "--image", d / "typed.json"],
            2,
            "is not an image PIL can read",
        ),
        ("inspect --html onto a folder", ["inspect", built, "--html", d], 2, "is a folder"),
        ("dpo malformed YAML", ["realign-trl", "dpo", "--config", d / "bad.yaml", *trl], 2, "is not valid YAML"),
        ("dpo !!python tag", ["realign-trl", "dpo", "--config", d / "python.yaml", *trl], 2, "!!python tag"),
        ("dpo missing dataset", ["realign-trl", "dpo", "--config", d / "no-dataset.yaml", *trl], 2, "does not exist"),
        # issue #28: found before any model is loaded, and on a CPU-only machine not hidden behind TRL's bf16 refusal
        (
            "dpo folder that is no model",
            ["realign-trl", "dpo", "--model_name_or_path", d / "not-a-model", *trl],
            2,
            "holds no model (no config.json)",
        ),
        (
            "dpo without rejected_images",
            [
                "realign-trl",
                "dpo",
                "--model_name_or_path",
                "x",
                "--loss_type",
                "rdpo",
                "--dataset_name",
                d / "no-rejected-images",
                *trl,
            ],
            2,
            "has no rejected_images column",
        ),
        (
            "dpo without chosen",
            ["realign-trl", "dpo", "--model_name_or_path", "x", "--dataset_name", d / "no-chosen", *trl],
            2,
            "has no chosen column",
        ),
        (
            "dpo images that do not open",
            ["realign-trl", "dpo", "--model_name_or_path", "x", "--dataset_name", d / "bad-images", *trl],
            2,
            "the images of row 0 does not open",
        ),
        (
            "dpo mistake, no --use_cpu",
            ["realign-trl", "dpo", "--model_name_or_path", "x", "--beta", "-1", "--output_dir", d / "trl-out"],
            2,
            "beta=-1.0 must be > 0",
        ),
        (
            "empty seeds file",
            ["build", "--index", kb, "--seeds", d / "empty.jsonl", "--out", d / "o9"],
            2,
            "empty.jsonl' is empty",
        ),
        (
            "--model a missing path",
            ["build", "--index", kb, "--filler", "transformers", "--model", d / "nonexistent", "--out", d / "o10"],
            2,
            "is a local path that does not exist",
        ),
        (
            "--index-type not a factory",
            ["index", "build", "--source", "coco", "--root", corpus, "--out", d / "lsh", "--index-type", "LSH", *tiny],
            2,
            "--index-type 'LSH' is not a valid FAISS factory string (e.g.",
        ),
        (
            "--index-type too wide",
            [
                "index",
                "build",
                "--source",
                "coco",
                "--root",
                corpus,
                "--out",
                d / "pca",
                "--index-type",
                "PCA6720,Flat",
                *tiny,
            ],
            2,
            "cannot be built on 40 vectors of dimension 32 (PCA matrix cannot output 6720",
        ),
        (
            "--prompt ''",
            ["build", "--index", kb, "--prompt", "", "--out", d / "o11"],
            2,
            "--prompt must be a non-empty instruction",
        ),
        # misleading or missing messages, and range checks
        (
            "COCO root without captions",
            ["build", "--index", kb, "--coco-root", d / "no-captions", "--out", d / "o4"],
            2,
            "has no annotations/captions",
        ),
        ("inspect -n -1", ["inspect", built, "-n", "-1"], 2, "greater than or equal to 1"),
        (
            "index build --min-side -1",
            ["index", "build", "--source", "coco", "--root", corpus, "--out", d / "ms", "--min-side", "-1", *tiny],
            2,
            "greater than or equal to 1",
        ),
        (
            "index search --max-similarity -1",
            ["index", "search", "--index", kb, "--text", "a dog", "--max-similarity", "-1"],
            2,
            "greater than or equal",
        ),
        (
            "build --max-similarity -1",
            ["build", "--index", kb, "--out", d / "o5", "--max-similarity", "-1"],
            2,
            "max-similarity must be in (0, 1]",
        ),
        (
            "dpo negative beta",
            ["realign-trl", "dpo", "--model_name_or_path", "x", "--beta", "-1", *trl],
            2,
            "beta=-1.0 must be > 0",
        ),
        (
            "dpo negative rDPO weight",
            [
                "realign-trl",
                "dpo",
                "--model_name_or_path",
                "x",
                "--loss_type",
                "rdpo",
                "--rdpo_visual_weight",
                "-1",
                *trl,
            ],
            2,
            "rdpo_visual_weight=-1.0 must be >= 0",
        ),
        (
            "a key as --api-key-env",
            [
                "build",
                "--index",
                kb,
                "--out",
                d / "o6",
                "--filler",
                "openai",
                "--model",
                "m",
                "--api-key-env",
                "sk-abc123def456ghi789",
            ],
            2,
            "not the key",
        ),
        (
            "a build that writes 0 pairs",
            [
                "build",
                "--index",
                kb,
                "--out",
                d / "o7",
                "--gate",
                "lexical",
                "--max-samples",
                "4",
                "--max-similarity",
                "0.0001",
                "--quiet",
            ],
            1,
            "wrote 0 pairs",
        ),
        (
            "offline weights: build's own flag",
            ["build", "--index", d / "new-kb", "--coco-root", corpus, "--out", d / "o8", "--quiet"],
            2,
            "use --kb-pretrained none",
        ),
        (
            "offline weights: index build's flag",
            [
                "index",
                "build",
                "--source",
                "coco",
                "--root",
                corpus,
                "--out",
                d / "offline",
                "--model",
                "ViT-B-32",
                "--quiet",
            ],
            2,
            "use --pretrained none",
        ),
    ] + (
        []
        if torch_cuda()
        else [
            (
                "--device cuda without a GPU",
                ["index", "build", "--source", "coco", "--root", corpus, "--out", d / "gpu", "--device", "cuda", *tiny],
                2,
                "CUDA is not available",
            ),
        ]
    )


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_no_user_mistake_prints_a_traceback(commands, files, tiny_kb, sample_corpus, tmp_path):
    from realign_data import BuildConfig, build

    built = build(
        BuildConfig(
            index=str(tiny_kb), out=str(tmp_path / "built"), gate="lexical", top_k=2, max_samples=4, progress=False
        )
    ).out
    broken_datasets(built, files)
    todo = cases(str(tiny_kb), str(sample_corpus), files, built)
    results = []
    for i in range(0, len(todo), 4):  # a few at a time: the machine has few cores
        results += commands.run_together([args for _, args, _, _ in todo[i : i + 4]])
    bad = []
    for (name, _, code, words), (got, output) in zip(todo, results):
        if got != code or "Traceback" in output or words not in output:
            bad.append(f"{name}: exit {got} (want {code}); {output.strip()[-600:]}")
    assert not bad, "\n\n".join(bad)
    assert not (files / "new-kb").exists()  # the failed on-the-fly index left no stub in the way of the retry
