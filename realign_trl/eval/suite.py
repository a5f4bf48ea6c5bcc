"""The fixed held-out material of an evaluation: images, POPE questions and CHAIR ground truth.

An :class:`EvalSuite` is built once (annotations parsed, images read, questions drawn) and then evaluates any
number of models or checkpoints on exactly the same inputs. POPE and CHAIR use the same images: CHAIR asks for
a description of every image the POPE questions are about.

    suite = EvalSuite.from_coco("data/coco", split="val2014", num_images=500)          # draws POPE itself
    suite = EvalSuite.from_coco("data/coco", pope="pope-val2014")                      # a `realign-data pope` set
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

COCO_BENCHES = ("pope", "chair")
BENCHES = ("pope", "chair", "amber")  # amber: realign_trl.eval.amber, from the AMBER release (--amber-root)
POPE_PARSERS = ("robust", "reference")
CHAIR_SYNONYMS = ("reference", "extended")
VOCABULARIES = ("annotated", "coco")
CHAIR_PROMPT = "Please describe this image in detail."


class EvalError(ValueError):
    """An evaluation cannot run as asked (a user mistake, reported as one sentence)."""


def parse_benches(benches: str | Sequence[str]) -> tuple[str, ...]:
    """``"pope,chair"`` or a sequence -> validated tuple, in the order given, without repeats."""
    items = [b.strip().lower() for b in (benches.split(",") if isinstance(benches, str) else benches)]
    items = [b for b in dict.fromkeys(items) if b]
    bad = [b for b in items if b not in BENCHES]
    if bad or not items:
        raise EvalError(f"unknown benchmark {', '.join(bad) or '(none)'}; valid: {', '.join(BENCHES)}.")
    return tuple(items)


@dataclass
class EvalSuite:
    """Images (encoded bytes, decoded on demand), POPE questions per split and CHAIR ground truth per image.

    ``images`` keeps the evaluation order; ``pope[split]`` holds dicts with ``question_id, image_id, object,
    label, question``; ``chair_truth[image_id]`` the sorted ground-truth objects. ``describe()`` is what
    results record about the suite.
    """

    benches: tuple[str, ...]
    images: dict[int, bytes]
    pope: dict[str, list[dict]] = field(default_factory=dict)
    chair_truth: dict[int, list[str]] = field(default_factory=dict)
    chair_prompt: str = CHAIR_PROMPT
    pope_suffix: str = ""
    pope_parser: str = "robust"
    chair_synonyms: str = "reference"
    amber: Any = None  # --bench amber: the AMBER release (realign_trl.eval.amber.AmberData)
    source: dict = field(default_factory=dict)
    _decoded: OrderedDict[int, Any] = field(default_factory=OrderedDict, repr=False, compare=False)

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, config: Any, *, progress: bool = False) -> EvalSuite:
        """The suite an :class:`~realign_trl.eval.EvalConfig` describes (its benchmarks, corpus or question set,
        images, samplings, prompts and readings), drawn by :meth:`from_coco`."""
        splits = None if config.pope_splits is None else [s.strip() for s in config.pope_splits.split(",") if s.strip()]
        return cls.from_coco(
            config.coco_root,
            split=config.split,
            benches=config.bench,
            num_images=500 if config.num_images is None else config.num_images,
            seed=config.seed,
            min_objects=config.min_objects,
            pope=config.pope,
            pope_splits=splits,
            vocabulary=config.vocabulary,
            chair_prompt=config.chair_prompt,
            pope_suffix=config.pope_suffix,
            pope_parser=config.pope_parser,
            chair_synonyms=config.chair_synonyms,
            progress=progress,
        )

    @classmethod
    def from_coco(
        cls,
        coco_root: Optional[str | os.PathLike] = None,
        *,
        split: Optional[str] = None,
        benches: str | Sequence[str] = COCO_BENCHES,
        num_images: int = 500,
        seed: int = 0,
        min_objects: int = 3,
        objects_per_image: int = 3,
        pope: Any = None,
        pope_splits: Optional[Sequence[str]] = None,
        vocabulary: str = "annotated",
        chair_prompt: str = CHAIR_PROMPT,
        pope_suffix: str = "",
        pope_parser: str = "robust",
        chair_synonyms: str = "reference",
        progress: bool = False,
    ) -> EvalSuite:
        """Draw (or load) the evaluation material from a COCO-layout corpus.

        Args:
            coco_root: corpus root with ``annotations/instances_<split>.json`` (and captions for CHAIR's ground
                truth). May be omitted with ``pope`` for a POPE-only run, or when the question set was built
                locally (its ``realign_build.json`` names the corpus).
            split: the annotated split (default: the only one with instances).
            benches: ``"pope,chair"``, ``"pope"`` or ``"chair"``.
            num_images / seed / min_objects / objects_per_image: the images are the first ``num_images`` readable
                images with at least ``min_objects`` annotated categories in a ``seed``-ed order
                (:func:`realign_data.evalsets.pope_sampling.image_order`); POPE asks about ``objects_per_image`` objects of each.
            pope: a ``realign-data pope`` question set (directory, Hub id or ``DatasetDict``) to use instead of
                drawing one; its images are the suite's images (the first ``num_images`` of them).
            pope_splits: the samplings to evaluate (default: all three, or all the question set has).
            vocabulary: ``"annotated"`` (default) scores CHAIR on the categories the annotation file declares,
                ``"coco"`` on all 80 COCO categories. On MS-COCO both are the same; on a corpus annotating fewer
                categories (the synthetic sample has 14), "annotated" keeps words the annotations can never confirm
                (its "table" background, read as "dining table") from counting as hallucinations.
            chair_prompt / pope_suffix: the CHAIR instruction, and text appended to each POPE question (LLaVA-1.5
                uses " Answer the question using a single word or phrase."; the POPE paper asks the bare question).
            pope_parser: ``robust`` (default) or ``reference`` (the POPE/LLaVA evaluation rule); both are computed
                and compared on every run (:mod:`realign_trl.eval.scoring`).
            chair_synonyms: ``reference`` (default: the reference chair.py's reading) or ``extended``.
        """
        from realign_data.evalsets.pope import (
            PopeError,
            annotations_sha256,
            images_digest,
            open_annotations,
            select_images,
        )
        from realign_data.evalsets.pope_sampling import POPE_SPLITS, CorpusStats, pope_questions

        benches = parse_benches(benches)
        if "amber" in benches:
            raise EvalError(
                "--bench amber reads the AMBER release (--amber-root), not a COCO corpus: run it on its own."
            )
        if pope_parser not in POPE_PARSERS:
            raise EvalError(f"unknown POPE parser {pope_parser!r}; valid: {', '.join(POPE_PARSERS)}.")
        if chair_synonyms not in CHAIR_SYNONYMS:
            raise EvalError(f"unknown CHAIR synonym set {chair_synonyms!r}; valid: {', '.join(CHAIR_SYNONYMS)}.")
        if vocabulary not in VOCABULARIES:
            raise EvalError(f"unknown CHAIR vocabulary {vocabulary!r}; valid: {', '.join(VOCABULARIES)}.")
        if num_images < 1:
            raise EvalError(f"the number of images must be at least 1 (got {num_images}).")
        source: dict[str, Any] = {
            "benches": list(benches),
            "num_images": num_images,
            "seed": seed,
            "min_objects": min_objects,
            "vocabulary": vocabulary,
        }
        _check_pope_path(pope)
        if pope is not None and coco_root is None:
            coco_root, split = _corpus_of(pope, split)
        need_annotations = "chair" in benches or pope is None
        ann = None
        try:
            if need_annotations:
                if coco_root is None:
                    raise EvalError(
                        "a COCO-layout corpus is needed (--coco-root): POPE questions are drawn from its "
                        "instances and CHAIR's ground truth comes from its instances and captions."
                    )
                ann = open_annotations(coco_root, split)
                source.update(
                    coco_root=str(Path(coco_root).expanduser().resolve()),
                    split=ann.splits[0],
                    annotations_sha256=annotations_sha256(ann),
                )
            if pope is not None:
                images, questions = _from_question_set(pope, pope_splits, num_images)
                if ann is not None:
                    _check_drawn_from(pope, images, ann, source)
                source["pope"] = str(pope) if isinstance(pope, (str, os.PathLike)) else "DatasetDict"
                for drawn_by_the_set in ("seed", "min_objects"):  # the question set fixed these when it was built
                    source.pop(drawn_by_the_set)
            else:
                images = select_images(ann, num_images, seed=seed, min_objects=min_objects, progress=progress)
                questions = {}
                if "pope" in benches:
                    stats = CorpusStats.of(ann.categories(i) for i in ann.image_ids())
                    questions = pope_questions(
                        {i: ann.categories(i) for i in images},
                        stats,
                        seed=seed,
                        objects_per_image=objects_per_image,
                        samplings=tuple(pope_splits or POPE_SPLITS),
                    )
                    source["objects_per_image"] = objects_per_image
        except PopeError as e:
            raise EvalError(str(e)) from None
        if "pope" not in benches:
            questions = {}
        source["images_digest"] = images_digest(images)
        truth: dict[int, list[str]] = {}
        if "chair" in benches:
            from .scoring import ChairScorer

            missing = [i for i in images if not _known(ann, i)]
            if missing:
                raise EvalError(
                    f"{len(missing)} images of the POPE question set (e.g. image_id {missing[0]}) are not "
                    f"in the annotations of {source['coco_root']} split {source['split']}: CHAIR needs "
                    "the corpus the question set was built from (--coco-root, --split)."
                )
            vocab = ann.category_names() if vocabulary == "annotated" else None
            scorer = ChairScorer(vocab, synonyms=chair_synonyms)
            truth = {i: sorted(scorer.ground_truth(ann.categories(i), ann.captions(i))) for i in images}
            source["chair_vocabulary"] = sorted(scorer.vocabulary)
        suite = cls(
            benches=benches,
            images=images,
            pope=questions,
            chair_truth=truth,
            chair_prompt=chair_prompt,
            pope_suffix=pope_suffix,
            pope_parser=pope_parser,
            chair_synonyms=chair_synonyms,
            source=source,
        )
        return suite

    # ------------------------------------------------------------------------------------------ using
    def image(self, image_id: int):
        """The decoded RGB image (a small LRU cache: work is ordered by image, so each decodes about once)."""
        from realign_data.kb.corpus import open_image_bytes

        cached = self._decoded.get(image_id)
        if cached is not None:
            self._decoded.move_to_end(image_id)
            return cached
        img = open_image_bytes(self.images[image_id])
        self._decoded[image_id] = img
        if len(self._decoded) > 256:
            self._decoded.popitem(last=False)
        return img

    def select(self, image_ids: Sequence[int]) -> EvalSuite:
        """The same suite restricted to some images (a fixed subset, or one process's share)."""
        keep = [i for i in image_ids if i in self.images]
        wanted = set(keep)
        return replace(
            self,
            images={i: self.images[i] for i in keep},
            pope={s: [q for q in qs if q["image_id"] in wanted] for s, qs in self.pope.items()},
            chair_truth={i: t for i, t in self.chair_truth.items() if i in wanted},
            _decoded=OrderedDict(),
        )

    def head(self, num_images: int) -> EvalSuite:
        """The first ``num_images`` images of the suite."""
        return self.select(list(self.images)[:num_images])

    def describe(self) -> dict:
        return {
            **self.source,
            "benches": list(self.benches),
            "images": len(self.images),
            "pope_questions": {s: len(q) for s, q in self.pope.items()},
            "chair_prompt": self.chair_prompt,
            "pope_suffix": self.pope_suffix,
            "pope_parser": self.pope_parser,
            "chair_synonyms": self.chair_synonyms,
        }


def refuse_training_images(suite: EvalSuite, exclude_dataset: str) -> None:
    """Raise :class:`EvalError` when an image of ``suite`` appears in the training data of ``exclude_dataset``
    (a build directory or Hub id; matched by COCO id or file bytes, see :mod:`realign_data.evalsets.overlap`)."""
    from realign_data.evalsets.overlap import OverlapError, training_images

    try:
        training = training_images(exclude_dataset)
    except OverlapError as e:
        raise EvalError(str(e)) from None
    shared = [i for i, data in suite.images.items() if training.contains(image_id=i, data=data)]
    if shared:
        raise EvalError(
            f"{len(shared)} of the {len(suite.images)} evaluation images (e.g. image_id {shared[0]}) "
            f"appear in the training data of {exclude_dataset}: build a question set without them with "
            f"`realign-data pope --exclude-dataset {exclude_dataset}` and pass it with --pope."
        )
    suite.source["exclude_dataset"] = str(exclude_dataset)


def _check_pope_path(pope: Any) -> None:
    """A question set named by a local path (``/``, ``.``, ``~``) that does not exist: say so (not "--coco-root")."""
    if (
        isinstance(pope, (str, os.PathLike))
        and str(pope).startswith(("/", ".", "~"))
        and not Path(pope).expanduser().exists()
    ):
        raise EvalError(
            f"POPE question set {str(pope)!r} does not exist; give a `realign-data pope` output "
            "directory or a Hub dataset id."
        )


def _check_drawn_from(pope: Any, images: dict[int, bytes], ann, source: dict) -> None:
    """Refuse a question set drawn from another corpus than ``ann`` (other pictures under the same ids, or other
    annotation files than the set recorded): CHAIR's ground truth and the POPE labels would disagree."""
    config = {}
    if isinstance(pope, (str, os.PathLike)):
        try:
            config = json.loads((Path(pope).expanduser() / "realign_build.json").read_text())
        except (OSError, ValueError):
            config = {}
    where = f"{source['coco_root']} split {source['split']}"
    for image_id, data in images.items():
        try:
            same = ann.image_path(image_id).read_bytes() == data
        except (KeyError, OSError):
            continue  # not in these annotations: reported by the CHAIR check below
        if not same:
            raise EvalError(
                f"the POPE question set {str(pope)!r} was drawn from other pictures than {where} (image_id "
                f"{image_id} differs): evaluate it with the corpus it was built from"
                f"{' (' + str(config['coco_root']) + ')' if config.get('coco_root') else ''}."
            )
    recorded = config.get("annotations_sha256") or {} if isinstance(config, dict) else {}
    changed = [name for name, sha in recorded.items() if source["annotations_sha256"].get(name, sha) != sha]
    if changed:
        raise EvalError(
            f"the POPE question set {str(pope)!r} was drawn from other annotations than {where} "
            f"({changed[0]} differs): evaluate it with the corpus it was built from, or rebuild it with "
            "`realign-data pope`."
        )


def _known(ann, image_id: int) -> bool:
    try:
        ann.image_info(image_id)
        return True
    except KeyError:
        return False


def _corpus_of(pope: Any, split: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """The corpus a local question set was built from (its realign_build.json), when it still exists."""
    if not isinstance(pope, (str, os.PathLike)):
        return None, split
    try:
        config = json.loads((Path(pope).expanduser() / "realign_build.json").read_text())
    except (OSError, ValueError):
        return None, split
    root = config.get("coco_root")
    if root and Path(root).is_dir():
        return root, split or config.get("split")
    return None, split


def _from_question_set(pope: Any, splits: Optional[Sequence[str]], num_images: int):
    """Images and questions of a built question set (its first ``num_images`` images, in question order)."""
    import datasets

    from realign_data.evalsets.pope import load_pope

    ds = pope if isinstance(pope, datasets.DatasetDict) else load_pope(pope, splits)
    if splits is not None:
        ds = datasets.DatasetDict({s: ds[s] for s in splits})
    images: dict[int, bytes] = {}
    questions: dict[str, list[dict]] = {}
    for split_name, part in ds.items():
        meta = part.select_columns(
            [c for c in ("question_id", "image_id", "object", "label", "question") if c in part.column_names]
        )
        rows = meta.to_list()
        new_ids = [i for i in dict.fromkeys(r["image_id"] for r in rows) if i not in images]
        room = max(0, num_images - len(images))
        if new_ids[:room]:
            wanted = set(new_ids[:room])
            first_row = {}
            for k, r in enumerate(rows):
                if r["image_id"] in wanted and r["image_id"] not in first_row:
                    first_row[r["image_id"]] = k
            pics = part.cast_column("image", datasets.Image(decode=False)).select_columns(["image"])
            for image_id, k in first_row.items():
                images[image_id] = _image_bytes(pics[k]["image"])
        keep = set(images)
        questions[split_name] = [
            dict(r, question_id=r.get("question_id", k + 1)) for k, r in enumerate(rows) if r["image_id"] in keep
        ]
    return images, questions


def _image_bytes(value: dict) -> bytes:
    if value.get("bytes"):
        return value["bytes"]
    if value.get("path") and Path(value["path"]).is_file():
        return Path(value["path"]).read_bytes()
    raise EvalError("an image of the POPE question set has neither bytes nor a readable path.")
