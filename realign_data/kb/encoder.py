"""open_clip image/text encoder: batched, L2-normalised float32 embeddings, a DataLoader-fed image pipeline.

>>> enc = Encoder("ViT-B-32", "laion2b_s34b_b79k")          # the default; needs the weights once
>>> enc = Encoder("ViT-B-32", "none")                       # random init (offline demos)
>>> enc = Encoder("ViT-B-32", "/ckpt/open_clip.safetensors")  # a local checkpoint
>>> enc.embed_images([pil_image]).shape, enc.embed_texts(["a red apple"]).shape

Model names are open_clip config names (``open_clip.list_models()``, which includes configs registered
at run time, such as the tiny test model of :mod:`realign_data.testing.tiny_models`) or the path of an open_clip
model-config JSON file (registered under its file stem). Device ``auto`` picks ``cuda:LOCAL_RANK`` when CUDA is
available (:mod:`realign_data.runtime.devices`); on GPU the model runs in ``fp16`` unless told otherwise.

Decoding and preprocessing run in ``torch.utils.data.DataLoader`` workers (:meth:`Encoder.iter_embed`);
images that cannot be decoded, or that are smaller than ``min_side`` pixels, are skipped and reported
with a reason — they never stop a run.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from realign_data.runtime.atomic import file_sha256

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
NO_PRETRAINED = ("none", "None", "", "random")
DEFAULT_MIN_SIDE = 2
"""Images whose shorter side is below this many pixels are skipped ("too small"). 1x1 images are the
usual placeholders/tracking pixels of scraped folders: they decode, but carry no content to retrieve."""


class EncoderError(RuntimeError):
    """The encoder cannot be created as asked (one clear sentence). ``weights`` is set when its pretrained weights
    could not be loaded: :meth:`advice` then adds the way out, named as the caller's command spells the option."""

    def __init__(self, message: str, *, weights: bool = False) -> None:
        super().__init__(message)
        self.weights = weights

    def advice(self, option: str = "--pretrained") -> str:
        if not self.weights:
            return str(self)
        return f"{self}; use {option} none for random weights or {option} /path/to/checkpoint.safetensors"


def describe_pretrained(pretrained: Optional[str]) -> tuple[str, Optional[str]]:
    """Normalise a ``--pretrained`` value without loading anything: ``(tag | absolute path | "none", sha256)``."""
    if pretrained is None or str(pretrained) in NO_PRETRAINED:
        return "none", None
    p = Path(str(pretrained)).expanduser()
    if p.is_file():
        return str(p.resolve()), file_sha256(p)
    if "/" in str(pretrained) or str(pretrained).endswith((".safetensors", ".pt", ".pth", ".bin")):
        raise EncoderError(f"checkpoint file {str(pretrained)!r} does not exist")
    return str(pretrained), None


