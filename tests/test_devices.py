"""Device, dtype and device-map resolution. The CUDA branches run with torch's device queries faked (the CI machines
have no GPU); the CPU paths run for real (a tiny LLaVA filler placed by ``device_map``, half precision on the CPU)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from realign_data.building.fillers import FillerError, load_filler
from realign_data.building.gate import load_gate
from realign_data.cli import app
from realign_data.runtime.devices import DeviceError, placement, resolve_device, resolve_dtype


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has CUDA GPUs: ``gpus(n, bf16=True)``; free memory of GPU g is (g + 1) GiB."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)

    def fake(n: int, bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda g: ((g + 1) << 30, 80 << 30))

    return fake


def launched(monkeypatch, rank: int, world: int, local_rank: int, local_world: int) -> None:
    """The environment torchrun gives a worker."""
    for k, v in {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": local_rank, "LOCAL_WORLD_SIZE": local_world}.items():
        monkeypatch.setenv(k, str(v))


def test_auto_is_the_cpu_without_cuda(gpus):
    gpus(0)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") == "fp32" and resolve_dtype("bf16", "cpu") == "bf16"
    with pytest.raises(DeviceError, match="--device cuda: CUDA is not available here"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="this machine has 0 CUDA device"):
        resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="unknown device 'gpu'; valid: auto"):
        resolve_device("gpu")


def test_each_launched_process_gets_its_own_gpu(gpus, monkeypatch):
    gpus(4)
    assert resolve_device("auto") == "cuda:0"  # a plain process
    launched(monkeypatch, rank=5, world=8, local_rank=1, local_world=4)
    assert resolve_device("auto") == resolve_device("cuda") == "cuda:1"  # cuda:LOCAL_RANK, not cuda:RANK
    assert resolve_device("cuda:3") == "cuda:3"  # as written
    launched(monkeypatch, rank=6, world=8, local_rank=6, local_world=8)
    assert resolve_device("auto") == "cuda:2"  # more processes than GPUs: they wrap around
    with pytest.raises(DeviceError, match=r"has 4 CUDA device\(s\) \(cuda:0 to cuda:3\)"):
        resolve_device("cuda:4")


def test_auto_dtype_on_gpus(gpus):
    gpus(1, bf16=True)
    assert resolve_dtype("auto", "cuda:0") == "bf16"  # the filler's choice
    assert resolve_dtype("auto", "cuda:0", half="fp16") == "fp16"  # the encoder's
    gpus(1, bf16=False)  # e.g. a V100 or T4
    assert resolve_dtype("auto", "cuda:0") == "fp16"
    assert resolve_dtype("float32", "cuda:0") == "fp32" and resolve_dtype("bfloat16", "cuda:0") == "bf16"
    with pytest.raises(DeviceError, match="unknown dtype 'int8'; valid: auto, bf16, fp16, fp32"):
        resolve_dtype("int8", "cuda:0")


def test_placement_of_a_transformers_model(gpus, monkeypatch):
    gpus(4)
    assert placement("auto") == ({"device_map": "cuda:0", "dtype": torch.bfloat16}, "bf16")
    assert placement("auto", "auto", "fp16") == ({"device_map": "auto", "dtype": torch.float16}, "fp16")  # every GPU
    # two processes per node: each spreads its model over its own half of the node's GPUs
    launched(monkeypatch, rank=3, world=4, local_rank=1, local_world=2)
    kwargs, name = placement("cuda:0", "auto")
    assert kwargs == {"device_map": "auto", "dtype": torch.bfloat16, "max_memory": {2: 3 << 30, 3: 4 << 30}}
    launched(monkeypatch, rank=0, world=8, local_rank=0, local_world=8)
    with pytest.raises(DeviceError, match="needs at least one GPU per process, but this node runs 8 processes on 4"):
        placement("auto", "auto")
    with pytest.raises(DeviceError, match="unknown device map 'everywhere'; valid: auto, balanced"):
        placement("auto", "everywhere")


def test_transformers_filler_placed_by_device_map_in_half_precision(tiny_llava):
    """The real loading path without CUDA: accelerate's device map puts the tiny LLaVA on the CPU, in bf16, and
    the processor's pixels follow the model's dtype."""
    f = load_filler("transformers", model=str(tiny_llava), device_map="auto", dtype="bf16", max_new_tokens=4)
    assert f.model.dtype == torch.bfloat16 and str(f.model.device) == "cpu"
    assert f.describe()["dtype"] == "bf16"
    (res,) = f.generate([("Describe the image.", lambda: Image.new("RGB", (32, 32)), None)])
    assert res.error is None and isinstance(res.text, str)
    with pytest.raises(FillerError, match="--device cuda: CUDA is not available"):
        load_filler("transformers", model=str(tiny_llava), device="cuda")


def test_sentence_gate_device(tiny_sentence_transformer):
    gate = load_gate("sentence", str(tiny_sentence_transformer))  # device auto
    assert str(gate.model.device) == "cpu"
    with pytest.raises(DeviceError, match="CUDA is not available"):  # a bad device is not a reason to fall back
        load_gate("auto", str(tiny_sentence_transformer), device="cuda")


def test_build_rejects_an_unusable_device_before_any_work(tiny_kb, tmp_path):
    r = CliRunner().invoke(app, ["build", "--index", str(tiny_kb), "--out", str(tmp_path / "o"), "--device", "cuda"])
    assert r.exit_code == 2 and "--device cuda: CUDA is not available here" in r.output, r.output
    r = CliRunner().invoke(app, ["build", "--index", str(tiny_kb), "--out", str(tmp_path / "o"), "--device", "tpu"])
    assert r.exit_code == 2 and "unknown device 'tpu'" in r.output
    r = CliRunner().invoke(app, ["build", "--index", str(tiny_kb), "--out", str(tmp_path / "o"), "--device-map", "x"])
    assert r.exit_code == 2 and "unknown device map 'x'" in r.output
    assert not (tmp_path / "o").exists()


def test_evaluation_places_its_model_the_same_way(tiny_llava):
    from realign_trl.eval.backends import TransformersBackend, check_model_args
    from realign_trl.eval.suite import EvalError

    backend = TransformersBackend(str(tiny_llava), dtype="bf16", device_map="auto")
    assert backend.model.dtype == torch.bfloat16 and backend.describe()["device"] == "cpu"
    backend.close()
    with pytest.raises(EvalError, match="--device cuda: CUDA is not available"):
        TransformersBackend(str(tiny_llava), device="cuda")
    with pytest.raises(EvalError, match="unknown dtype 'int8'"):
        check_model_args(str(tiny_llava), dtype="int8")
