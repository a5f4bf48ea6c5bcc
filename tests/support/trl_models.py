"""Shared helpers for the realign_trl tests: tiny vision preference datasets and trainer factories."""

from __future__ import annotations

import numpy as np

QUESTIONS = ["what is in the image", "describe the picture", "what colour is the cat", "how many dogs are there"]
CHOSEN = ["a red cat on a table", "two dogs in a park", "a blue car near a tree", "a small bird on a wall"]
REJECTED = ["a green dog under a chair", "three cats on a bed", "a red bus near a house", "a big horse in a field"]


def _image(rng, size=(32, 32)):
    from PIL import Image

    return Image.fromarray(rng.randint(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def make_rows(n: int = 4, seed: int = 0, same_images: bool = False, size=(32, 32)) -> dict:
    """Columns of a TRL vision preference dataset plus ``rejected_images``."""
    rng = np.random.RandomState(seed)
    images = [_image(rng, size) for _ in range(n)]
    rejected_images = images if same_images else [_image(rng, size) for _ in range(n)]
    return {
        "images": [[im] for im in images],
        "rejected_images": [[im] for im in rejected_images],
        "prompt": [
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTIONS[i % 4]}]}]
            for i in range(n)
        ],
        "chosen": [[{"role": "assistant", "content": [{"type": "text", "text": CHOSEN[i % 4]}]}] for i in range(n)],
        "rejected": [[{"role": "assistant", "content": [{"type": "text", "text": REJECTED[i % 4]}]}] for i in range(n)],
    }


def make_dataset(n: int = 4, seed: int = 0, same_images: bool = False, rejected_column: bool = True, size=(32, 32)):
    from datasets import Dataset

    rows = make_rows(n, seed, same_images, size)
    if not rejected_column:
        rows.pop("rejected_images")
    return Dataset.from_dict(rows)


def tiny_args(tmp_path, **overrides):
    """An ``RDPOConfig`` small enough for CPU tests."""
    from realign_trl import RDPOConfig

    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        max_steps=3,
        learning_rate=1e-2,
        logging_steps=1,
        loss_type="rdpo",
        max_length=None,
        seed=0,
        dataloader_num_workers=0,
        activation_checkpointing=False,  # transformers 5's name; `gradient_checkpointing` is a deprecated alias
    )
    kwargs.update(overrides)
    if "gradient_checkpointing" in overrides:
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")
    return RDPOConfig(**kwargs)


def load(path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path)


RDPO_METRICS = [
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "rewards/visual_rejected",
    "rewards/visual_margins",
    "rewards/visual_accuracies",
    "logps/visual_rejected",
    "loss/text",
    "loss/visual",
]


def make_trainer(model_path, tmp_path, *, dataset=None, ref=True, peft_config=None, **overrides):
    """A stock ``trl.DPOTrainer`` (patched by ``import realign_trl``) on a saved tiny model."""
    from trl import DPOTrainer

    import realign_trl  # noqa: F401

    model, processor = load(model_path)
    ref_model = load(model_path)[0] if ref else None
    return DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=tiny_args(tmp_path, **overrides),
        train_dataset=dataset if dataset is not None else make_dataset(4),
        processing_class=processor,
        peft_config=peft_config,
    )


def tiny_yaml_config(model_path, tmp_path):
    """``examples/rdpo_tiny.yaml`` filled in: the tiny model, a 4-row parquet dataset, ``tmp_path/out``."""
    from pathlib import Path

    data = tmp_path / "data"
    data.mkdir()
    make_dataset(4).to_parquet(str(data / "train.parquet"))
    config = (Path(__file__).parents[2] / "examples" / "rdpo_tiny.yaml").read_text()
    config = (
        config.replace("TINY_MODEL_PATH", str(model_path))
        .replace("TINY_DATASET_PATH", str(data))
        .replace("TINY_OUTPUT_DIR", str(tmp_path / "out"))
    )
    (tmp_path / "tiny.yaml").write_text(config)
    return tmp_path / "tiny.yaml"


def run_torchrun(script, env, nproc: int = 2, timeout: float = 300):
    """Launch ``script`` on ``nproc`` CPU processes with torchrun (what ``accelerate launch --multi_gpu`` runs; on
    CPU the Trainer picks the gloo backend), on a free local port."""
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        str(script),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
