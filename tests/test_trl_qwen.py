"""The Qwen-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) end to end: exact prefix sharing under multimodal RoPE,
rDPO through the stock ``DPOTrainer`` and ``realign-trl dpo``, ``realign-trl eval``, and a transformers-filler build.

The exactness test compares the packed 2B-row layout, whose positions come from the model's own
``get_rope_index`` (:func:`realign_trl.prefix_sharing.model_position_ids`), with TRL's own 3B-row scoring on
the same real tiny model, token by token.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from realign_trl import prefix_sharing
from trl_models import RDPO_METRICS, make_rows, make_trainer, tiny_yaml_config

QWEN = ["tiny_qwen2_vl", "tiny_qwen2_5_vl", "tiny_qwen3_vl"]
NEW = ["tiny_qwen2_5_vl", "tiny_qwen3_vl"]
ATOL = 1e-5  # fp32, per token
SUPPORT_DIR = Path(__file__).parent / "support"  # shared helpers: trl_models, openai_server...


def _examples(n: int = 4):
    """Square original images and tall rejected ones: the two image grids (and prompt lengths) differ."""
    rows = make_rows(n, size=(64, 64))
    rows["rejected_images"] = make_rows(n, seed=1, size=(48, 128))["images"]
    return [{k: v[i] for k, v in rows.items()} for i in range(n)]


def _three_row_tokens(model, batch):
    """TRL's scoring, one row per sequence: per-token log-probs of [chosen; rejected; chosen on rejected image]."""
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    out = model(
        **{k: v for k, v in batch.items() if k != "completion_mask"}, labels=labels, fused_lm_head=True, use_cache=False
    )
    mask = batch["completion_mask"][:, 1:].bool()
    log_probs = out.log_probs[:, -mask.size(1) :]
    return [log_probs[i][mask[i]] for i in range(mask.size(0))]


def _packed_tokens(model, batch, positions=None):
    """The packed layout as the trainer runs it: 4D masks, the model's own multimodal positions."""
    masks = prefix_sharing.attention_masks(batch["rdpo_segments"], batch["position_ids"], torch.float32, model.config)
    kwargs = {k: v for k, v in batch.items() if k not in ("rdpo_segments", "rdpo_targets", "attention_mask")}
    kwargs["position_ids"] = prefix_sharing.model_position_ids(model, batch) if positions is None else positions
    out = model(**kwargs, attention_mask=masks, shift_labels=batch["rdpo_targets"], fused_lm_head=True, use_cache=False)
    of = prefix_sharing.target_segments(batch["rdpo_segments"], batch["rdpo_targets"])
    b = batch["input_ids"].size(0) // 2
    chosen = [out.log_probs[i][of[i] == prefix_sharing.CHOSEN] for i in range(b)]
    rejected = [out.log_probs[i][of[i] == prefix_sharing.REJECTED] for i in range(b)]
    visual = [out.log_probs[b + i][of[b + i] == prefix_sharing.CHOSEN] for i in range(b)]
    return chosen + rejected + visual


@pytest.mark.parametrize("family", QWEN)
def test_packed_log_probs_and_gradients_equal_three_rows(family, request, tmp_path):
    trainer = make_trainer(request.getfixturevalue(family), tmp_path, ref=False, bf16=False)
    collator, model = trainer.data_collator, trainer.model
    assert collator.prefix_sharing  # auto: on for the Qwen-VL family
    examples = _examples()
    results = {}
    for share in (False, True):
        collator.prefix_sharing = share
        batch = trainer._prepare_inputs(collator(examples))
        if share:
            grids = batch["image_grid_thw"]
            assert not torch.equal(grids[:4], grids[4:])  # the rejected images have another grid
            positions = prefix_sharing.model_position_ids(model, batch)
            assert positions.shape == (3, 8, batch["input_ids"].size(1))
            assert not torch.equal(positions[1], positions[2])  # really 3-axis (height, width) positions
        model.zero_grad()
        tokens = (_packed_tokens if share else _three_row_tokens)(model, batch)
        sums = torch.stack([t.sum() for t in tokens])
        (sums * torch.tensor([1.0] * 4 + [-0.5] * 8)).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[share] = [t.detach() for t in tokens], sums.detach(), grads, batch["input_ids"].size(0)
    (three, sums3, g3, rows3), (packed, sums2, g2, rows2) = results[False], results[True]
    assert (rows3, rows2) == (12, 8)  # 2B rows instead of 3B
    assert [t.numel() for t in packed] == [t.numel() for t in three] and all(t.numel() > 2 for t in three)
    for a, b in zip(packed, three):
        torch.testing.assert_close(a, b, rtol=0, atol=ATOL)
    torch.testing.assert_close(sums2, sums3, rtol=1e-6, atol=ATOL)  # sequence log-probs: fp32 summation noise
    assert (sums3 < 0).all()
    torch.testing.assert_close(g2, g3, rtol=0, atol=ATOL)
    assert g3.abs().max() > 1e-3


