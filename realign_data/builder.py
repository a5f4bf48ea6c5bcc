"""Build a Re-Align dual-preference dataset: seeds → mask → retrieve → fill → gate → TRL-format rows.

    from realign_data import BuildConfig, build
    result = build(BuildConfig(index="coco", coco_root="data/coco", out="out/realign"))
    result.pairs_written, result.report_path

Work happens in **chunks** of ``chunk_size`` consecutive seeds. A finished chunk is a Parquet file of
output rows plus a JSON marker with its counts (both written to a temporary name and renamed) under
``OUT/.realign-build/``. A re-run of the same command skips finished chunks, so a build killed at any
point (even ``kill -9``) resumes and ends with exactly the rows of an uninterrupted build. Every random
choice is seeded from ``seed`` and the seed id, and a chunk's composition never depends on where a run
stopped, so the same inputs give a byte-identical dataset. Rows are streamed to disk chunk by chunk and
images are never held beyond their chunk: memory does not grow with the number of seeds.

Sharding: chunk ``c`` belongs to shard ``c % num_shards`` (``--num-shards/--shard-index``, or ``RANK`` /
``WORLD_SIZE`` from ``torchrun``/``accelerate``); :func:`merge` joins shard outputs back into the exact
dataset a single process would have written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from realign_data.atomic import atomic_path, atomic_write_json
from realign_data.encoder import file_sha256

WORK_DIR = ".realign-build"
REPORT_FILE = "build_report.json"
CONFIG_FILE = "realign_build.json"
FORMATS = ("arrow", "parquet")
CURRICULA = (None, "easy-to-hard")
SPLITS = ("train", "easy", "medium", "hard")  # splits of a curriculum build (train = all rows, easy to hard)
DROP_REASONS = ("missing_image", "corrupt_image", "empty_instruction", "empty_answer", "chosen_generation_failed",
                "nothing_to_mask", "no_retrieval", "fill_failed", "all_fills_too_similar")


class BuildError(ValueError):
    """A build cannot run as asked (a user mistake, reported as one sentence)."""


@dataclass
class BuildConfig:
    """Everything a build depends on. JSON-serialisable (``dataclasses.asdict``); see ``docs/building.md``.

    Knowledge base and seeds:
        index: knowledge-base name (under ``$REALIGN_HOME/indexes``) or directory.
        coco_root: COCO root (``train2014/`` + ``annotations/``); builds the index first when it does not exist
            and supplies annotations (captions for seeds, instances for the annotation filler).
        kb_model / kb_pretrained: open_clip encoder used when the index has to be built (``None`` = the
            ``index build`` defaults).
        seeds: a seed dataset (jsonl/json/parquet/csv file, ``save_to_disk`` dir or Hub id); ``None`` = the COCO
            captions of the corpus.
        seed_split, image_column, instruction_column, chosen_column, id_column, image_root: seed column mapping.
        prompts: description prompts for COCO-caption seeds (``None`` = built-in list); caption: ``longest``,
            ``random`` or ``all``.
        chosen_from: a VLM that writes the chosen answer when a seed has none; chosen_backend: ``auto``
            (the filler's backend when it is a VLM backend, else ``transformers``), ``transformers``, ``openai``.
    Pipeline:
        mask_kinds: span kinds masked (objects, colours, sizes, materials, counts, relations by default).
        top_k: retrieved images tried per seed (most similar first); max_similarity: near-duplicate cut.
        filler: ``annotation`` | ``transformers`` | ``openai``; model: its model (Hub id / path / served name).
        base_url, api_key_env, concurrency, max_retries, request_timeout: OpenAI-compatible endpoint settings.
        max_new_tokens, batch_size, device, dtype: VLM generation settings (greedy).
        gate: ``auto`` (sentence model, else lexical) | ``sentence`` | ``lexical``; gate_model: SentenceTransformer;
            sim_threshold: a fill is accepted when its similarity to the chosen answer is below this.
    Visual negative and curriculum:
        image_negative: ``retrieval`` (Re-Align: the retrieved image whose fill was kept), ``region-noise``
            (MFPO: diffusion noise inside the instance masks of the objects the chosen answer names; whole image
            when none is known), ``crop`` (mDPO: random resized crop keeping ``crop_min_area``-``crop_max_area``
            of the area) or ``noise`` (POVID: diffusion noise over the whole image). The text-rejected answer
            is always the mask-and-fill from a retrieved image, so every row stays dual.
        noise_step / noise_schedule: forward-diffusion step ``t`` of 1000 and beta schedule (``linear`` DDPM
            betas 1e-4..0.02, or ``cosine``) of the two noise kinds.
        crop_min_area / crop_max_area: area fractions kept by ``crop``.
        difficulty_image_weight: weight of the image closeness in ``difficulty`` (the rest is text similarity).
        curriculum: ``None`` (rows in seed order) or ``easy-to-hard``: rows ordered by ``difficulty`` (ties by
            id) and ``easy`` / ``medium`` / ``hard`` tercile splits written next to ``train``.
    Run:
        max_samples: use only the first N seeds; seed: randomness of every choice.
        num_shards / shard_index: this process's share (``None`` = from ``WORLD_SIZE``/``RANK`` or 1/0).
        chunk_size: seeds per checkpoint unit; format: ``arrow`` (``save_to_disk``) or ``parquet`` shards.
        progress: show a progress bar and print a summary.
    """

    index: str = "coco"
    out: str = "realign-dataset"
    coco_root: Optional[str] = None
    kb_model: Optional[str] = None
    kb_pretrained: Optional[str] = None
    seeds: Optional[str] = None
    seed_split: Optional[str] = None
    image_column: Optional[str] = None
    instruction_column: Optional[str] = None
    chosen_column: Optional[str] = None
    id_column: Optional[str] = None
    image_root: Optional[str] = None
    prompts: Optional[list] = None
    caption: str = "longest"
    chosen_from: Optional[str] = None
    chosen_backend: str = "auto"
    mask_kinds: Optional[list] = None
    masker: str = "lexicon"
    top_k: int = 8
    max_similarity: float = 0.95
    filler: str = "annotation"
    model: Optional[str] = None
    base_url: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    max_retries: int = 5
    request_timeout: float = 60.0
    max_new_tokens: int = 128
    batch_size: int = 8
    device: str = "cpu"
    dtype: str = "auto"
    gate: str = "auto"
    gate_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    sim_threshold: float = 0.95
    image_negative: str = "retrieval"
    noise_step: int = 500
    noise_schedule: str = "linear"
    crop_min_area: float = 0.01
    crop_max_area: float = 0.2
    difficulty_image_weight: float = 0.5
    curriculum: Optional[str] = None
    max_samples: Optional[int] = None
    seed: int = 0
    num_shards: Optional[int] = None
    shard_index: Optional[int] = None
    chunk_size: int = 64
    format: str = "arrow"
    progress: bool = True

    # fields that do not change the rows: free to differ between a run and its resume
    RUNTIME_FIELDS = ("out", "progress", "concurrency", "request_timeout", "max_retries", "api_key_env", "device")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BuildConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise BuildError(f"unknown build option(s) {unknown}; valid: {', '.join(sorted(names))}")
        return cls(**d)

    def semantic(self) -> dict:
        """The options the rows depend on (sharding excluded: shards of one build share these)."""
        d = self.to_dict()
        for k in self.RUNTIME_FIELDS + ("num_shards", "shard_index"):
            d.pop(k, None)
        return d

    def validate(self) -> None:
        from realign_data.fillers import FILLERS
        from realign_data.gate import GATES
        from realign_data.masking import MASKERS, SPAN_KINDS
        from realign_data.negatives import KINDS, NUM_DIFFUSION_STEPS, SCHEDULES
        from realign_data.seeds import CAPTION_CHOICES

        checks = [
            (self.filler in FILLERS, f"unknown filler {self.filler!r}; valid: {', '.join(FILLERS)}"),
            (self.gate in GATES, f"unknown gate {self.gate!r}; valid: {', '.join(GATES)}"),
            (self.format in FORMATS, f"unknown format {self.format!r}; valid: {', '.join(FORMATS)}"),
            (self.caption in CAPTION_CHOICES, f"unknown caption choice {self.caption!r}; valid: "
                                              f"{', '.join(CAPTION_CHOICES)}"),
            (self.chosen_backend in ("auto", "transformers", "openai"),
             f"unknown chosen backend {self.chosen_backend!r}; valid: auto, transformers, openai"),
            (self.top_k >= 1, f"top-k must be >= 1, got {self.top_k}"),
            (0 < self.sim_threshold <= 1, f"sim-threshold must be in (0, 1], got {self.sim_threshold}"),
            (self.chunk_size >= 1, f"chunk size must be >= 1, got {self.chunk_size}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.concurrency >= 1, f"concurrency must be >= 1, got {self.concurrency}"),
            (self.max_retries >= 0, f"max retries must be >= 0, got {self.max_retries}"),
            (self.max_new_tokens >= 1, f"max new tokens must be >= 1, got {self.max_new_tokens}"),
            (self.request_timeout > 0, f"request timeout must be > 0 seconds, got {self.request_timeout}"),
            (self.max_samples is None or self.max_samples >= 1, f"max-samples must be >= 1, got {self.max_samples}"),
            (self.filler == "annotation" or bool(self.model), f"the {self.filler} filler needs --model"),
            (self.masker in MASKERS, f"unknown masker {self.masker!r}; valid: {', '.join(MASKERS)}"),
            (self.masker != "model" or self.filler != "annotation",
             "the model masker asks the filler's model which words are visual facts: use it with --filler "
             "transformers or --filler openai"),
            (not self.mask_kinds or all(k in SPAN_KINDS for k in self.mask_kinds),
             f"unknown mask kinds {self.mask_kinds}; valid: {', '.join(SPAN_KINDS)}"),
            (self.image_negative in KINDS,
             f"unknown image negative {self.image_negative!r}; valid: {', '.join(KINDS)}"),
            (self.noise_schedule in SCHEDULES,
             f"unknown noise schedule {self.noise_schedule!r}; valid: {', '.join(SCHEDULES)}"),
            (isinstance(self.noise_step, int) and 1 <= self.noise_step <= NUM_DIFFUSION_STEPS,
             f"noise step must be an integer in [1, {NUM_DIFFUSION_STEPS}], got {self.noise_step}"),
            (0 < self.crop_min_area <= self.crop_max_area <= 1,
             f"crop areas must satisfy 0 < min <= max <= 1, got {self.crop_min_area} and {self.crop_max_area}"),
            (0 <= self.difficulty_image_weight <= 1,
             f"difficulty image weight must be in [0, 1], got {self.difficulty_image_weight}"),
            (self.curriculum in CURRICULA,
             f"unknown curriculum {self.curriculum!r}; valid: {', '.join(c for c in CURRICULA if c)} (or none)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BuildError(msg)


@dataclass
class BuildResult:
    out: str
    pairs_written: int
    seeds_read: int
    drops: dict
    report_path: str
    report: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- helpers
def shard_from_env(num_shards: Optional[int], shard_index: Optional[int]) -> tuple[int, int]:
    """``(num_shards, shard_index)`` from the arguments, else ``WORLD_SIZE``/``RANK``, else ``(1, 0)``."""
    if num_shards is None:
        num_shards = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if shard_index is None:
            shard_index = int(os.environ.get("RANK", "0") or 0)
    shard_index = 0 if shard_index is None else shard_index
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise BuildError(f"shard index must be in [0, {num_shards}) and num shards >= 1; got {shard_index} of "
                         f"{num_shards}")
    return num_shards, shard_index


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or huggingface.co cannot be reached."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    import socket

    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _say(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


def _chunk_paths(work: Path, c: int) -> tuple[Path, Path]:
    return work / "chunks" / f"chunk-{c:06d}.parquet", work / "chunks" / f"chunk-{c:06d}.json"


def _image_name(path: Optional[str]) -> Optional[str]:
    return Path(path).name if path else None


# ----------------------------------------------------------------------------------- knowledge base
def ensure_knowledge_base(config: BuildConfig, *, warn=print):
    """Open ``config.index``; build it from ``config.coco_root`` first when it does not exist yet."""
    from realign_data.knowledge_base import KnowledgeBase, KnowledgeBaseError, resolve_index

    try:
        return KnowledgeBase.load(config.index)
    except KnowledgeBaseError as e:
        if not config.coco_root:
            raise BuildError(f"{e}; or pass --coco-root DIR to build it now") from None
    from realign_data.corpus import CorpusError, open_source
    from realign_data.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from realign_data.knowledge_base import build_knowledge_base

    try:
        from realign_data.knowledge_base import _NAME

        path = resolve_index(config.index, must_exist=False)
        where = f"--name {config.index}" if _NAME.match(config.index) and not Path(config.index).is_dir() \
            else f"--out {path}"
        warn(f"Knowledge base {config.index!r} not found: building it from {config.coco_root} "
             f"(same as 'realign-data index build --source coco --root {config.coco_root} {where}')")
        build_knowledge_base(open_source("coco", config.coco_root), path,
                             model=config.kb_model or DEFAULT_MODEL,
                             pretrained=config.kb_pretrained or DEFAULT_PRETRAINED, progress=config.progress)
        return KnowledgeBase.load(path)
    except (KnowledgeBaseError, CorpusError) as e:
        raise BuildError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - encoder weights unavailable etc.
        raise BuildError(f"could not build knowledge base {config.index!r}: {e}") from None


# -------------------------------------------------------------------------------------------- builder
class _Pipeline:
    """The per-chunk work: holds the knowledge base, annotations, masker, filler, gate and chosen backend."""

    def __init__(self, config: BuildConfig, kb, annotations, warn) -> None:
        from realign_data.fillers import load_filler
        from realign_data.gate import GateError, load_gate
        from realign_data.masking import SPAN_KINDS, LexiconMasker, ModelMasker

        self.config, self.kb, self.ann = config, kb, annotations
        self.masker = LexiconMasker(config.mask_kinds or SPAN_KINDS)
        vlm_opts = dict(model=config.model, base_url=config.base_url, api_key_env=config.api_key_env,
                        concurrency=config.concurrency, max_retries=config.max_retries, timeout=config.request_timeout,
                        max_new_tokens=config.max_new_tokens, max_tokens=config.max_new_tokens,
                        batch_size=config.batch_size, device=config.device, dtype=config.dtype, seed=config.seed)
        try:
            self.filler = load_filler(config.filler, **vlm_opts)
        except Exception as e:  # noqa: BLE001 - FillerError and friends: one sentence
            raise BuildError(str(e)) from None
        self.filler_name = config.filler if config.filler == "annotation" else f"{config.filler}:{config.model}"
        if config.masker == "model":
            self.masker = ModelMasker(self.filler.complete_text, fallback=self.masker)
        self.chosen_backend = None
        if config.chosen_from:
            kind = config.chosen_backend
            if kind == "auto":
                kind = config.filler if config.filler != "annotation" else "transformers"
            if kind == config.filler and config.chosen_from == config.model:
                self.chosen_backend = self.filler
            else:
                try:
                    self.chosen_backend = load_filler(kind, **{**vlm_opts, "model": config.chosen_from})
                except Exception as e:  # noqa: BLE001
                    raise BuildError(str(e)) from None
        try:
            local_only = not Path(config.gate_model).expanduser().is_dir() and not hub_reachable()
            self.gate = load_gate(config.gate, config.gate_model, warn=warn, local_files_only=local_only)
        except GateError as e:
            raise BuildError(str(e)) from None
        self.encoder_fallback = None

    def close(self) -> None:
        self.filler.close()
        if self.chosen_backend is not None and self.chosen_backend is not self.filler:
            self.chosen_backend.close()

    # ------------------------------------------------------------------------------------- images
    def retrieved_bytes(self, kb_id: str) -> bytes:
        p = self.kb.image_path(kb_id)
        if p is not None:
            return Path(p).read_bytes()
        buf = io.BytesIO()
        self.kb.load_image(kb_id).save(buf, format="PNG")
        return buf.getvalue()

    def annotations_of(self, kb_id: str) -> Optional[dict]:
        if self.ann is None:
            return None
        image_id = self.kb.record(kb_id).get("coco_image_id")
        if image_id is None:
            return None
        return {"instances": self.ann.instances(int(image_id)), "captions": self.ann.captions(int(image_id))}

    # -------------------------------------------------------------------------------------- chunk
    def run_chunk(self, seeds: list) -> tuple[list[dict], dict, list[dict], int]:
        """Rows, drop counts, per-seed failures and the number of fills tried for one chunk."""
        from PIL import Image

        from realign_data.fillers import FillRequest
        from realign_data.gate import is_rejected_fill
        from realign_data.schema import make_row

        cfg = self.config
        drops: dict[str, int] = {}
        failures: list[dict] = []

        def drop(seed, reason: str, detail: str = "") -> None:
            drops[reason] = drops.get(reason, 0) + 1
            if detail:
                failures.append({"seed": seed.id, "reason": reason, "error": detail})

        live = []
        for s in seeds:
            try:
                data = s.read_image_bytes()
            except FileNotFoundError as e:
                drop(s, "missing_image", str(e))
                continue
            except (ValueError, OSError) as e:
                drop(s, "corrupt_image", str(e))
                continue
            if not s.instruction:
                drop(s, "empty_instruction")
                continue
            live.append([s, data])

        # chosen answers a VLM writes for seeds that have none
        need = [x for x in live if not (x[0].chosen or "").strip()]
        if need and self.chosen_backend is not None:
            items = [(x[0].instruction, (lambda d=x[1]: Image.open(io.BytesIO(d)).convert("RGB")),
                      (lambda d=x[1]: d)) for x in need]
            for x, res in zip(need, self.chosen_backend.generate(items)):
                if res.ok:
                    x[0].chosen = res.text.strip()
                else:
                    x[0].chosen = None
                    x.append(res.error or "empty generation")
        answered = []
        for x in live:
            if (x[0].chosen or "").strip():
                answered.append(x)
            elif len(x) > 2:
                drop(x[0], "chosen_generation_failed", x[2])
            else:
                drop(x[0], "empty_answer")
        kept = []
        # one batch per chunk: a model masker sends its requests together
        for (s, data, *_), masked in zip(answered, self.masker.mask_many([x[0].chosen.strip() for x in answered])):
            if not masked.spans:
                drop(s, "nothing_to_mask")
                continue
            kept.append((s, data, masked))

        # retrieval: stored embeddings for corpus images, image embeddings for the others
        hits: dict[int, list] = {}
        by_id = [j for j, (s, _, _) in enumerate(kept) if s.kb_id]
        by_img = [j for j, (s, _, _) in enumerate(kept) if not s.kb_id]
        if by_id:
            res = self.kb.search([kept[j][0].kb_id for j in by_id], k=cfg.top_k, kind="id",
                                 max_similarity=cfg.max_similarity)
            hits.update(zip(by_id, res))
        if by_img:
            imgs = [Image.open(io.BytesIO(kept[j][1])).convert("RGB") for j in by_img]
            res = self.kb.search(imgs, k=cfg.top_k, kind="image", max_similarity=cfg.max_similarity)
            hits.update(zip(by_img, res))
            del imgs

        # fill with retrieved images in rank order; the gate decides
        accepted: dict[int, tuple] = {}
        tried: dict[int, int] = {j: 0 for j in range(len(kept))}
        errors: dict[int, int] = {j: 0 for j in range(len(kept))}
        fills_tried = 0
        for r in range(cfg.top_k):
            todo = [j for j in range(len(kept)) if j not in accepted and len(hits.get(j, ())) > r]
            if not todo:
                break
            reqs = []
            for j in todo:
                s, _, masked = kept[j]
                hit = hits[j][r]
                reqs.append(FillRequest(
                    instruction=s.instruction, chosen=s.chosen, masked=masked,
                    load_image=(lambda i=hit.id: self.kb.load_image(i)),
                    image_bytes=(lambda i=hit.id: self.retrieved_bytes(i)),
                    annotations=self.annotations_of(hit.id) if cfg.filler == "annotation" else None,
                    original_categories=tuple(s.categories),
                    rng_seed=zlib.crc32(f"{cfg.seed}:{s.id}:{hit.id}".encode())))
            results = self.filler.fill(reqs)
            fills_tried += len(reqs)
            ok = [(j, res.text.strip()) for j, res in zip(todo, results) if res.ok]
            for j, res in zip(todo, results):
                tried[j] += 1
                if not res.ok:
                    errors[j] += 1
                    failures.append({"seed": kept[j][0].id, "rank": r + 1, "retrieved": hits[j][r].id,
                                     "error": res.error or "empty fill", "attempts": res.attempts})
            sims = self.gate.similarity([kept[j][0].chosen.strip() for j, _ in ok], [t for _, t in ok])
            for (j, text), sim in zip(ok, sims):
                if is_rejected_fill(kept[j][0].chosen, text, sim, cfg.sim_threshold):
                    accepted[j] = (r, text, sim)

        rows = []
        for j, (s, data, masked) in enumerate(kept):
            if j not in accepted:
                if not hits.get(j):
                    drop(s, "no_retrieval")
                elif errors[j] == tried[j]:
                    drop(s, "fill_failed")
                else:
                    drop(s, "all_fills_too_similar")
                continue
            r, text, sim = accepted[j]
            hit = hits[j][r]
            try:
                neg = self.visual_negative(s, data, masked, hit)
            except (ValueError, OSError) as e:  # the original decodes only now (perturbation kinds)
                drop(s, "corrupt_image", str(e))
                continue
            rows.append(make_row(
                seed_id=s.id, image_id=s.image_id, image_bytes=data, image_name=_image_name(s.image_path),
                instruction=s.instruction, chosen=s.chosen.strip(), rejected=text,
                rejected_image_id=neg["rejected_image_id"], rejected_bytes=neg["bytes"], rejected_name=neg["name"],
                rank=hit.rank, score=round(hit.score, 6), similarity=sim, masked=masked.masked,
                filler=self.filler_name, fill_image_id=hit.id, image_negative=cfg.image_negative,
                negative_params=neg["params"], difficulty=neg["difficulty"](sim)))
        return rows, drops, failures, fills_tried

    def visual_negative(self, s, data: bytes, masked, hit) -> dict:
        """The rejected image of a kept pair: the retrieved image, or the original perturbed (seeded per row)."""
        from realign_data.difficulty import difficulty
        from realign_data.negatives import image_closeness, make_negative, perturbation_rng

        cfg = self.config
        kind = cfg.image_negative
        if kind == "retrieval":
            params: dict = {}
            out = {"rejected_image_id": hit.id, "bytes": self.retrieved_bytes(hit.id), "name": _image_name(hit.id)}
        else:
            from PIL import Image

            image = Image.open(io.BytesIO(data))
            image.load()
            instances = []
            if kind == "region-noise" and s.kb_id:
                instances = (self.annotations_of(s.kb_id) or {}).get("instances") or []
            neg = make_negative(kind, image.convert("RGB"), perturbation_rng(cfg.seed, s.id, kind),
                                instances=instances, categories=sorted(masked.objects()), t=cfg.noise_step,
                                schedule=cfg.noise_schedule, min_area=cfg.crop_min_area, max_area=cfg.crop_max_area)
            params = neg.params
            name = _image_name(s.image_path)
            out = {"rejected_image_id": None, "bytes": neg.png_bytes(),
                   "name": f"{Path(name).stem}.{kind}.png" if name else None}
        closeness = image_closeness(kind, params, hit.score)
        out["params"] = params
        out["difficulty"] = lambda sim: round(difficulty(closeness, sim, cfg.difficulty_image_weight), 6)
        return out


def _open_seeds(config: BuildConfig, kb, annotations) -> Iterator:
    from realign_data.seeds import DESCRIPTION_PROMPTS, SeedError, coco_caption_seeds, dataset_seeds

    try:
        if config.seeds:
            it = dataset_seeds(config.seeds, image_column=config.image_column,
                               instruction_column=config.instruction_column, chosen_column=config.chosen_column,
                               id_column=config.id_column, image_root=config.image_root, split=config.seed_split,
                               require_chosen=not config.chosen_from, kb_lookup=kb.id_for_path)
        else:
            if annotations is None:
                raise BuildError(f"the knowledge base {config.index!r} is not a COCO corpus with captions; "
                                 "give --seeds PATH (a dataset of image, instruction, chosen)")
            it = coco_caption_seeds(annotations.root, prompts=config.prompts or DESCRIPTION_PROMPTS,
                                    caption=config.caption, seed=config.seed, annotations=annotations,
                                    kb_id_for=kb.id_for_coco_image_id)
        first = next(it, None)  # surface column errors now, not mid-build
    except SeedError as e:
        raise BuildError(str(e)) from None
    if first is None:
        return iter(())
    return itertools.chain([first], it)


def _coco_annotations(config: BuildConfig, kb):
    from realign_data.corpus import CocoAnnotations

    root = config.coco_root
    src = kb.manifest.get("source", {})
    if root is None and src.get("type") == "coco":
        root = src.get("root")
    if root is None or not Path(root).is_dir():
        return None
    ann = CocoAnnotations(root)
    return ann if len(ann) else None


def _check_out(out: Path, work: Path, config: BuildConfig, resolved: dict) -> None:
    """Refuse to mix different builds in one directory."""
    want = {"config": config.semantic(), "resolved": resolved}
    cfg_path = work / "config.json"
    if cfg_path.is_file():
        have = json.loads(cfg_path.read_text())
        # options added after a build started take their default values (an older build resumes)
        have["config"] = {**{k: v for k, v in BuildConfig().semantic().items() if k not in have["config"]},
                          **have["config"]}
        if have != want:
            diff = sorted(k for k in set(have["config"]) | set(want["config"])
                          if have["config"].get(k) != want["config"].get(k))
            if have.get("resolved") != want["resolved"]:
                diff += [f"{k} (resolved)" for k in sorted(set(have["resolved"]) | set(resolved))
                         if have["resolved"].get(k) != resolved.get(k)]
            raise BuildError(f"{out} holds a build made with other arguments (differs in: {', '.join(diff)}); "
                             "use a new --out directory or the same arguments to resume")
        return
    if out.exists() and any(p.name != WORK_DIR for p in out.iterdir()):
        raise BuildError(f"output directory {out} exists and is not a realign build; choose an empty or new --out")
    work.mkdir(parents=True, exist_ok=True)
    (work / "chunks").mkdir(exist_ok=True)
    atomic_write_json(cfg_path, want)


def build(config: BuildConfig) -> BuildResult:
    """Build (or resume) the dataset described by ``config``; see the module docstring."""
    config.validate()
    t0 = time.time()
    num_shards, shard_index = shard_from_env(config.num_shards, config.shard_index)
    out = Path(config.out).expanduser().resolve()
    work = out / WORK_DIR
    say = (lambda m: _say(config.progress, m))
    warnings: list[str] = []

    def warn(m: str) -> None:
        warnings.append(m)
        print(f"Warning: {m}", file=sys.stderr, flush=True)

    kb = ensure_knowledge_base(config, warn=lambda m: say(m))
    annotations = _coco_annotations(config, kb)
    pipe = _Pipeline(config, kb, annotations, warn)
    try:
        resolved = {"gate": pipe.gate.describe()["gate"], "kb_manifest_sha256": file_sha256(kb.path / "manifest.json"),
                    "num_shards": num_shards}
        _check_out(out, work, config, resolved)
        if (out / REPORT_FILE).is_file():
            report = json.loads((out / REPORT_FILE).read_text())
            if report.get("complete") and report.get("shard", {}).get("index") == shard_index:
                say(f"{out} is already complete ({report['pairs_written']} pairs); nothing to do")
                return BuildResult(str(out), report["pairs_written"], report["seeds_read"], report["drops"],
                                   str(out / REPORT_FILE), report)
        seeds = _open_seeds(config, kb, annotations)
        if config.max_samples:
            seeds = itertools.islice(seeds, config.max_samples)
        bar = None
        if config.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=config.max_samples, unit="seed", desc="building", dynamic_ncols=True)
        sleep = float(os.environ.get("REALIGN_BUILD_CHUNK_SLEEP", "0") or 0)  # test hook: widen the kill window
        chunks: list[int] = []
        chunk_counter = 0
        new_rows = new_seeds = resumed = 0
        t_work = 0.0
        while True:
            batch = list(itertools.islice(seeds, config.chunk_size))
            if not batch:
                break
            c = chunk_counter
            chunk_counter += 1
            if c % num_shards != shard_index:
                if bar is not None:
                    bar.update(len(batch))
                continue
            chunks.append(c)
            pq_path, marker = _chunk_paths(work, c)
            if marker.is_file() and pq_path.is_file():
                resumed += 1
            else:
                t1 = time.time()
                rows, drops, failures, fills = pipe.run_chunk(batch)
                _write_chunk(pq_path, marker, rows, {"chunk": c, "seeds": len(batch), "rows": len(rows),
                                                     "drops": drops, "failures": failures, "fills": fills,
                                                     "first_seed": batch[0].id})
                t_work += time.time() - t1
                new_rows += len(rows)
                new_seeds += len(batch)
                if sleep:
                    time.sleep(sleep)
            if bar is not None:
                bar.update(len(batch))
            del batch
        if bar is not None:
            bar.close()
        provenance = _provenance(config, kb, pipe, warnings)
    finally:
        pipe.close()
    from realign_data.report import finalize_report

    report = _finalize(out, work, config, chunks, provenance, num_shards, shard_index)
    report["throughput"] = {"seconds_total": round(time.time() - t0, 3), "seconds_building": round(t_work, 3),
                            "seeds_built_now": new_seeds, "pairs_built_now": new_rows, "resumed_chunks": resumed,
                            "pairs_per_second": round(new_rows / t_work, 3) if t_work else None,
                            "seeds_per_second": round(new_seeds / t_work, 3) if t_work else None}
    report = finalize_report(out, report)
    # chunk rows are in the dataset now; the markers stay, so a re-run is a no-op
    for c in chunks:
        _chunk_paths(work, c)[0].unlink(missing_ok=True)
    if config.progress:
        from realign_data.report import format_summary

        print(format_summary(report), flush=True)
    return BuildResult(str(out), report["pairs_written"], report["seeds_read"], report["drops"],
                       str(out / REPORT_FILE), report)


def _write_chunk(pq_path: Path, marker: Path, rows: list[dict], meta: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from realign_data.schema import arrow_schema

    table = pa.Table.from_pylist(rows, schema=arrow_schema())
    with atomic_path(pq_path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    atomic_write_json(marker, meta)


def _provenance(config: BuildConfig, kb, pipe: _Pipeline, warnings: list[str]) -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("realign", "datasets", "torch", "transformers", "sentence-transformers", "open_clip_torch", "faiss-cpu"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    enc = dict(kb.manifest.get("encoder", {}))
    return {
        "method": "Re-Align (arXiv 2502.13146) dual-preference construction",
        "knowledge_base": {"path": str(kb.path), "count": len(kb), "source": kb.manifest.get("source"),
                           "encoder": enc, "random_encoder": enc.get("pretrained") in ("none", None)},
        "seeds": config.seeds or "coco-captions",
        "masker": pipe.masker.to_config(),
        "filler": pipe.filler.describe(),
        "gate": {**pipe.gate.describe(), "threshold": config.sim_threshold},
        "chosen_from": (pipe.chosen_backend.describe() if pipe.chosen_backend is not None else None),
        "warnings": warnings,
        "versions": versions,
    }


def _combined_stream(tables_in_order, tmp_arrow: Path) -> int:
    """Write tables to one Arrow stream file (the format ``datasets`` memory-maps); return the row count."""
    import pyarrow as pa

    from realign_data.schema import arrow_schema

    schema = arrow_schema()
    n = 0
    with pa.OSFile(str(tmp_arrow), "wb") as f:
        writer = pa.ipc.new_stream(f, schema)
        for t in tables_in_order:
            if t.num_rows:
                t = t.cast(schema).combine_chunks()
                for b in t.to_batches():
                    writer.write_batch(b)
                n += t.num_rows
        writer.close()
    return n


def _save_arrow(ds, stage: Path, fingerprint_salt: str) -> None:
    ds.save_to_disk(str(stage))
    # the fingerprint is derived from the written content (not from temporary paths), so identical
    # inputs give an identical state.json
    h = hashlib.sha256(fingerprint_salt.encode())
    for f in sorted(stage.glob("data-*.arrow")):
        h.update(file_sha256(f).encode())
    state = json.loads((stage / "state.json").read_text())
    state["_fingerprint"] = h.hexdigest()[:16]
    (stage / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))


def curriculum_splits(ds) -> dict[str, list[int]]:
    """Row indices of ``train`` (all rows, easiest first; ties by id, then by seed order) and of the
    ``easy`` / ``medium`` / ``hard`` terciles of that order."""
    from realign_data.difficulty import curriculum_order, tercile_splits

    diffs = ds.data.column("difficulty").to_pylist()
    ids = ds.data.column("id").to_pylist()
    return {"train": curriculum_order(diffs, ids), **tercile_splits(diffs, ids)}


def _write_output(out: Path, work: Path, tables_in_order, fmt: str, fingerprint_salt: str,
                  curriculum: Optional[str] = None) -> tuple[int, Optional[dict]]:
    """Write the final dataset into ``out`` (arrow ``save_to_disk`` or parquet shards), atomically per file.

    With a curriculum the rows are reordered by difficulty and written as the splits of a ``DatasetDict``
    (``train`` = every row, easiest first, and its ``easy``/``medium``/``hard`` terciles). Returns the row
    count and, with a curriculum, ``{split: {"rows", "difficulty_min", "difficulty_max"}}``.
    """
    import datasets

    tmp_arrow = work / "combined.arrow"
    n = _combined_stream(tables_in_order, tmp_arrow)
    stage = work / "final"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_file(str(tmp_arrow))
    split_info = None
    if curriculum:
        index = curriculum_splits(ds)
        diffs = ds.data.column("difficulty").to_pylist()
        split_info = {k: {"rows": len(v), "difficulty_min": round(min((diffs[i] for i in v), default=0.0), 6),
                          "difficulty_max": round(max((diffs[i] for i in v), default=0.0), 6)}
                      for k, v in index.items()}
        parts = {k: datasets.Dataset.from_file(str(_take_stream(ds.data.table, v, work / f"split-{k}.arrow")))
                 for k, v in index.items()}
    else:
        parts = {"train": ds}
    if fmt == "arrow":
        if curriculum:
            for k, part in parts.items():
                _save_arrow(part, stage / k, f"{fingerprint_salt}:{k}")
            (stage / "dataset_dict.json").write_text(json.dumps({"splits": list(parts)}))
        else:
            _save_arrow(ds, stage, fingerprint_salt)
    else:
        (stage / "data").mkdir()
        rows_per_shard = 1000
        for k, part in parts.items():
            num = max(1, -(-len(part) // rows_per_shard))
            for i in range(num):
                piece = part.select(range(i * rows_per_shard, min(len(part), (i + 1) * rows_per_shard)))
                piece.to_parquet(str(stage / "data" / f"{k}-{i:05d}-of-{num:05d}.parquet"))
    del ds, parts
    # move into place: old data files that the new build does not have are removed
    for old in list(out.glob("data-*.arrow")) + list((out / "data").glob("*.parquet") if (out / "data").is_dir() else []):
        old.unlink()
    for split in SPLITS:  # split directories of a curriculum build
        if (out / split / "state.json").is_file():
            shutil.rmtree(out / split)
    for meta in ("dataset_dict.json", "state.json", "dataset_info.json"):
        (out / meta).unlink(missing_ok=True)
    for p in sorted(stage.rglob("*")):
        if p.is_file():
            dest = out / p.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
    shutil.rmtree(stage, ignore_errors=True)
    tmp_arrow.unlink()
    for f in work.glob("split-*.arrow"):
        f.unlink()
    return n, split_info


def _take_stream(table, indices: list[int], path: Path, batch: int = 256) -> Path:
    """Write ``table``'s rows ``indices`` (in that order) to an Arrow stream file, a batch at a time.

    ``take`` copies into fresh buffers, so the bytes written depend only on the rows, not on how the source
    was laid out (a merged build and a single-process build give identical files)."""
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as f:
        writer = pa.ipc.new_stream(f, table.schema)
        for i in range(0, len(indices), batch):
            for b in table.take(pa.array(indices[i:i + batch], type=pa.int64())).to_batches():
                writer.write_batch(b)
        writer.close()
    return path


STATS_COLUMNS = ("retrieval_score", "text_similarity", "retrieval_rank", "difficulty", "image_negative",
                 "negative_params")


def _negative_summary(config: BuildConfig) -> dict:
    """The visual-negative kind and the parameters it uses (for the report and the card)."""
    kind = config.image_negative
    params: dict = {"kind": kind}
    if kind in ("region-noise", "noise"):
        params.update(noise_step=config.noise_step, noise_schedule=config.noise_schedule,
                      num_diffusion_steps=1000)
    if kind == "crop":
        params.update(crop_min_area=config.crop_min_area, crop_max_area=config.crop_max_area)
    if kind != "retrieval":
        params["text_fill"] = "mask-and-fill from a retrieved image (fill_image_id)"
    return params


def _curriculum_summary(config: BuildConfig, split_info: Optional[dict], deferred: bool = False) -> dict:
    d: dict = {"order": config.curriculum, "difficulty_image_weight": config.difficulty_image_weight,
               "difficulty": "w * image_closeness + (1 - w) * clip(text_similarity, 0, 1)"}
    if split_info:
        d["splits"] = split_info
    if deferred:
        d["note"] = "sharded build: rows are in seed order; `realign-data merge` orders them and writes the splits"
    return d


def _read_chunk_tables(work: Path, chunks: list[int]):
    import pyarrow.parquet as pq

    for c in chunks:
        yield pq.read_table(_chunk_paths(work, c)[0])


def _finalize(out: Path, work: Path, config: BuildConfig, chunks: list[int], provenance: dict, num_shards: int,
              shard_index: int) -> dict:
    import pyarrow.parquet as pq

    from realign_data.report import aggregate

    metas = [json.loads(_chunk_paths(work, c)[1].read_text()) for c in chunks]
    salt = json.dumps(config.semantic(), sort_keys=True)
    # a sharded build writes its rows in seed order; `merge` applies the curriculum to the whole dataset
    curriculum = config.curriculum if num_shards == 1 else None
    n, split_info = _write_output(out, work, _read_chunk_tables(work, chunks), config.format, salt, curriculum)
    stats = {k: [] for k in STATS_COLUMNS}
    for c in chunks:
        t = pq.read_table(_chunk_paths(work, c)[0], columns=list(STATS_COLUMNS))
        for k in STATS_COLUMNS:
            stats[k] += t.column(k).to_pylist()
    report = aggregate(metas, stats)
    assert report["pairs_written"] == n
    report.update({
        "complete": True, "format": config.format, "shard": {"index": shard_index, "num_shards": num_shards},
        "chunks": [[m["chunk"], m["rows"]] for m in metas], "chunk_size": config.chunk_size,
        "image_negative": _negative_summary(config),
        "row_order": curriculum or "seed",
        "curriculum": _curriculum_summary(config, split_info, deferred=bool(config.curriculum and not curriculum)),
        "config": config.to_dict(), "provenance": provenance,
    })
    atomic_write_json(out / CONFIG_FILE, config.to_dict())
    return report


# ---------------------------------------------------------------------------------------------- merge
def built_splits(path: str | os.PathLike) -> list[str]:
    """Splits of a built dataset directory: ``["train"]``, or ``train, easy, medium, hard`` (curriculum)."""
    p = Path(path)
    if (p / "dataset_dict.json").is_file():
        return list(json.loads((p / "dataset_dict.json").read_text())["splits"])
    if (p / "state.json").is_file():
        return ["train"]
    names = sorted({f.name.split("-", 1)[0] for f in (p / "data").glob("*.parquet")}) if (p / "data").is_dir() else []
    return sorted(names, key=lambda k: (SPLITS.index(k) if k in SPLITS else len(SPLITS), k))


def load_built(path: str | os.PathLike, split: str = "train"):
    """Open one split of a built dataset directory (``save_to_disk`` or parquet shards) as a ``datasets.Dataset``.

    Every build has ``train`` (all rows); a ``--curriculum easy-to-hard`` build also has ``easy``, ``medium``
    and ``hard``.
    """
    import datasets

    p = Path(path)
    splits = built_splits(p)
    if not splits:
        raise BuildError(f"{p} holds no built dataset (no state.json, dataset_dict.json or data/*.parquet)")
    if split not in splits:
        raise BuildError(f"{p} has no split {split!r}; it has {', '.join(splits)}")
    if (p / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(p / split))
    if (p / "state.json").is_file():
        return datasets.load_from_disk(str(p))
    files = sorted(str(f) for f in (p / "data").glob(f"{split}-*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train")


def merge(shard_dirs: list[str | os.PathLike], out: str | os.PathLike, *, progress: bool = True) -> dict:
    """Join the outputs of ``--num-shards N`` builds into ``out``: the dataset one process would have built."""
    from realign_data.report import aggregate, finalize_report

    reports = []
    for d in shard_dirs:
        rp = Path(d) / REPORT_FILE
        if not rp.is_file():
            raise BuildError(f"{d} has no {REPORT_FILE}; is it a finished shard build?")
        reports.append(json.loads(rp.read_text()))
    first = BuildConfig.from_dict(reports[0]["config"]).semantic()
    nums = {r["shard"]["num_shards"] for r in reports}
    idx = sorted(r["shard"]["index"] for r in reports)
    for d, r in zip(shard_dirs, reports):
        if BuildConfig.from_dict(r["config"]).semantic() != first:
            raise BuildError(f"{d} was built with other arguments than {shard_dirs[0]}; only shards of one build merge")
    if len(nums) != 1 or idx != list(range(next(iter(nums)))):
        raise BuildError(f"shards {idx} of {sorted(nums)} do not make a complete build; need indices 0..N-1 once each")
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise BuildError(f"output directory {out} is not empty")
    work = out / WORK_DIR
    work.mkdir(parents=True)
    owner: list[tuple[int, int, int, int]] = []  # (chunk, shard position, offset, rows)
    for pos, r in enumerate(reports):
        off = 0
        for c, n in r["chunks"]:
            owner.append((c, pos, off, n))
            off += n
    owner.sort()
    datasets_ = [load_built(d).data.table for d in shard_dirs]

    def tables():
        if len(reports) == 1 and reports[0].get("row_order", "seed") != "seed":
            yield datasets_[0]  # already in curriculum order, which re-sorting (stable) keeps
            return
        for c, pos, off, n in owner:
            yield datasets_[pos].slice(off, n)

    cfg = BuildConfig.from_dict({**reports[0]["config"], "num_shards": 1, "shard_index": 0, "out": str(out)})
    salt = json.dumps(cfg.semantic(), sort_keys=True)
    n, split_info = _write_output(out, work, tables(), cfg.format, salt, cfg.curriculum)
    metas = []
    for r in reports:
        metas.append({"seeds": r["seeds_read"], "rows": r["pairs_written"], "drops": r["drops"],
                      "failures": r.get("failures", {}).get("examples", []), "fills": r.get("fills_tried", 0),
                      "failure_count": r.get("failures", {}).get("count", 0)})
    stats = {k: [] for k in STATS_COLUMNS}
    for t in tables():
        for k in STATS_COLUMNS:
            stats[k] += t.column(k).to_pylist()
    report = aggregate(metas, stats)
    report.update({"complete": True, "format": cfg.format, "shard": {"index": 0, "num_shards": 1},
                   "merged_from": [str(Path(d).resolve()) for d in shard_dirs],
                   "chunks": [[c, n] for c, _, _, n in owner], "chunk_size": cfg.chunk_size,
                   "image_negative": _negative_summary(cfg), "row_order": cfg.curriculum or "seed",
                   "curriculum": _curriculum_summary(cfg, split_info),
                   "config": cfg.to_dict(), "provenance": reports[0].get("provenance", {})})
    atomic_write_json(work / "config.json", {"config": cfg.semantic(), "resolved": {"merged": True}})
    atomic_write_json(out / CONFIG_FILE, cfg.to_dict())
    assert n == report["pairs_written"]
    report = finalize_report(out, report)
    if progress:
        from realign_data.report import format_summary

        print(format_summary(report), flush=True)
    return report


def run_demo(out: str | os.PathLike = "realign-demo", *, num_images: int = 200, seed: int = 0,
             progress: bool = True) -> dict:
    """The README's "run the main job": sample corpus → knowledge base → dataset (annotation filler) → HTML.

    Writes ``OUT/coco`` (synthetic COCO corpus), ``OUT/index`` (knowledge base), ``OUT/dataset`` (the
    dataset + ``build_report.json``) and ``OUT/dataset/inspect.html``. When pretrained CLIP or
    sentence-model weights are unavailable (offline) it says so, uses a randomly initialised encoder and
    the lexical gate, and records both in the provenance. Re-running resumes/reuses every stage.
    """
    from realign_data.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from realign_data.report import write_inspect_html
    from realign_data.sample import make_sample_corpus

    if num_images < 1:
        raise BuildError(f"--num-images must be at least 1 (got {num_images}).")
    out = Path(out).expanduser().resolve()
    corpus = out / "coco"
    if not (corpus / "annotations" / "captions_train2014.json").is_file():
        _say(progress, f"[1/4] Generating a {num_images}-image synthetic COCO corpus in {corpus}")
        make_sample_corpus(corpus, num_images=num_images, seed=seed, progress=progress)
    else:
        _say(progress, f"[1/4] Using the corpus in {corpus}")
    index = out / "index"
    pretrained = DEFAULT_PRETRAINED
    if not (index / "manifest.json").is_file():
        from realign_data.encoder import pretrained_weights_cached

        if not hub_reachable() and not pretrained_weights_cached(DEFAULT_MODEL, DEFAULT_PRETRAINED):
            print(f"Offline: pretrained CLIP weights ({DEFAULT_MODEL} / {DEFAULT_PRETRAINED}) cannot be downloaded; "
                  "using a randomly initialised encoder (retrieval is then arbitrary, the pipeline is real).",
                  file=sys.stderr, flush=True)
            pretrained = "none"
    else:
        pretrained = json.loads((index / "manifest.json").read_text())["encoder"]["pretrained"]
    _say(progress, f"[2/4] Knowledge base in {index}")
    config = BuildConfig(index=str(index), coco_root=str(corpus), out=str(out / "dataset"), kb_pretrained=pretrained,
                         seed=seed, progress=progress)
    try:
        _say(progress, "[3/4] Building the dataset (annotation filler)")
        result = build(config)
    except BuildError as e:
        if pretrained == "none" or "could not build knowledge base" not in str(e):
            raise
        print(f"Pretrained CLIP weights unavailable ({e}); using a randomly initialised encoder.", file=sys.stderr)
        shutil.rmtree(index, ignore_errors=True)
        config.kb_pretrained = "none"
        result = build(config)
    _say(progress, "[4/4] Writing the HTML report")
    html = write_inspect_html(result.out, Path(result.out) / "inspect.html")
    if not progress:
        from realign_data.report import format_summary

        print(format_summary(result.report), flush=True)
    return {"corpus": str(corpus), "index": str(index), "dataset": result.out, "pairs": result.pairs_written,
            "report": result.report_path, "html": str(html)}


def build_dataset(**options: Any) -> BuildResult:
    """Keyword form of :func:`build`: ``build_dataset(index="coco", out="out", top_k=8, ...)``."""
    return build(BuildConfig.from_dict(options))
