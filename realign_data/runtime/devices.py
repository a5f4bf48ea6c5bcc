"""Where models run: ``--device``, ``--dtype`` and ``--device-map`` resolved one way for every model.

Every model of a build (the transformers filler, the sentence gate, the open_clip encoder) asks this module
where to live, so ``auto`` means the same everywhere:

* device ``auto``: ``cuda:LOCAL_RANK`` when CUDA is available (each process of a ``torchrun`` / ``accelerate
  launch`` run on its own GPU of the node; the local rank wraps around the visible GPUs), else Apple's ``mps``
  when available, else ``cpu``. An
  explicit ``cuda`` under a multi-process launch is the process's own GPU too; ``cuda:N``, ``mps`` and ``cpu``
  are taken as written, after checking that the device exists.
* dtype ``auto``: ``fp32`` on the CPU and MPS (half precision is slow or unsupported there); on CUDA ``bf16`` where
  the GPU supports it (Ampere and newer), else ``fp16``. Models whose outputs are compared to thresholds
  prefer ``fp16`` (more mantissa bits: the encoder's embeddings) or stay in ``fp32`` (the gate).
* device map (transformers filler only): accelerate's ``device_map`` strategies spread a model too large for
  one GPU over several. Under a multi-process launch each local rank gets its own share of the node's GPUs
  (``max_memory`` lists only those), so processes never place layers on each other's GPUs.

The CUDA branches run in the test suite with the device queries faked (no GPU on the CI machines); they have
not yet been run on real GPUs.
"""

from __future__ import annotations

import re
from typing import Optional

DTYPES = ("auto", "bf16", "fp16", "fp32")
DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's strategies
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_HELP = "auto (cuda:LOCAL_RANK when CUDA is available, else mps, else cpu), cpu, cuda, cuda:N or mps"


class DeviceError(ValueError):
    """A device, dtype or device map that cannot be used here (one sentence naming it and what would work)."""


def check_device_name(device: str) -> None:
    """Syntax check without importing torch (config validation); availability is checked by :func:`resolve_device`."""
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise DeviceError(f"unknown device {device!r}; valid: {DEVICE_HELP}")


def normalize_dtype(dtype: str) -> str:
    """``bfloat16`` -> ``bf16`` and so on; unknown names raise :class:`DeviceError`."""
    name = DTYPE_ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if name not in DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return name


def _local() -> tuple[int, int]:
    from realign_data.runtime.jobs import distributed

    here = distributed()
    return here.local_rank, here.local_world


def resolve_device(device: str = "auto", *, local_rank: Optional[int] = None) -> str:
    """The concrete device for ``device`` in this process (see the module docstring)."""
    import torch

    check_device_name(device)
    if device in ("auto", "cuda"):
        if not torch.cuda.is_available():
            if device == "cuda":
                raise DeviceError(
                    "--device cuda: CUDA is not available here (torch.cuda.is_available() is False); "
                    "use --device auto or cpu"
                )
            return "mps" if torch.backends.mps.is_available() else "cpu"
        rank = _local()[0] if local_rank is None else local_rank
        return f"cuda:{rank % torch.cuda.device_count()}"
    if device.startswith("cuda:"):
        index, count = int(device.split(":")[1]), torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            raise DeviceError(
                f"--device {device}: this machine has {count} CUDA device(s)"
                + (f" (cuda:0 to cuda:{count - 1})" if count else "")
                + "; use --device auto"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: the MPS backend is not available here; use --device auto or cpu")
    return device


def resolve_dtype(dtype: str, device: str, *, half: str = "bf16") -> str:
    """``fp32``/``bf16``/``fp16`` for ``dtype`` on ``device`` (a resolved device); ``half`` is the model's choice of
    half precision on a GPU (``bf16`` falls back to ``fp16`` where the GPU lacks it)."""
    dtype = normalize_dtype(dtype)
    if dtype != "auto":
        return dtype
    if not device.startswith("cuda"):
        return "fp32"
    import torch

    if half == "bf16" and not torch.cuda.is_bf16_supported():
        return "fp16"
    return half


def torch_dtype(name: str):
    """The ``torch.dtype`` of ``fp32``/``bf16``/``fp16``."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[normalize_dtype(name)]


def placement(device: str = "auto", device_map: Optional[str] = None, dtype: str = "auto") -> tuple[dict, str]:
    """``from_pretrained`` keyword arguments placing a transformers model, and the name of its dtype.

    The arguments are ``dtype`` and ``device_map``: one device, or an accelerate strategy; for a strategy under a
    multi-process launch also ``max_memory``, listing this process's GPUs only (the node's GPUs split evenly between
    its local ranks). With a strategy ``device`` is unused."""
    if device_map is None:
        where = {"device_map": resolve_device(device)}
        name = resolve_dtype(dtype, where["device_map"])
        return {**where, "dtype": torch_dtype(name)}, name
    if device_map not in DEVICE_MAPS:
        raise DeviceError(f"unknown device map {device_map!r}; valid: {', '.join(DEVICE_MAPS)}")
    import torch

    name = resolve_dtype(dtype, "cuda" if torch.cuda.is_available() else "cpu")
    where = {"device_map": device_map, "dtype": torch_dtype(name)}
    local_rank, local_world = _local()
    if local_world <= 1 or not torch.cuda.is_available():
        return where, name
    count = torch.cuda.device_count()
    per = count // local_world
    if per < 1:
        raise DeviceError(
            f"--device-map {device_map} needs at least one GPU per process, but this node runs "
            f"{local_world} processes on {count} GPU(s); start fewer processes per node"
        )
    gpus = range(local_rank * per, (local_rank + 1) * per)
    return {**where, "max_memory": {g: torch.cuda.mem_get_info(g)[0] for g in gpus}}, name