def test_wrong_positions_would_be_caught(tiny_qwen2_5_vl, tmp_path):
    """The exactness test can fail: the collator's plain 1-D positions (no image grid) change the scores."""
    trainer = make_trainer(tiny_qwen2_5_vl, tmp_path, ref=False, bf16=False)
    model = trainer.model
    batch = trainer._prepare_inputs(trainer.data_collator(_examples(2)))
    right = torch.cat(_packed_tokens(model, batch)).detach()
    wrong = torch.cat(_packed_tokens(model, batch, positions=batch["position_ids"])).detach()
    assert (right - wrong).abs().max() > 10 * ATOL  # far outside the tolerance the exactness test allows


def test_prompt_ending_in_an_image_is_refused(tiny_qwen3_vl, tmp_path):
    trainer = make_trainer(tiny_qwen3_vl, tmp_path, ref=False)
    batch = trainer.data_collator(_examples(2))
    segments = batch["rdpo_segments"]
    last = (segments == prefix_sharing.PREFIX).long().cumsum(1).argmax(1)
    batch["mm_token_type_ids"][torch.arange(4), last] = 1
    with pytest.raises(ValueError, match="end in a text token.*rdpo_prefix_sharing=off"):
        prefix_sharing.model_position_ids(trainer.model, batch)


@pytest.mark.parametrize("sharing", ["auto", "off"])
@pytest.mark.parametrize("family", NEW)
def test_rdpo_trains_with_stock_dpo_trainer(family, sharing, request, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="realign_trl"):
        trainer = make_trainer(request.getfixturevalue(family), tmp_path, rdpo_prefix_sharing=sharing, max_steps=2)
    expected = "prefix sharing on, 2B rows" if sharing == "auto" else "prefix sharing off, 3B rows"
    assert expected in caplog.text
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    for log in logs:
        for key in ["loss", *RDPO_METRICS]:
            assert math.isfinite(log[key]), (key, log[key])
    assert any(h["logps/visual_rejected"] != h["logps/chosen"] for h in logs)
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def _env():
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(SUPPORT_DIR), str(SUPPORT_DIR.parent.parent)]),
        TQDM_DISABLE="1",
        OMP_NUM_THREADS="1",
    )


@pytest.mark.parametrize("family", NEW)
def test_realign_trl_dpo_cli(family, request, tmp_path):
    """``realign-trl dpo`` with the example YAML (LoRA on the language model) on the tiny checkpoint."""
    tiny_yaml_config(request.getfixturevalue(family), tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from realign_trl.cli import main; main()",
            "dpo",
            "--config",
            str(tmp_path / "tiny.yaml"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step ")]  # one line per step (quiet)
    assert "Training completed" in proc.stdout and steps and "loss/visual " in steps[0]
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("family", NEW)
def test_realign_trl_eval(family, request, sample_corpus, tmp_path):
    model = str(request.getfixturevalue(family))
    out = tmp_path / "eval"
    cli = [sys.executable, "-c", "import sys; sys.argv[0] = 'realign-trl'; from realign_trl.cli import main; main()"]
    proc = subprocess.run(
        [
            *cli,
            "eval",
            "--model",
            model,
            "--coco-root",
            str(sample_corpus),
            "--num-images",
            "2",
            "--min-objects",
            "1",
            "--pope-max-new-tokens",
            "3",
            "--chair-max-new-tokens",
            "4",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--out",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "eval_results.json").read_text())
    assert data["model"] == model and data["settings"]["backend"]["backend"] == "transformers"
    for key in ("pope_random_f1", "pope_yes_ratio", "chair_s", "chair_i"):
        assert 0.0 <= data["flat"][key] <= 1.0, key


@pytest.mark.parametrize("family", NEW)
def test_batched_generation_matches_one_by_one(family, request, sample_corpus):
    """Left padding with multimodal RoPE: a prompt gets the same greedy answer alone and in a padded batch."""
    from PIL import Image

    from realign_trl.eval.backends import TransformersBackend

    backend = TransformersBackend(str(request.getfixturevalue(family)), device="cpu", batch_size=3)
    single = TransformersBackend(backend.model, backend.processor, batch_size=1)
    images = sorted((Path(sample_corpus) / "train2014").glob("*.jpg"))[:3]
    prompts = ["Is there a cat in the image?", "Please describe this image in detail.", "What is it?"]
    items = [(p, (lambda f=f: Image.open(f).convert("RGB")), None) for p, f in zip(prompts, images)]
    batched = [a for batch in backend.generate(items, 5) for a in batch]
    alone = [a for batch in single.generate(items, 5) for a in batch]
    assert batched == alone and all(text is not None and error is None for text, error in batched)
    backend.close()
    single.close()


@pytest.mark.parametrize("family", NEW)
def test_transformers_filler_build_cli(family, request, tiny_kb, tmp_path):
    """``realign-data build --filler transformers --model <tiny Qwen dir>`` writes pairs filled by that model."""
    from typer.testing import CliRunner

    from realign_data import load_built
    from realign_data.cli import app

    model = str(request.getfixturevalue(family))
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        [
            "build",
            "--index",
            str(tiny_kb),
            "--out",
            str(out),
            "--filler",
            "transformers",
            "--model",
            model,
            "--max-samples",
            "4",
            "--max-new-tokens",
            "6",
            "--batch-size",
            "4",
            "--gate",
            "lexical",
            "--top-k",
            "3",
            "--no-quality-filters",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    ds = load_built(str(out))
    assert len(ds) > 0 and set(ds["filler"]) == {f"transformers:{model}"}
