"""The work of one chunk of seeds, as data flowing one way: seeds -> candidates -> rows.

    load -> (write chosen) -> mask -> retrieve -> fill until accepted -> visual negative -> row

A :class:`Candidate` carries one seed through the stages. Each stage takes the candidates still in the race and
returns those that go on; one that stops gets its ``drop`` reason (one of :data:`realign_data.building.output.DROP_REASONS`)
and, when there is something to say, a failure record for the report. Every image is decoded once per chunk:
the seed image when it is loaded (a corrupt file is a counted drop, not a crash), a retrieved image the first
time a filler or a negative needs its pixels; both are shared through the chunk's image cache, so a corpus image
that is a seed and a retrieval hit at once is decoded once too.
"""

from __future__ import annotations

import io
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from realign_data.building.config import BuildConfig, BuildError
from realign_data.building.negatives import VisualNegative
from realign_data.building.output import reason_order
from realign_data.building.quality import QualityFilters
from realign_data.building.seeds import SeedImageError

if TYPE_CHECKING:  # pragma: no cover
    from realign_data.building.masking import MaskResult
    from realign_data.building.report import FailureRecord
    from realign_data.building.seeds import Seed
    from realign_data.kb.knowledge_base import Hit


@dataclass
class Candidate:
    """One seed on its way to a row: each stage fills its results in (load: ``image_bytes``, ``image``; chosen:
    ``chosen``; mask: ``masked``; retrieve: ``hits``; fill: ``fill``, ``hit``, ``similarity``, the counts and
    ``rejections``; visual negative: ``negative``) or sets ``drop``."""

    seed: Seed
    image_bytes: bytes = b""  # the original image as stored (it goes into the row as is)
    image: Any = None  # the original, decoded once (PIL, RGB)
    chosen: str = ""
    masked: Optional[MaskResult] = None
    hits: list[Hit] = field(default_factory=list)  # retrieved images, most similar first
    fills_tried: int = 0
    fills_failed: int = 0
    fills_unavailable: int = 0  # failed for the service's reason (network, HTTP error, timeout)
    fill: Optional[str] = None  # the accepted fill: the rejected answer
    hit: Optional[Hit] = None  # the retrieved image the accepted fill describes
    similarity: Optional[float] = None
    negative: Optional[VisualNegative] = None  # the rejected image
    rejections: Counter = field(default_factory=Counter)  # why fills were not kept: reason -> count
    drop: Optional[str] = None


@dataclass
class ChunkResult:
    rows: list[dict]  # realign_data.building.schema.make_row
    drops: dict[str, int]
    failures: list[FailureRecord]
    fills: int
    fills_rejected: dict[str, int] = field(default_factory=dict)  # fills not kept, by reason (gate + quality)
    onpolicy: Optional[dict] = None  # an on-policy chunk's counts (realign_data.building.onpolicy)


