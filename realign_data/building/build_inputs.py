"""The inputs of a build: its knowledge base (built from ``--coco-root`` first when it does not exist yet), the COCO
annotations of that corpus, and the seed records (a dataset given with ``--seeds``, else COCO captions)."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Iterator, Optional

from realign_data.building.config import BuildConfig, BuildError
from realign_data.runtime.jobs import WaitTimeout, distributed
from realign_data.runtime.locks import LockHeld

logger = logging.getLogger(__name__)

KB_WAIT_TIMEOUT = 24 * 3600.0  # processes wait this long (without progress) for rank 0 to index the knowledge base


def refuse_offline_knowledge_base(config: BuildConfig) -> None:
    """Offline with a knowledge base still to build from uncached weights: one sentence before any other work."""
    if not config.coco_root:
        return
    from realign_data.kb.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED, EncoderError, refuse_offline_download
    from realign_data.kb.knowledge_base import resolve_index

    try:
        if (resolve_index(config.index, must_exist=False) / "manifest.json").is_file():
            return
        refuse_offline_download(config.kb_model or DEFAULT_MODEL, config.kb_pretrained or DEFAULT_PRETRAINED)
    except EncoderError as e:
        raise BuildError(f"could not build knowledge base {config.index!r}: {e.advice('--kb-pretrained')}") from None
    except Exception:  # noqa: BLE001 - a bad --index etc.: said where the knowledge base is opened
        return


def ensure_knowledge_base(config: BuildConfig, *, chatty: Optional[bool] = None):
    """Open ``config.index``; build it from ``config.coco_root`` first when it does not exist yet.

    Under a multi-process launch every process embeds its share of the corpus and waits while rank 0 writes the
    index (:func:`~realign_data.kb.knowledge_base_build.build_knowledge_base`), so every process returns it."""
    from realign_data.kb.knowledge_base import (
        KnowledgeBase,
        KnowledgeBaseCorrupt,
        KnowledgeBaseError,
        is_index_name,
        resolve_index,
    )

    try:
        return KnowledgeBase.load(config.index)
    except KnowledgeBaseCorrupt as e:  # there is one, damaged: building "it now" is not the fix
        raise BuildError(str(e)) from None
    except KnowledgeBaseError as e:
        if not config.coco_root:
            raise BuildError(f"{e}; or pass --coco-root DIR to build it now") from None
    from realign_data.kb.corpus import CorpusError, open_source
    from realign_data.kb.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from realign_data.kb.knowledge_base_build import build_knowledge_base
    from realign_data.kb.knowledge_base_check import remove_failed_stub

    path, existed = None, True
    try:
        path = resolve_index(config.index, must_exist=False)
        existed = path.exists()
        where = (
            f"--name {config.index}"
            if is_index_name(config.index) and not Path(config.index).is_dir()
            else f"--out {path}"
        )
        from realign_data.kb.encoder import refuse_offline_download

        refuse_offline_download(config.kb_model or DEFAULT_MODEL, config.kb_pretrained or DEFAULT_PRETRAINED)
        if config.progress if chatty is None else chatty:
            logger.info(
                "Knowledge base %r not found: building it from %s (same as 'realign-data index build "
                "--source coco --root %s %s')",
                config.index,
                config.coco_root,
                config.coco_root,
                where,
            )
        build_knowledge_base(
            open_source("coco", config.coco_root, split=config.coco_split),
            path,
            model=config.kb_model or DEFAULT_MODEL,
            pretrained=config.kb_pretrained or DEFAULT_PRETRAINED,
            device=config.device,
            progress=config.progress,
            wait_timeout=max(config.wait_timeout, KB_WAIT_TIMEOUT),
        )
        return KnowledgeBase.load(path)
    except (WaitTimeout, LockHeld):  # runtime failures (the others stopped making progress; another writer)
        raise
    except Exception as e:  # noqa: BLE001 - encoder weights unavailable etc.
        if path is not None and distributed().world == 1:
            remove_failed_stub(path, existed)  # a retry with other options must not find a stub in the way
        if isinstance(e, (KnowledgeBaseError, CorpusError)):
            raise BuildError(str(e)) from None
        from realign_data.kb.encoder import EncoderError

        advice = e.advice("--kb-pretrained") if isinstance(e, EncoderError) else str(e)
        raise BuildError(f"could not build knowledge base {config.index!r}: {advice}") from None


def coco_annotations(config: BuildConfig, kb):
    from realign_data.kb.corpus import CocoAnnotations

    root = config.coco_root
    src = kb.manifest.get("source", {})
    if root is None and src.get("type") == "coco":
        root = src.get("root")
    if root is None or not Path(root).is_dir():
        return None
    from realign_data.kb.corpus import CorpusError

    try:
        ann = CocoAnnotations(root)
    except CorpusError as e:  # malformed or wrongly shaped annotation files
        raise BuildError(str(e)) from None
    return ann if len(ann) else None


def open_seeds(config: BuildConfig, kb, annotations) -> Iterator:
    from realign_data.building.seeds import DESCRIPTION_PROMPTS, SeedError, coco_caption_seeds, dataset_seeds
    from realign_data.kb.splits import SplitError, SplitView, seed_splits

    try:
        if config.seeds:
            it = dataset_seeds(
                config.seeds,
                image_column=config.image_column,
                instruction_column=config.instruction_column,
                chosen_column=config.chosen_column,
                id_column=config.id_column,
                image_root=config.image_root,
                split=config.seed_split,
                require_chosen=not config.chosen_from,
                kb_lookup=kb.id_for_path,
                encoding=config.seeds_encoding,
                allow_outside_root=config.allow_outside_root,
            )
        else:
            if annotations is None and config.coco_root:
                raise BuildError(
                    f"the COCO root {config.coco_root!r} has no annotations/captions_*.json, so there "
                    "are no caption seeds; add its captions, or give --seeds PATH (a dataset of image, "
                    "instruction, chosen)"
                )
            if annotations is None:
                raise BuildError(
                    f"the knowledge base {config.index!r} is not a COCO corpus with captions; "
                    "give --seeds PATH (a dataset of image, instruction, chosen)"
                )
            try:
                chosen = seed_splits(annotations.splits, config.coco_split)
            except SplitError as e:
                raise BuildError(str(e)) from None
            it = coco_caption_seeds(
                annotations.root,
                prompts=config.prompts or DESCRIPTION_PROMPTS,
                caption=config.caption,
                seed=config.seed,
                annotations=SplitView(annotations, chosen),
                kb_id_for=kb.id_for_coco_image_id,
            )
        first = next(it, None)  # surface column errors now, not mid-build
    except SeedError as e:
        raise BuildError(str(e)) from None
    if first is None:
        return iter(())
    return itertools.chain([first], it)
