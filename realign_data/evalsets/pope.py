"""POPE question sets (Li et al., 2023, *Evaluating Object Hallucination in Large Vision-Language Models*).

Per image, POPE asks "Is there a {object} in the image?" about up to 3 annotated objects (answer ``yes``) and as
many absent ones (answer ``no``). The absent objects come from three published negative samplings, one split
each:

* ``random``: any category of the corpus the image lacks;
* ``popular``: the most frequent categories of the corpus (number of images containing them) the image lacks;
* ``adversarial``: for each asked object, the category that co-occurs most often with it in the corpus and
  that the image lacks.

Order and fall-backs follow the reference ``utils.py`` of the POPE repository: questions alternate positive,
negative; a ranking with nothing left falls back to a random absent category; a category is asked about once per
image. Two deliberate differences: frequencies and co-occurrences are counted over the whole annotated split
(the reference counts over the 500 sampled images; on COCO val2014 the top of both rankings is the same), and
everything is drawn from seeded generators with ties broken by name, so a seed gives the same question set.
The asked (positive) objects of an image are the same in every split.

    from realign_data.evalsets.pope import build_pope
    ds = build_pope("data/coco", "pope-val2014", split="val2014", num_images=500)   # DatasetDict, 3 splits

The question set is data: a ``datasets.DatasetDict`` saved with ``save_to_disk`` (images embedded, so it can be
pushed with ``realign-data push`` like any built dataset) next to ``realign_build.json`` (how it was built) and
``build_report.json`` (counts, skipped images).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from realign_data.evalsets.pope_sampling import POPE_SPLITS, CorpusStats, image_order, pope_questions
from realign_data.kb.corpus import CocoAnnotations, CorpusError

logger = logging.getLogger(__name__)

COLUMNS = ("question_id", "image_id", "file_name", "image", "question", "object", "label")


class PopeError(ValueError):
    """A POPE question set cannot be built as asked (a user mistake, reported as one sentence)."""


@dataclass
class PopeConfig:
    """How a question set is drawn; saved as ``realign_build.json`` next to the dataset."""

    coco_root: str
    split: Optional[str] = None
    num_images: int = 500
    seed: int = 0
    objects_per_image: int = 3
    min_objects: int = 3
    samplings: tuple[str, ...] = POPE_SPLITS
    exclude_dataset: Optional[str] = None  # images of this training dataset are skipped (realign_data.evalsets.overlap)
    annotations_sha256: dict = field(default_factory=dict)  # {annotation file name: sha256} the set was drawn from
    images_digest: Optional[str] = None  # images_digest() of the set's images: what `realign-trl eval` checks
    benchmark: str = "pope"  # marks the file as a POPE build (the Hub card and `realign-trl eval` read it)

    def check(self) -> None:
        if self.num_images < 1:
            raise PopeError(f"--num-images must be at least 1 (got {self.num_images}).")
        if self.objects_per_image < 1:
            raise PopeError(f"--objects-per-image must be at least 1 (got {self.objects_per_image}).")
        if self.min_objects < 1:
            raise PopeError(f"--min-objects must be at least 1 (got {self.min_objects}).")
        bad = [s for s in self.samplings if s not in POPE_SPLITS]
        if bad or not self.samplings:
            raise PopeError(f"unknown POPE sampling {', '.join(bad) or '(none)'}; valid: {', '.join(POPE_SPLITS)}.")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["samplings"] = list(self.samplings)
        d["corpus"] = {"type": "coco", "root": self.coco_root, "split": self.split}  # read for the card's licence
        return d


def open_annotations(coco_root: str | os.PathLike, split: Optional[str] = None) -> CocoAnnotations:
    """The instance annotations of one split; a corpus without instances is refused in one sentence."""
    root = Path(coco_root).expanduser()
    if not root.is_dir():
        raise PopeError(f"COCO root {str(coco_root)!r} does not exist or is not a directory.")
    ann_dir = root / "annotations"
    with_instances = (
        sorted(p.name[len("instances_") : -len(".json")] for p in ann_dir.glob("instances_*.json"))
        if ann_dir.is_dir()
        else []
    )
    if split is None:
        if len(with_instances) != 1:
            raise PopeError(
                f"COCO root {str(root)!r} has no instance annotations (annotations/instances_<split>.json): POPE and "
                "CHAIR need object annotations."
                if not with_instances
                else f"COCO root {str(root)!r} has instances for several splits ({', '.join(with_instances)}): choose one "
                "with --split."
            )
        split = with_instances[0]
    elif split not in with_instances:
        raise PopeError(
            f"COCO root {str(root)!r} has no instance annotations for split {split!r} "
            f"(annotations/instances_{split}.json); POPE and CHAIR need object annotations"
            + (f" (splits with instances: {', '.join(with_instances)})." if with_instances else ".")
        )
    try:
        ann = CocoAnnotations(root, splits=[split])
    except CorpusError as e:  # a truncated or misshapen file: one sentence
        raise PopeError(f"{e}.") from None
    if not any(ann.categories(i) for i in ann.image_ids()):
        raise PopeError(
            f"the instance annotations of split {split!r} in {str(root)!r} list no objects: POPE and "
            "CHAIR need object annotations."
        )
    return ann


def annotations_sha256(ann: CocoAnnotations) -> dict[str, str]:
    """``{file name: sha256}`` of the annotation files of ``ann``'s splits (instances, and captions when present):
    what a question set or an evaluation records as drawn from."""
    from realign_data.runtime.atomic import file_sha256

    out = {}
    for split in ann.splits:
        for kind in ("instances", "captions"):
            path = ann.root / "annotations" / f"{kind}_{split}.json"
            if path.is_file():
                out[path.name] = file_sha256(path)
    return out


def images_digest(images: dict[int, bytes]) -> str:
    """One sha256 over ``(image_id, sha256 of its bytes)`` in id order: the same ids with other pictures differ."""
    import hashlib

    h = hashlib.sha256()
    for image_id in sorted(images):
        h.update(f"{image_id}:{hashlib.sha256(images[image_id]).hexdigest()}\n".encode())
    return h.hexdigest()


@dataclass
class PopeReport:
    images: int = 0
    questions: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (image_id, reason)
    eligible_images: int = 0
    excluded: list[int] = field(default_factory=list)  # image ids found in --exclude-dataset's training data

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "eligible_images": self.eligible_images,
            "questions": self.questions,
            "skipped": [{"image_id": i, "reason": r} for i, r in self.skipped],
            "excluded": self.excluded,
        }


@dataclass
class PopeBuild:
    """What :func:`build_pope` made: the question set, how it was drawn, counts and skipped images."""

    dataset: object  # datasets.DatasetDict, one split per sampling
    config: PopeConfig
    report: PopeReport
    out: Optional[Path] = None


def select_images(
    ann: CocoAnnotations,
    num_images: int,
    *,
    seed: int = 0,
    min_objects: int = 1,
    progress: bool = False,
    report: Optional[PopeReport] = None,
    exclude=None,
) -> dict[int, bytes]:
    """The first ``num_images`` readable images of :func:`image_order`, as ``{image_id: file bytes}``.

    Unreadable or missing files are skipped (and listed in ``report``), and so are images of ``exclude`` (a
    :class:`realign_data.evalsets.overlap.TrainingImages`: they appear in training data); the next image of the order takes
    their place. Raises :class:`PopeError` when no image qualifies.
    """
    from realign_data.kb.corpus import open_image_bytes

    order = image_order(ann, seed, min_objects)
    if report is not None:
        report.eligible_images = len(order)
    if not order:
        raise PopeError(
            f"no image of {str(ann.root)!r} has at least {min_objects} annotated object categories; "
            "lower --min-objects."
        )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=min(num_images, len(order)), desc="Reading images", unit="img")
    chosen: dict[int, bytes] = {}
    for image_id in order:
        if len(chosen) == num_images:
            break
        try:
            data = ann.image_path(image_id).read_bytes()
            open_image_bytes(data)  # decodes fully: a truncated file is skipped here, not at evaluation
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped and reported
            if report is not None:
                report.skipped.append((image_id, f"{type(e).__name__}: {e}"))
            continue
        if exclude is not None and exclude.contains(image_id=image_id, file_name=ann.file_name(image_id), data=data):
            if report is not None:
                report.excluded.append(image_id)
            continue
        chosen[image_id] = data
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not chosen:
        raise PopeError(f"none of the {len(order)} eligible images of {str(ann.root)!r} could be read.")
    return chosen


def features():
    import datasets

    return datasets.Features(
        {
            "question_id": datasets.Value("int64"),
            "image_id": datasets.Value("int64"),
            "file_name": datasets.Value("string"),
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "object": datasets.Value("string"),
            "label": datasets.Value("string"),
        }
    )


def build_pope(
    coco_root: str | os.PathLike,
    out: Optional[str | os.PathLike] = None,
    *,
    split: Optional[str] = None,
    num_images: int = 500,
    seed: int = 0,
    objects_per_image: int = 3,
    min_objects: int = 3,
    samplings: Sequence[str] = POPE_SPLITS,
    exclude_dataset: Optional[str] = None,
    progress: bool = False,
):
    """Build a POPE question set from a COCO-layout corpus; save it to ``out`` when given.

    Returns a :class:`PopeBuild` whose ``dataset`` is a ``datasets.DatasetDict`` with one split per sampling and
    the columns ``question_id, image_id, file_name, image, question, object, label``. ``out`` is replaced
    atomically (a previous question set there is overwritten, never appended to). ``exclude_dataset`` (a build
    directory or Hub id) skips the images its training rows contain, with a warning saying how many.
    """
    import datasets

    config = PopeConfig(
        coco_root=str(Path(coco_root).expanduser().resolve()),
        split=split,
        num_images=num_images,
        seed=seed,
        objects_per_image=objects_per_image,
        min_objects=min_objects,
        samplings=tuple(samplings),
        exclude_dataset=exclude_dataset,
    )
    config.check()
    if out is not None:
        _check_out(Path(out))
    ann = open_annotations(config.coco_root, split)
    config.split = ann.splits[0]
    config.annotations_sha256 = annotations_sha256(ann)
    report = PopeReport()
    exclude = _training_images(exclude_dataset) if exclude_dataset else None
    chosen = select_images(
        ann, num_images, seed=seed, min_objects=min_objects, progress=progress, report=report, exclude=exclude
    )
    if report.excluded:
        logger.warning(
            "POPE: skipped %d images of %s that appear in the training data of %s; other images of the "
            "split took their place (listed under 'excluded' in build_report.json)",
            len(report.excluded),
            config.split,
            exclude_dataset,
        )
    stats = CorpusStats.of(ann.categories(i) for i in ann.image_ids())
    questions = pope_questions(
        {i: ann.categories(i) for i in chosen},
        stats,
        seed=seed,
        objects_per_image=objects_per_image,
        samplings=config.samplings,
    )
    config.images_digest = images_digest(chosen)
    report.images = len(chosen)
    report.questions = {s: len(q) for s, q in questions.items()}
    feats = features()
    parts = {}
    for sampling, rows in questions.items():
        columns: dict[str, list] = {c: [] for c in COLUMNS}
        for q in rows:
            name = ann.file_name(q["image_id"])
            columns["question_id"].append(q["question_id"])
            columns["image_id"].append(q["image_id"])
            columns["file_name"].append(f"{config.split}/{name}")
            columns["image"].append({"bytes": chosen[q["image_id"]], "path": name})
            for key in ("question", "object", "label"):
                columns[key].append(q[key])
        parts[sampling] = datasets.Dataset.from_dict(columns, features=feats, split=datasets.NamedSplit(sampling))
    ds = datasets.DatasetDict(parts)
    if out is not None:
        _save(ds, Path(out), config, report)
    return PopeBuild(ds, config, report, Path(out) if out is not None else None)


def _training_images(dir_or_repo: str):
    from realign_data.evalsets.overlap import OverlapError, training_images

    try:
        return training_images(dir_or_repo)
    except OverlapError as e:
        raise PopeError(str(e)) from None


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_pope_dir(out))):
        raise PopeError(f"--out {str(out)!r} exists and is not a POPE question set; choose a new or empty directory.")


def _is_pope_dir(path: Path) -> bool:
    import json

    try:
        return json.loads((path / "realign_build.json").read_text()).get("benchmark") == "pope"
    except (OSError, ValueError, AttributeError):
        return False


def _save(ds, out: Path, config: PopeConfig, report: PopeReport) -> None:
    """save_to_disk into a sibling temporary directory, then swap it in: never a half-written question set."""
    from realign_data.runtime.atomic import atomic_write_json

    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    import datasets

    bars_were_off = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()  # three "Saving the dataset" bars say nothing the summary does not
    try:
        ds.save_to_disk(str(tmp))
        atomic_write_json(tmp / "realign_build.json", config.to_dict())
        atomic_write_json(tmp / "build_report.json", report.to_dict())
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        if not bars_were_off:
            datasets.utils.enable_progress_bars()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def load_pope(path_or_id: str | os.PathLike, splits: Optional[Sequence[str]] = None):
    """Open a POPE question set: a ``realign-data pope`` output directory or a Hub dataset id.

    Returns a ``datasets.DatasetDict`` restricted to ``splits`` (default: every sampling it has).
    """
    import datasets

    local = Path(path_or_id).expanduser()
    try:
        if local.exists():
            ds = datasets.load_from_disk(str(local))
        else:
            ds = datasets.load_dataset(str(path_or_id))
    except Exception as e:
        raise PopeError(f"cannot open POPE question set {str(path_or_id)!r}: {type(e).__name__}: {e}") from e
    if not isinstance(ds, datasets.DatasetDict):
        ds = datasets.DatasetDict({"random": ds})
    missing = [
        c for c in ("image_id", "image", "question", "object", "label") if c not in ds[next(iter(ds))].column_names
    ]
    if missing:
        raise PopeError(
            f"{str(path_or_id)!r} is not a POPE question set (no column {', '.join(missing)}); build one "
            "with `realign-data pope`."
        )
    if splits is not None:
        absent = [s for s in splits if s not in ds]
        if absent:
            raise PopeError(
                f"POPE question set {str(path_or_id)!r} has no split {', '.join(absent)} (it has {', '.join(ds)})."
            )
        ds = datasets.DatasetDict({s: ds[s] for s in splits})
    return ds


# ----------------------------------------------------------------------------------------------- Hub card
CARD_TAGS = ["pope", "hallucination", "evaluation", "vision", "realign"]
CARD_CITATION = """@inproceedings{li2023pope,
  title={Evaluating Object Hallucination in Large Vision-Language Models},
  author={Li, Yifan and Du, Yifan and Zhou, Kun and Wang, Jinpeng and Zhao, Wayne Xin and Wen, Ji-Rong},
  booktitle={Proceedings of the 2023 Conference on Empirical Methods in Natural Language Processing},
  year={2023}
}"""


def is_pope_config(config: Optional[dict]) -> bool:
    """Whether a build configuration (``realign_build.json``) describes a POPE question set."""
    return isinstance(config, dict) and config.get("benchmark") == "pope"
