"""open_clip Encoder: embeddings, DataLoader pipeline with bad images, clear weight errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from realign_data.kb.corpus import FolderSource
from realign_data.kb.encoder import Encoder, EncoderError


def make_bad_folder(root):
    """Good images plus a truncated JPEG, a zero-byte file, a text file named .jpg and a 1x1 image."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(6):
        Image.new("RGB", (40 + i, 30), (40 * i, 120, 255 - 40 * i)).save(root / f"good_{i}.jpg")
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not an image")
    Image.new("RGB", (1, 1), "white").save(root / "pixel.png")
    return root


@pytest.fixture(scope="module")
def encoder(tiny_open_clip):
    name, ckpt = tiny_open_clip
    return Encoder(name, str(ckpt))


def test_image_and_text_embeddings_are_normalised_float32(encoder):
    imgs = [Image.new("RGB", (50, 40), c) for c in ("red", "green", "blue")]
    e = encoder.embed_images(imgs, batch_size=2)
    assert e.shape == (3, 32) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    t = encoder.embed_texts(["a red apple", "two dogs"])
    assert t.shape == (2, 32) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert encoder.identity["checkpoint_sha256"] and encoder.identity["dim"] == 32
    # batch composition does not change results
    np.testing.assert_allclose(encoder.embed_images(imgs[:1]), e[:1], atol=1e-5)


def test_dataloader_pipeline_skips_and_lists_bad_files(encoder, tmp_path):
    items = list(FolderSource(make_bad_folder(tmp_path / "bad")))
    batches = list(encoder.iter_embed(items, batch_size=3, num_workers=2))
    done = [items[i].id for b in batches for i in b.indices]
    skipped = {items[i].id: reason for b in batches for i, reason in b.skipped}
    assert sorted(done) == [f"good_{i}.jpg" for i in range(6)]
    assert set(skipped) == {"truncated.jpg", "empty.jpg", "text.jpg", "pixel.png"}
    assert "too small" in skipped["pixel.png"] and "unreadable" in skipped["empty.jpg"]
    assert all(b.embeddings.shape == (len(b.indices), 32) for b in batches)
    assert batches[0].sizes[0] == (40, 30)
    # same vectors with workers and without
    ref = encoder.embed_images([items[i].load() for i in batches[0].indices])
    np.testing.assert_allclose(batches[0].embeddings, ref, atol=1e-5)
    # min_side=1 embeds the 1-pixel image
    kept = [items[i].id for b in encoder.iter_embed(items, batch_size=4, min_side=1) for i in b.indices]
    assert "pixel.png" in kept


def test_pretrained_none_is_random_but_reproducible(tiny_open_clip):
    name, _ = tiny_open_clip
    import torch

    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = Encoder(name, "none"), Encoder(name, None)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    assert a.pretrained == b.pretrained == "none" and a.checkpoint_sha256 is None
    img = [Image.new("RGB", (32, 32), "orange")]
    np.testing.assert_array_equal(a.embed_images(img), b.embed_images(img))


def test_clear_errors_for_missing_weights_and_bad_names(tmp_path, tiny_open_clip):
    with pytest.raises(EncoderError, match=r"weights 'laion2b_s34b_b79k' (for open_clip model|of) 'ViT-B-32'") as e:
        Encoder("ViT-B-32", "laion2b_s34b_b79k")  # offline: the weights cannot be fetched
    assert e.value.weights and "--pretrained none" in e.value.advice()  # each command names its own option
    assert "use --kb-pretrained none for random weights" in e.value.advice("--kb-pretrained")
    with pytest.raises(EncoderError, match="unknown open_clip model 'NoSuchNet'"):
        Encoder("NoSuchNet", "none")
    with pytest.raises(EncoderError, match="does not exist"):
        Encoder("realign-tiny-clip", str(tmp_path / "missing.safetensors"))
    with pytest.raises(EncoderError, match="precision"):
        Encoder("realign-tiny-clip", "none", precision="fp8")


def test_model_config_json_path(tmp_path):
    import json

    from realign_data.testing.tiny_models import _TINY_OPEN_CLIP_CONFIG

    cfg = json.loads(json.dumps(_TINY_OPEN_CLIP_CONFIG))
    cfg["embed_dim"] = 16
    path = tmp_path / "tiny16.json"
    path.write_text(json.dumps(cfg))
    enc = Encoder(str(path), "none")
    assert enc.dim == 16 and enc.embed_texts(["x"]).shape == (1, 16)


def test_pretrained_weights_cached_looks_in_the_hub_cache(tmp_path, monkeypatch):
    """The demo uses cached CLIP weights offline instead of falling back to random ones."""
    snapshot = tmp_path / "hub" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    probe = (
        "from realign_data.kb.encoder import pretrained_weights_cached as c; print(c('ViT-B-32', 'laion2b_s34b_b79k'))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")}
    run = lambda: subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)  # noqa: E731
    assert run().stdout.strip() == "False"
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    assert run().stdout.strip() == "True"
