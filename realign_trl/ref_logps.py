"""Reference log-probs computed once, for image datasets (``precompute_ref_log_probs=True``).

TRL 1.16 refuses ``precompute_ref_log_probs=True`` on vision datasets. For a frozen reference the log-probs
never change, so :mod:`realign_trl.trainer` computes them here in one pass of the reference before training
(batched, ``torch.inference_mode``, a progress bar) and adds them to the dataset as columns the collator hands
to the loss; training then never runs (or keeps) a reference model:

* ``loss_type="rdpo"``: ``ref_chosen_logps``, ``ref_rejected_logps``, ``ref_visual_logps`` (the chosen answer on
  the rejected image), scored in the same batch layout as training (prefix sharing or three rows);
* other TRL losses (``"sigmoid"``, ...): ``ref_chosen_logps``, ``ref_rejected_logps``, from TRL's own
  ``compute_ref_log_probs``, which ``_compute_loss`` reads back when ``precompute_ref_logps`` is set.

Storage: one side file per *run key* under ``ref_logps_cache_dir`` (default ``$REALIGN_HOME/ref_logps``), a
safetensors file holding each row's key (sha256 of its images, rejected images and text) and its log-probs. The
run key hashes what else decides the values: the reference's weights (a content hash; with PEFT the base weights
without the trained adapter), the processor (class, vocabulary, chat template, image settings), ``max_length``,
the loss columns, ``ld_alpha`` and mixed precision. A second run, a resume or another process with the same run
key reads the rows it finds and computes only the missing ones. Under ``torchrun`` each rank scores its share of
the missing rows, the values are gathered, and the main process writes the merged file atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "RDPO_COLUMNS",
    "PAIR_COLUMNS",
    "ref_columns",
    "precompute",
    "reference_identity",
    "row_key",
    "cache_file",
    "validate",
]

logger = logging.getLogger(__name__)

RDPO_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps", "ref_visual_logps")
PAIR_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
FORMAT_VERSION = 1
_TEXT_FIELDS = ("prompt", "chosen", "rejected", "tools", "chat_template_kwargs")


def ref_columns(rdpo: bool) -> tuple[str, ...]:
    return RDPO_COLUMNS if rdpo else PAIR_COLUMNS


def validate(args: Any, train_dataset: Any, eval_dataset: Any) -> None:
    """Reject what a one-off pass of a frozen reference cannot serve, naming the option and the fix."""
    from datasets import IterableDataset

    if getattr(args, "sync_ref_model", False):
        raise ValueError(
            "sync_ref_model=True updates the reference during training, so precomputed reference "
            "log-probs would be stale; set precompute_ref_log_probs=False or sync_ref_model=False."
        )
    evals = eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]
    for ds in [train_dataset, *evals]:
        if isinstance(ds, IterableDataset):
            raise ValueError(
                "precompute_ref_log_probs=True needs a map-style dataset (an IterableDataset has no "
                "rows to add the reference log-probs to); load it without streaming or set "
                "precompute_ref_log_probs=False."
            )


def cache_root(args: Any) -> Path:
    root = getattr(args, "ref_logps_cache_dir", None)
    if root:
        return Path(root).expanduser()
    from realign_data.kb.knowledge_base import realign_home

    return realign_home() / "ref_logps"


# ----------------------------------------------------------------------------------------------- keys


def _update_image(h: Any, image: Any) -> None:  # h: a hashlib hash object
    if image is None:
        h.update(b"none")
    elif hasattr(image, "tobytes") and hasattr(image, "mode"):  # PIL
        h.update(f"pil:{image.mode}:{image.size}".encode())
        h.update(image.tobytes())
    elif isinstance(image, dict) and image.get("bytes") is not None:
        h.update(b"bytes:" + image["bytes"])
    elif isinstance(image, dict) and image.get("path"):
        h.update(b"file:" + Path(image["path"]).read_bytes())
    elif isinstance(image, (str, os.PathLike)):
        h.update(b"file:" + Path(image).read_bytes())
    else:
        h.update(b"repr:" + repr(image).encode())


def _images(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def row_key(row: dict, rejected_images_column: str | None) -> bytes:
    """sha256 of one row: its text fields (canonical JSON), its images and, for rDPO, its rejected images."""
    h = hashlib.sha256()
    text = {k: row[k] for k in _TEXT_FIELDS if k in row and row[k] is not None}
    h.update(json.dumps(text, sort_keys=True, ensure_ascii=False, default=str).encode())
    columns = ["images" if "images" in row else "image"]
    if rejected_images_column:
        columns.append(rejected_images_column)
    for column in columns:
        images = _images(row.get(column))
        h.update(f"|{column}:{len(images)}|".encode())
        for image in images:
            _update_image(h, image)
    return h.digest()


def _state_items(model: Any):
    """(normalised name, tensor) of the reference's weights: with PEFT and no ``ref`` adapter, the base model's
    (the adapter-disabled model), named as in the plain model, so a PEFT run and a full run share a key."""
    from accelerate.utils import is_peft_model

    names_out = set()
    if is_peft_model(model):
        names_out = {name for name in model.peft_config if name != "ref"}
    for name, tensor in model.state_dict().items():
        parts = name.split(".")
        if names_out & set(parts):
            continue
        parts = [p for p in parts if p not in ("base_layer", "original_module")]
        if parts[:2] == ["base_model", "model"]:
            parts = parts[2:]
        yield ".".join(parts), tensor


def reference_identity(model: Any) -> str:
    """Content hash (sha256) of the reference's weights: names, dtypes, shapes and values."""
    h = hashlib.sha256()
    for name, tensor in sorted(_state_items(model), key=lambda item: item[0]):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def processor_identity(processor: Any) -> str:
    h = hashlib.sha256(type(processor).__name__.encode())
    tokenizer = getattr(processor, "tokenizer", processor)
    h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(str(getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)).encode())
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None:
        h.update(image_processor.to_json_string().encode())
    for name in ("num_image_tokens", "image_seq_length", "patch_size", "vision_feature_select_strategy"):
        h.update(f"{name}={getattr(processor, name, None)}".encode())
    return h.hexdigest()


