"""Shared test substrate: offline mode, a network guard, tiny models and the sample corpus.

Everything heavy is session-scoped and built once into pytest's temporary directory.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

# Shared helpers (local HTTP servers, fault-suite processes, tiny-model trainers, the CHAIR oracle) live in
# tests/support/ and are imported by module name: ``from openai_server import OpenAIServer``.
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

# Offline for the whole suite, before any Hugging Face library is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest

_real_connect = socket.socket.connect


def _is_local(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX and friends
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    """Fail fast instead of hanging when a test reaches beyond this machine."""
    if not _is_local(address):
        raise ConnectionRefusedError(f"tests must not use the network (tried to connect to {address!r})")
    return _real_connect(self, address)


socket.socket.connect = _guarded_connect


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_llava(tiny_dir):
    """Path of a saved tiny LLaVA checkpoint (model + processor with chat template)."""
    from realign_data.testing.tiny_models import build_tiny_llava

    return build_tiny_llava(tiny_dir / "llava")


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tiny_dir):
    """Path of a saved tiny Qwen2-VL checkpoint."""
    from realign_data.testing.tiny_models import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(tiny_dir / "qwen2_vl")


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl(tiny_dir):
    """Path of a saved tiny Qwen2.5-VL checkpoint."""
    from realign_data.testing.tiny_models import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tiny_dir / "qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_qwen3_vl(tiny_dir):
    """Path of a saved tiny Qwen3-VL checkpoint."""
    from realign_data.testing.tiny_models import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tiny_dir / "qwen3_vl")


@pytest.fixture(scope="session")
def tiny_sentence_transformer(tiny_dir):
    """Path of a saved tiny sentence-transformers model (BERT + mean pooling)."""
    from realign_data.testing.tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tiny_dir / "sentence_transformer")


@pytest.fixture(scope="session")
def tiny_open_clip(tiny_dir):
    """(model name, checkpoint path) of the tiny open_clip model, registered with open_clip."""
    from realign_data.testing.tiny_models import build_tiny_open_clip, register_tiny_open_clip

    return register_tiny_open_clip(), build_tiny_open_clip(tiny_dir / "open_clip.safetensors")


@pytest.fixture(scope="session")
def tiny_kb(tmp_path_factory, sample_corpus, tiny_open_clip):
    """A knowledge base over ``sample_corpus`` embedded with the tiny open_clip (read-only for tests)."""
    from realign_data.kb.corpus import open_source
    from realign_data.kb.knowledge_base_build import build_knowledge_base

    name, ckpt = tiny_open_clip
    out = tmp_path_factory.mktemp("kb") / "kb"
    build_knowledge_base(
        open_source("coco", sample_corpus),
        out,
        model=name,
        pretrained=str(ckpt),
        num_workers=0,
        batch_size=16,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory):
    """A 40-image synthetic COCO-layout corpus (read-only for tests: copy before modifying)."""
    from realign_data.testing.sample import make_sample_corpus

    return make_sample_corpus(tmp_path_factory.mktemp("corpus") / "coco", num_images=40, seed=0)


@pytest.fixture(scope="session")
def tiny_gemma3(tiny_dir):
    """Path of a saved tiny Gemma 3 checkpoint (its processor emits ``token_type_ids``)."""
    from realign_data.testing.tiny_models import build_tiny_gemma3

    return build_tiny_gemma3(tiny_dir / "gemma3")


SLOW_TESTS = {
    line.strip()
    for line in (Path(__file__).parent / "slow_tests.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def pytest_collection_modifyitems(config, items):
    """Mark the tests listed in tests/slow_tests.txt ``slow`` (``pytest -m "not slow"``: the fast subset)."""
    for item in items:
        path = Path(str(item.fspath)).relative_to(Path(__file__).parent.parent).as_posix()
        if f"{path}::{getattr(item, 'originalname', item.name)}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