def pretrained_weights_cached(model: str, tag: str) -> bool:
    """True when open_clip's weights for ``model``/``tag`` are already on disk (no network needed to load them).

    Looks where open_clip itself would: the Hugging Face cache for Hub-hosted weights, ``~/.cache/clip`` for URLs.
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag) or {}
    hub = cfg.get("hf_hub") or ""
    if hub:
        return _hub_weights_cached(hub)
    url = cfg.get("url") or ""
    return bool(url) and (Path.home() / ".cache" / "clip" / Path(url).name).is_file()


DEFAULT_HF_HUB = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/"
"""Where open_clip keeps ``DEFAULT_MODEL``/``DEFAULT_PRETRAINED`` (checked without importing open_clip)."""


def _hub_weights_cached(hub: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    parts = hub.strip("/").split("/")  # "org/repo/" or "org/repo/file.bin"
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo, name), str) for name in names)


def refuse_offline_download(model: str, pretrained) -> None:
    """Raise :class:`EncoderError` (``weights=True``) at once, instead of huggingface_hub's minute of retries, when
    the weights tag ``pretrained`` of ``model`` would have to be downloaded and the Hub is offline
    (``HF_HUB_OFFLINE``) or unreachable (one short probe). Local checkpoints and ``none`` pass."""
    from realign_data.runtime.hub_deadline import hub_reachable

    tag, sha = describe_pretrained(pretrained)
    if tag == "none" or sha is not None or hub_reachable():
        return
    try:
        cached = (
            _hub_weights_cached(DEFAULT_HF_HUB)
            if (model, tag) == (DEFAULT_MODEL, DEFAULT_PRETRAINED)
            else pretrained_weights_cached(_resolve_model_name(model), tag)
        )
    except Exception:  # noqa: BLE001 - an unknown tag: open_clip's own error says it best
        return
    if not cached:
        raise EncoderError(
            f"the open_clip weights {tag!r} of {model!r} are not in the local cache and the Hugging "
            "Face Hub cannot be reached (offline)",
            weights=True,
        )


@contextmanager
def _asked_for_random_weights(random: bool):
    """Drop open_clip's root-logger ``No pretrained weights loaded`` while creating a model asked for with
    ``pretrained none``: the caller chose random weights (and the CLI says so in its own words)."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not (random and record.getMessage().startswith("No pretrained weights loaded"))

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _resolve_model_name(model: str) -> str:
    p = Path(model).expanduser()
    if p.suffix == ".json" and p.is_file():
        from open_clip.factory import _MODEL_CONFIGS

        try:
            cfg = json.loads(p.read_text())
        except ValueError as e:
            raise EncoderError(f"open_clip model config {model!r} is not valid JSON ({e})") from e
        _MODEL_CONFIGS[p.stem] = cfg
        return p.stem
    import open_clip

    if model not in open_clip.list_models() and not model.startswith(("hf-hub:", "local-dir:")):
        raise EncoderError(
            f"unknown open_clip model {model!r}; use a name from open_clip.list_models() "
            f"(e.g. {DEFAULT_MODEL}) or an open_clip model-config JSON path"
        )
    return model


@dataclass
class EmbeddedBatch:
    """One batch out of :meth:`Encoder.iter_embed`: positions into the input, embeddings, sizes, skips."""

    batch_index: int
    indices: list[int]  # positions (into the items given) of the embedded images, in order
    embeddings: Any  # np.ndarray float32 [len(indices), dim], L2-normalised
    sizes: list[tuple[int, int]]  # (width, height) of each embedded image
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


class _ImageDataset:
    """Map-style dataset: load + check + preprocess one item in a worker; errors become a reason string."""

    def __init__(self, items: Sequence, preprocess, min_side: int):
        self.items = items
        self.preprocess = preprocess
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            img = item.load() if hasattr(item, "load") else item
            w, h = img.size
            if min(w, h) < self.min_side:
                return i, None, (w, h), f"too small ({w}x{h} px; minimum side is {self.min_side} px)"
            return i, self.preprocess(img), (w, h), None
        except Exception as e:  # noqa: BLE001 - any decoding failure means "skip this image"
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return i, None, (0, 0), f"unreadable ({type(e).__name__}{': ' + msg[:200] if msg else ''})"


def _collate(samples):
    import torch

    ok = [s for s in samples if s[1] is not None]
    pixels = torch.stack([s[1] for s in ok]) if ok else None
    return ([s[0] for s in ok], pixels, [s[2] for s in ok], [(s[0], s[3]) for s in samples if s[1] is None])