def run_key(trainer: Any, reference: Any, columns: tuple[str, ...]) -> dict:
    args = trainer.args
    return {
        "version": FORMAT_VERSION,
        "reference": reference_identity(reference),
        "processor": processor_identity(trainer.processing_class),
        "columns": list(columns),
        "max_length": args.max_length,
        "ld_alpha": getattr(args, "ld_alpha", None),
        "rejected_images_column": getattr(trainer.data_collator, "rejected_images_column", None),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
    }


def cache_file(root: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return root / f"ref-logps-{digest[:32]}.safetensors"


# ----------------------------------------------------------------------------------------------- side file


def _load(path: Path, width: int) -> dict[bytes, list[float]]:
    from safetensors.torch import load

    if not path.is_file():
        return {}
    try:
        tensors = load(path.read_bytes())
        keys, values = tensors["row_keys"], tensors["logps"]
        if keys.dim() != 2 or keys.size(1) != 32 or values.shape != (keys.size(0), width):
            raise ValueError("unexpected shapes")
    except Exception as e:  # noqa: BLE001 - a damaged file is recomputed, never trusted
        logger.warning("Ignoring unreadable reference log-probs file %s (%s); recomputing.", path, e)
        return {}
    return {bytes(k.tolist()): v.tolist() for k, v in zip(keys, values)}


def _save(path: Path, store: dict[bytes, list[float]], key: dict) -> None:
    from safetensors.torch import save

    from realign_data.runtime.atomic import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    items = sorted(store.items())
    keys = torch.tensor([list(k) for k, _ in items], dtype=torch.uint8).reshape(len(items), 32)
    values = torch.tensor([v for _, v in items], dtype=torch.float32).reshape(len(items), len(key["columns"]))
    atomic_write_bytes(
        path, save({"row_keys": keys, "logps": values}, metadata={"realign_ref_logps": json.dumps(key, sort_keys=True)})
    )


# ----------------------------------------------------------------------------------------------- the pass


def precompute(trainer: Any, dataset: Any, name: str, batch_size: int, rdpo: bool, reference: Any, score_batch) -> Any:
    """``dataset`` with the reference log-prob columns, read from the side file or computed and stored.

    ``score_batch(model, batch) -> (B, K) tensor`` scores one collated batch with the reference ``reference``
    (an ``nn.Module``: the explicit reference, or the policy before training, adapter-disabled with PEFT).
    """
    from accelerate.utils import gather_object

    columns = ref_columns(rdpo)
    key = getattr(trainer, "_realign_ref_run_key", None)
    if key is None:  # hashing the weights once per trainer, not once per dataset
        key = trainer._realign_ref_run_key = run_key(trainer, reference, columns)
    path = cache_file(cache_root(trainer.args), key)
    rejected_column = key["rejected_images_column"] if rdpo else None
    keys = [row_key(row, rejected_column) for row in dataset]
    store = _load(path, len(columns))
    missing, seen = [], set()
    for i, k in enumerate(keys):
        if k not in store and k not in seen:
            seen.add(k)
            missing.append(i)
    acc = trainer.accelerator
    mine = missing[acc.process_index :: acc.num_processes]
    logger.info(
        "Reference log-probs for the %s dataset: %d of %d rows stored in %s, %d to compute (%d here).",
        name,
        len(keys) - len(missing),
        len(keys),
        path,
        len(missing),
        len(mine),
    )
    values = _score(trainer, dataset.select(mine), batch_size, name, reference, score_batch) if mine else []
    computed = list(zip(mine, values))
    if acc.num_processes > 1 and missing:
        computed = gather_object(computed)
    for i, row in computed:
        store[keys[i]] = row
    if computed and acc.is_main_process:
        _save(path, {**_load(path, len(columns)), **store}, key)  # keep rows another process added meanwhile
    acc.wait_for_everyone()
    dataset = dataset.remove_columns([c for c in columns if c in dataset.column_names])
    for j, column in enumerate(columns):
        dataset = dataset.add_column(column, [float(store[k][j]) for k in keys])
    return dataset


def _score(trainer: Any, subset: Any, batch_size: int, name: str, reference: Any, score_batch) -> list:
    from accelerate.utils import tqdm
    from torch.utils.data import DataLoader

    loader = DataLoader(
        subset,
        batch_size=batch_size,
        collate_fn=trainer.data_collator,
        shuffle=False,
        num_workers=trainer.args.dataloader_num_workers,
    )
    was_training = reference.training
    reference.eval()
    out = []
    try:
        # the autocast of training (accelerate wraps the prepared model's forward in it under bf16/fp16)
        with torch.inference_mode(), trainer.accelerator.autocast():
            for batch in tqdm(
                loader,
                desc=f"Reference log-probs ({name})",
                disable=bool(os.environ.get("TQDM_DISABLE")) or trainer.args.disable_tqdm,
            ):
                batch = trainer._prepare_inputs(batch)
                out.extend(score_batch(reference, batch).float().cpu().tolist())
    finally:
        reference.train(was_training)
        del loader
        _release_memory()
    return out


def _release_memory() -> None:
    """Hand the pass's freed activations back before training allocates its own: CUDA's cache, and on Linux the
    C heap (glibc keeps freed blocks, so a process's resident memory would otherwise stay at the pass's peak)."""
    import ctypes
    import gc
    import sys

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
            pass
