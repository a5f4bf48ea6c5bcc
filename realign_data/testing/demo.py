"""The README's "run the main job": sample corpus -> knowledge base -> dataset (annotation filler) -> HTML page."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from realign_data.building.builder import build
from realign_data.building.config import BuildConfig, BuildError
from realign_data.building.output import INSPECT_FILE

logger = logging.getLogger(__name__)


def run_demo(
    out: str | os.PathLike = "realign-demo", *, num_images: int = 200, seed: int = 0, progress: bool = True
) -> dict:
    """Write ``OUT/coco`` (synthetic COCO corpus), ``OUT/index`` (knowledge base), ``OUT/dataset`` (the dataset +
    ``build_report.json``) and ``OUT/dataset/inspect.html``.

    When pretrained CLIP or sentence-model weights are unavailable (offline) it says so, uses a randomly
    initialised encoder and the lexical gate, and records both in the provenance. Re-running resumes/reuses
    every stage. Returns the paths written and the number of pairs.
    """
    from realign_data.kb.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from realign_data.publish.inspect_page import write_inspect_html
    from realign_data.runtime.hub_deadline import hub_reachable
    from realign_data.testing.sample import make_sample_corpus

    if num_images < 1:
        raise BuildError(f"--num-images must be at least 1 (got {num_images}).")
    say = logger.info if progress else (lambda *a: None)
    out = Path(out).expanduser().resolve()
    corpus = out / "coco"
    if not (corpus / "annotations" / "captions_train2014.json").is_file():
        say("[1/4] Generating a %d-image synthetic COCO corpus in %s", num_images, corpus)
        make_sample_corpus(corpus, num_images=num_images, seed=seed, progress=progress, overwrite=True)
    else:
        say("[1/4] Using the corpus in %s", corpus)
    index = out / "index"
    pretrained = DEFAULT_PRETRAINED
    if not (index / "manifest.json").is_file():
        from realign_data.kb.encoder import pretrained_weights_cached

        if not hub_reachable() and not pretrained_weights_cached(DEFAULT_MODEL, DEFAULT_PRETRAINED):
            say(
                "Offline: pretrained CLIP weights (%s / %s) cannot be downloaded; using a randomly initialised "
                "encoder (retrieval is then arbitrary, the pipeline is real).",
                DEFAULT_MODEL,
                DEFAULT_PRETRAINED,
            )
            pretrained = "none"
    else:
        pretrained = json.loads((index / "manifest.json").read_text())["encoder"]["pretrained"]
    say("[2/4] Knowledge base in %s", index)
    config = BuildConfig(
        index=str(index),
        coco_root=str(corpus),
        out=str(out / "dataset"),
        kb_pretrained=pretrained,
        seed=seed,
        progress=progress,
    )
    try:
        say("[3/4] Building the dataset (annotation filler)")
        result = build(config)
    except BuildError as e:
        if pretrained == "none" or "could not build knowledge base" not in str(e):
            raise
        logger.warning("Pretrained CLIP weights unavailable (%s); using a randomly initialised encoder.", e)
        shutil.rmtree(index, ignore_errors=True)
        config.kb_pretrained = "none"
        result = build(config)
    say("[4/4] Writing the HTML report")
    html = write_inspect_html(result.out, Path(result.out) / INSPECT_FILE)
    return {
        "corpus": str(corpus),
        "index": str(index),
        "dataset": result.out,
        "pairs": result.pairs_written,
        "report": result.report_path,
        "html": str(html),
    }