class Encoder:
    """An open_clip model ready to embed images and texts.

    Args:
        model: open_clip config name, or an open_clip model-config JSON path.
        pretrained: an open_clip pretrained tag, a local checkpoint file (``.safetensors``/``.pt``), or
            ``"none"`` for random initialisation.
        device: ``"auto"`` (``cuda:LOCAL_RANK`` when CUDA is available, else MPS, else CPU), ``"cpu"``, ``"cuda:1"``...
        precision: ``"auto"`` (fp16 on CUDA: more mantissa bits than bf16 for the embeddings; fp32 on CPU),
            ``"fp32"``, ``"fp16"`` or ``"bf16"``.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pretrained: Optional[str] = DEFAULT_PRETRAINED,
        *,
        device: str = "auto",
        precision: str = "auto",
    ):
        import open_clip
        import torch

        from realign_data.runtime.devices import DeviceError, resolve_device, resolve_dtype, torch_dtype

        self.model_name = model
        try:
            self.device = resolve_device(device)
            self.precision = resolve_dtype(precision, self.device, half="fp16")
        except DeviceError as e:
            raise EncoderError(str(e).replace("dtype", "precision")) from None
        self._dtype = torch_dtype(self.precision)
        name = _resolve_model_name(model)
        self.pretrained, self.checkpoint_sha256 = describe_pretrained(pretrained)
        pretrained = None if self.pretrained == "none" else self.pretrained
        refuse_offline_download(model, self.pretrained)
        try:
            # "--pretrained none" is reproducible (seed 0) without touching the caller's RNG state.
            with torch.random.fork_rng(devices=[]), _asked_for_random_weights(pretrained is None):
                torch.manual_seed(0)
                model_obj, _, preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=pretrained, device=self.device
                )
        except EncoderError:
            raise
        except Exception as e:
            raise EncoderError(
                f"could not load pretrained weights {self.pretrained!r} for open_clip model {model!r} "
                f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})",
                weights=True,
            ) from e
        model_obj.eval()
        if self._dtype != torch.float32:
            model_obj = model_obj.to(self._dtype)
        self.model = model_obj
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)
        self.dim = int(self._infer_dim())

    def _infer_dim(self) -> int:
        import torch

        with torch.no_grad():
            proj = getattr(self.model, "text_projection", None)
            if proj is not None and hasattr(proj, "shape"):
                return proj.shape[-1]
            size = getattr(self.model.visual, "image_size", 224)
            size = size if isinstance(size, (tuple, list)) else (size, size)
            x = torch.zeros(1, 3, *size, device=self.device, dtype=self._dtype)
            return self.model.encode_image(x).shape[-1]

    # ---------------------------------------------------------------------------------------- identity
    @property
    def identity(self) -> dict:
        """What must match between an index and the encoder that queries it."""
        return {
            "model": self.model_name,
            "pretrained": self.pretrained,
            "checkpoint_sha256": self.checkpoint_sha256,
            "dim": self.dim,
        }

    def __repr__(self) -> str:
        return (
            f"Encoder(model={self.model_name!r}, pretrained={self.pretrained!r}, dim={self.dim}, "
            f"device={self.device!r}, precision={self.precision!r})"
        )

    # ------------------------------------------------------------------------------------------ embed
    def embed_pixels(self, pixels) -> Any:
        """Embed a preprocessed ``[B, 3, H, W]`` tensor -> L2-normalised float32 numpy array."""
        import torch

        with torch.inference_mode():
            x = pixels.to(self.device, dtype=self._dtype, non_blocking=True)
            out = self.model.encode_image(x).float()
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.cpu().numpy()

    def embed_images(self, images: Sequence, batch_size: int = 64) -> Any:
        """Embed PIL images (or image file paths) in the calling process. Raises on unreadable input."""
        import numpy as np
        import torch

        from realign_data.kb.corpus import open_image_file

        outs = []
        for s in range(0, len(images), batch_size):
            chunk = [
                open_image_file(str(im)) if isinstance(im, (str, Path)) else im.convert("RGB")
                for im in images[s : s + batch_size]
            ]
            outs.append(self.embed_pixels(torch.stack([self.preprocess(im) for im in chunk])))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> Any:
        """Embed texts -> L2-normalised float32 numpy array ``[len(texts), dim]``."""
        import numpy as np
        import torch

        outs = []
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[s : s + batch_size])).to(self.device)
                out = self.model.encode_text(tokens).float()
                outs.append(torch.nn.functional.normalize(out, dim=-1).cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    def iter_embed(
        self, items: Sequence, *, batch_size: int = 64, num_workers: int = 0, min_side: int = DEFAULT_MIN_SIDE
    ) -> Iterator[EmbeddedBatch]:
        """Embed corpus items (objects with ``load()``, or PIL images) through a DataLoader.

        Batches come back in order; failed images are listed in ``skipped``.
        """
        from torch.utils.data import DataLoader

        batches = [list(range(s, min(s + batch_size, len(items)))) for s in range(0, len(items), batch_size)]
        if not batches:
            return
        loader = DataLoader(
            _ImageDataset(items, self.preprocess, min_side),
            batch_sampler=batches,
            num_workers=num_workers,
            collate_fn=_collate,
            pin_memory=self.device.startswith("cuda"),
            prefetch_factor=4 if num_workers > 0 else None,
            persistent_workers=False,
        )
        import numpy as np

        for b, (idx, pixels, sizes, skipped) in enumerate(loader):
            emb = self.embed_pixels(pixels) if pixels is not None else np.zeros((0, self.dim), np.float32)
            yield EmbeddedBatch(b, idx, emb, sizes, skipped)