class Pipeline:
    """Holds what the stages use (knowledge base, COCO annotations, masker, filler, gate, chosen backend)."""

    def __init__(self, config: BuildConfig, kb, annotations) -> None:
        from realign_data.building.fillers import load_filler
        from realign_data.building.gate import GateError, load_gate
        from realign_data.building.masking import SPAN_KINDS, LexiconMasker, ModelMasker
        from realign_data.runtime.devices import DeviceError
        from realign_data.runtime.hub_deadline import hub_reachable

        self.config, self.kb, self.ann = config, kb, annotations
        self.masker = LexiconMasker(config.mask_kinds or SPAN_KINDS)
        self.masker.mask("")  # build the lexicon (its plurals import inflect) now, with the models, not in a chunk
        try:
            self.filler = load_filler(config.filler, **config.filler_options())
        except Exception as e:  # noqa: BLE001 - FillerError and friends: one sentence
            raise BuildError(str(e)) from None
        self.filler_name = config.filler if config.filler == "annotation" else f"{config.filler}:{config.model}"
        if config.masker == "model":
            self.masker = ModelMasker(self.filler.complete_text, fallback=self.masker)
        self.policy = None  # --responses-from: the policy whose answers are corrected (realign_data.building.policy)
        if config.responses_from:
            from realign_data.building.policy import Policy

            try:
                self.policy = Policy(config)
            except Exception as e:  # noqa: BLE001 - FillerError and friends: one sentence
                raise BuildError(str(e)) from None
        self.chosen_backend = None
        if config.chosen_from:
            kind = config.chosen_backend
            if kind == "auto":
                kind = config.filler if config.filler != "annotation" else "transformers"
            if kind == config.filler and config.chosen_from == config.model:
                self.chosen_backend = self.filler
            else:
                try:
                    self.chosen_backend = load_filler(
                        kind, **{**config.filler_options(kind), "model": config.chosen_from}
                    )
                except Exception as e:  # noqa: BLE001
                    raise BuildError(str(e)) from None
        try:
            local_only = not Path(config.gate_model).expanduser().is_dir() and not hub_reachable()
            self.gate = load_gate(config.gate, config.gate_model, device=config.device, local_files_only=local_only)
        except (GateError, DeviceError) as e:
            raise BuildError(str(e)) from None
        self._decoded: dict[str, Any] = {}  # the chunk's image cache: corpus id -> decoded image
        self.quality = QualityFilters.of(config)

    def close(self) -> None:
        self.filler.close()
        if self.policy is not None:
            self.policy.close()
        if self.chosen_backend is not None and self.chosen_backend is not self.filler:
            self.chosen_backend.close()

    def describe(self) -> dict:
        """Provenance of the stages: masker, filler, gate (with its threshold), chosen backend."""
        return {
            "masker": self.masker.to_config(),
            "filler": self.filler.describe(),
            "gate": {**self.gate.describe(), "threshold": self.config.sim_threshold},
            "quality_filters": self.quality.describe(),
            "chosen_from": self.chosen_backend.describe() if self.chosen_backend is not None else None,
            **({"policy": self.policy.describe()} if self.policy is not None else {}),
        }

    # ---------------------------------------------------------------------------------------------- chunk
    def run(self, seeds: list) -> ChunkResult:
        """Rows, drop counts, failure records and the number of fills tried for one chunk of seeds."""
        if self.policy is not None:  # on-policy: the policy's answers are the rejected side
            from realign_data.building.onpolicy import run_chunk

            rows, drops, failures, tried, counts = run_chunk(self, seeds)
            return ChunkResult(rows, drops, failures, tried, onpolicy=counts)
        drops: dict[str, int] = {}
        failures: list[FailureRecord] = []

        def drop(c: Candidate, reason: str, detail: str = "") -> None:
            c.drop = reason
            drops[reason] = drops.get(reason, 0) + 1
            if detail:
                failures.append({"seed": c.seed.id, "reason": reason, "error": detail})

        self._decoded = {}
        try:
            cands = self.load(seeds, drop)
            cands = self.write_chosen(cands, drop)
            cands = self.mask(cands, drop)
            self.retrieve(cands)
            fills = self.fill_until_accepted(cands, failures)
            rows = []
            rejected: Counter = sum((c.rejections for c in cands), Counter())
            for c in cands:
                if c.fill is None:
                    drop(
                        c,
                        "no_retrieval"
                        if not c.hits
                        else "request_failed"
                        if c.fills_unavailable
                        else "fill_failed"
                        if c.fills_failed == c.fills_tried
                        else _main_rejection(c.rejections),
                    )
                    continue
                try:
                    c.negative = self.visual_negative(c)
                except FileNotFoundError as e:  # the retrieved image's file is gone from the corpus
                    drop(c, "missing_image", str(e))
                    continue
                except (ValueError, OSError) as e:
                    drop(c, "corrupt_image", str(e))
                    continue
                rows.append(self.row(c))
        finally:
            self._decoded = {}
        return ChunkResult(
            rows, drops, failures, fills, dict(sorted(rejected.items(), key=lambda kv: reason_order(kv[0])))
        )

    # --------------------------------------------------------------------------------------------- stages
    def load(self, seeds: list, drop: Callable) -> list[Candidate]:
        """Read and decode each seed image (once); missing or corrupt images and empty instructions drop."""
        from PIL import Image, ImageOps

        out = []
        for s in seeds:
            c = Candidate(s)
            try:
                c.image_bytes = s.read_image_bytes(self.config.max_image_bytes)
            except SeedImageError as e:  # outside --image-root, not a regular file, too large
                drop(c, e.reason, str(e))
                continue
            except FileNotFoundError as e:
                drop(c, "missing_image", str(e))
                continue
            except OSError as e:
                drop(c, "corrupt_image", str(e))
                continue
            try:
                c.image = self._decoded.get(s.kb_id) if s.kb_id else None  # a corpus image already decoded
                if c.image is None:
                    with Image.open(io.BytesIO(c.image_bytes)) as im:
                        im.load()
                        if min(im.size) < 1:
                            raise ValueError("empty image")
                        c.image = ImageOps.exif_transpose(im).convert("RGB")  # upright, as datasets decodes it
            except Exception as e:  # noqa: BLE001 - PIL raises many types for bad data
                drop(c, "corrupt_image", f"corrupt image ({type(e).__name__}: {e})")
                continue
            if not s.instruction:
                drop(c, "empty_instruction")
                continue
            if s.kb_id:
                self._decoded[s.kb_id] = c.image
            c.chosen = (s.chosen or "").strip()
            out.append(c)
        return out

    def write_chosen(self, cands: list[Candidate], drop: Callable) -> list[Candidate]:
        """A VLM writes the chosen answer of seeds that have none (``--chosen-from``); the rest drop."""
        errors: dict[int, tuple[str, bool]] = {}
        need = [c for c in cands if not c.chosen]
        if need and self.chosen_backend is not None:
            items = [(c.seed.instruction, (lambda im=c.image: im), (lambda b=c.image_bytes: b)) for c in need]
            for c, res in zip(need, self.chosen_backend.generate(items)):
                if res.ok:
                    c.chosen = res.text.strip()
                else:
                    errors[id(c)] = (res.error or "empty generation", res.transient)
        out = []
        for c in cands:
            if c.chosen:
                out.append(c)
            elif id(c) in errors:
                error, transient = errors[id(c)]
                drop(c, "request_failed" if transient else "chosen_generation_failed", error)
            else:
                drop(c, "empty_answer")
        return out

    def mask(self, cands: list[Candidate], drop: Callable) -> list[Candidate]:
        """Mask the visual facts of every chosen answer (one batch: a model masker sends its requests together)."""
        out = []
        for c, masked in zip(cands, self.masker.mask_many([c.chosen for c in cands])):
            c.masked = masked
            if not masked.spans:
                drop(c, "nothing_to_mask")
                continue
            out.append(c)
        return out

    def retrieve(self, cands: list[Candidate]) -> None:
        """The top-k similar images: stored embeddings for corpus images, the decoded image for the others."""
        cfg = self.config
        by_id = [c for c in cands if c.seed.kb_id]
        by_image = [c for c in cands if not c.seed.kb_id]
        if by_id:
            for c, hits in zip(
                by_id,
                self.kb.search(
                    [c.seed.kb_id for c in by_id], k=cfg.top_k, kind="id", max_similarity=cfg.max_similarity
                ),
            ):
                c.hits = hits
        if by_image:
            for c, hits in zip(
                by_image,
                self.kb.search(
                    [c.image for c in by_image], k=cfg.top_k, kind="image", max_similarity=cfg.max_similarity
                ),
            ):
                c.hits = hits

    def fill_until_accepted(self, cands: list[Candidate], failures: list[FailureRecord]) -> int:
        """Fill with the retrieved images in rank order, a round per rank; the gate accepts or the next is tried."""
        from realign_data.building.fillers import FillRequest
        from realign_data.building.gate import is_rejected_fill, normalize_text

        cfg = self.config
        tried = 0
        kept: set = set()  # (seed image, normalised fill) of the rejected answers kept in this chunk
        for r in range(cfg.top_k):
            todo = [c for c in cands if c.fill is None and len(c.hits) > r]
            if not todo:
                break
            reqs = [
                FillRequest(
                    instruction=c.seed.instruction,
                    chosen=c.chosen,
                    masked=c.masked,
                    load_image=(lambda i=c.hits[r].id: self.decoded(i)),
                    image_bytes=(lambda i=c.hits[r].id: self.encoded(i)),
                    annotations=self.annotations_of(c.hits[r].id) if cfg.filler == "annotation" else None,
                    original_categories=tuple(c.seed.categories),
                    rng_seed=zlib.crc32(f"{cfg.seed}:{c.seed.id}:{c.hits[r].id}".encode()),
                )
                for c in todo
            ]
            results = self.filler.fill(reqs)
            tried += len(reqs)
            ok = []
            for c, res in zip(todo, results):
                c.fills_tried += 1
                if res.ok:
                    ok.append((c, res.text.strip()))
                else:
                    c.fills_failed += 1
                    c.fills_unavailable += res.transient
                    failures.append(
                        {
                            "seed": c.seed.id,
                            "rank": r + 1,
                            "retrieved": c.hits[r].id,
                            "error": res.error or "empty fill",
                            "attempts": res.attempts,
                        }
                    )
            sims = self.gate.similarity([c.chosen for c, _ in ok], [t for _, t in ok])
            for (c, text), sim in zip(ok, sims):  # seed order: which of two duplicates is kept is deterministic
                reason = None if is_rejected_fill(c.chosen, text, sim, cfg.sim_threshold) else "all_fills_too_similar"
                reason = reason or self.quality.check(c.masked.masked, c.chosen, text, sim)
                key = (c.seed.image_id, normalize_text(text))
                if reason is None and self.quality.enabled and key in kept:
                    reason = "fill_duplicate"
                if reason:
                    c.rejections[reason] += 1
                    continue
                kept.add(key)
                c.fill, c.hit, c.similarity = text, c.hits[r], sim
        return tried

    def visual_negative(self, c: Candidate) -> VisualNegative:
        """The rejected image of a kept pair: the retrieved image, or the original perturbed (seeded per row)."""
        from realign_data.building.difficulty import difficulty
        from realign_data.building.negatives import image_closeness, make_negative, perturbation_rng

        cfg, kind = self.config, self.config.image_negative
        if kind == "retrieval":
            params: dict[str, Any] = {}
            rejected_id, image_bytes, name = c.hit.id, self.encoded(c.hit.id), _image_name(c.hit.id)
        else:
            instances = []
            if kind == "region-noise" and c.seed.kb_id:
                instances = (self.annotations_of(c.seed.kb_id) or {}).get("instances") or []
            neg = make_negative(
                kind,
                c.image,
                perturbation_rng(cfg.seed, c.seed.id, kind),
                instances=instances,
                categories=sorted(c.masked.objects()),
                t=cfg.noise_step,
                schedule=cfg.noise_schedule,
                min_area=cfg.crop_min_area,
                max_area=cfg.crop_max_area,
            )
            params = neg.params
            name = _image_name(c.seed.image_path)
            rejected_id, image_bytes, name = None, neg.png_bytes(), f"{Path(name).stem}.{kind}.png" if name else None
        closeness = image_closeness(kind, params, c.hit.score)
        return VisualNegative(
            rejected_id,
            image_bytes,
            name,
            params,
            round(difficulty(closeness, c.similarity, cfg.difficulty_image_weight), 6),
        )

    def row(self, c: Candidate) -> dict:
        from realign_data.building.schema import make_row

        s, neg = c.seed, c.negative
        return make_row(
            seed_id=s.id,
            image_id=s.image_id,
            image_bytes=c.image_bytes,
            image_name=_image_name(s.image_path),
            instruction=s.instruction,
            chosen=c.chosen,
            rejected=c.fill,
            rejected_image_id=neg.rejected_image_id,
            rejected_bytes=neg.image_bytes,
            rejected_name=neg.name,
            rank=c.hit.rank,
            score=round(c.hit.score, 6),
            similarity=c.similarity,
            masked=c.masked.masked,
            filler=self.filler_name,
            fill_image_id=c.hit.id,
            image_negative=self.config.image_negative,
            negative_params=neg.params,
            difficulty=neg.difficulty,
        )

    # --------------------------------------------------------------------------------------------- images
    def decoded(self, kb_id: str):
        """A corpus image's pixels, decoded at most once per chunk."""
        if kb_id not in self._decoded:
            self._decoded[kb_id] = self.kb.load_image(kb_id)
        return self._decoded[kb_id]

    def encoded(self, kb_id: str) -> bytes:
        """A corpus image's file bytes as stored (no decoding); PNG of the pixels for dataset-backed corpora."""
        p = self.kb.image_path(kb_id)
        if p is not None:
            return Path(p).read_bytes()
        buf = io.BytesIO()
        self.decoded(kb_id).save(buf, format="PNG")
        return buf.getvalue()

    def annotations_of(self, kb_id: str) -> Optional[dict]:
        if self.ann is None:
            return None
        image_id = self.kb.record(kb_id).get("coco_image_id")
        if image_id is None:
            return None
        return {"instances": self.ann.instances(int(image_id)), "captions": self.ann.captions(int(image_id))}


def _main_rejection(rejections: dict) -> str:
    """The drop reason of a seed none of whose fills was kept: what rejected most of them (ties: report order)."""
    return min(rejections, key=lambda r: (-rejections[r], reason_order(r))) if rejections else "all_fills_too_similar"


def _image_name(path: Optional[str]) -> Optional[str]:
    return Path(path).name if path else None
