"""``BuildConfig``: every knob of a dataset build, in one place.

Each field carries its help, its choices and its ``--help`` section in ``metadata`` (as TRL's configs do);
``realign-data build`` generates its options from these fields (:func:`realign_data.cli_common.config_options`,
the one generator of every command's options), so every field has a flag and the help cannot drift from the code. Values are checked in ``__post_init__``: a bad
value is a :class:`BuildError` with one sentence naming it and what would be valid.

Metadata keys: ``help``; ``choices`` (the valid values, listed in ``--help``); ``section`` (the ``--help``
panel); ``flag`` (when the flag is not ``--field-name``); ``default_text`` (what a ``None`` default means);
``runtime`` (True when the field does not change the rows: it may differ between a run and its resume);
``cli_default`` / ``cli_help`` (the command line's own default, and what its help adds).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from realign_data.building import policy
from realign_data.building.fillers import FILLERS
from realign_data.building.gate import GATES
from realign_data.building.masking import MASKERS, SPAN_KINDS
from realign_data.building.negatives import KINDS, NUM_DIFFUSION_STEPS, SCHEDULES
from realign_data.building.quality import DEFAULT_MAX_LENGTH_RATIO
from realign_data.building.seeds import CAPTION_CHOICES, DEFAULT_MAX_IMAGE_BYTES
from realign_data.runtime.devices import DEVICE_HELP, DEVICE_MAPS, DTYPE_ALIASES, DTYPES, DeviceError, check_device_name
from realign_data.runtime.redact import check_env_name, redact_tree, redact_url

FORMATS = ("arrow", "parquet")
CURRICULA = (None, "easy-to-hard")
CHOSEN_BACKENDS = ("auto", "transformers", "openai")
SEEDS, PIPELINE, NEGATIVE, RUN = "Knowledge base and seeds", "Pipeline", "Visual negative and curriculum", "Run"
SECTIONS = (SEEDS, PIPELINE, NEGATIVE, RUN)  # the order of the ``--help`` panels


class BuildError(ValueError):
    """A build cannot run as asked (a user mistake, reported as one sentence)."""


def _opt(default: Any, help: str, section: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, "section": section, **meta})


@dataclass
class BuildConfig:
    """Everything a build depends on. JSON-serialisable (:meth:`to_dict` / :meth:`from_dict`); the field
    metadata documents each knob (``realign-data build --help`` prints it); see ``docs/building.md``."""

    index: str = _opt("coco", "Knowledge base name (under $REALIGN_HOME/indexes) or directory.", SEEDS)
    out: str = _opt(
        "realign-dataset",
        "Output directory (resumes when it holds the same build).",
        RUN,
        runtime=True,
        cli_default=None,
        cli_help=" Required unless --config gives it.",
    )
    coco_root: Optional[str] = _opt(
        None,
        "COCO root (train2014/ + annotations/): builds --index from it when missing; its captions are the "
        "default seeds and its instances feed the annotation filler.",
        SEEDS,
        default_text="the index's corpus",
    )
    coco_split: Optional[str] = _opt(
        None,
        "COCO split of the seeds and of a knowledge base built from --coco-root ('all': every split). "
        "Evaluation splits (val2014: POPE, CHAIR) are warned about in the report and card.",
        SEEDS,
        default_text="train2014 when present, else all",
    )
    kb_model: Optional[str] = _opt(
        None, "open_clip model used when the index has to be built.", SEEDS, default_text="ViT-B-32"
    )
    kb_pretrained: Optional[str] = _opt(
        None,
        "open_clip weights used when the index has to be built (a tag, a checkpoint file or 'none').",
        SEEDS,
        default_text="laion2b_s34b_b79k",
    )
    seeds: Optional[str] = _opt(
        None,
        "Seed dataset: .jsonl/.json/.parquet/.csv, save_to_disk dir or Hub id.",
        SEEDS,
        default_text="COCO captions",
    )
    seed_split: Optional[str] = _opt(None, "Split of the seed dataset.", SEEDS, default_text="train")
    seeds_encoding: str = _opt(
        "utf-8", "Text encoding of a .jsonl/.json/.csv seeds file (e.g. latin-1, cp1252).", SEEDS
    )
    image_column: Optional[str] = _opt(None, "Seed image column (a path or an Image).", SEEDS, default_text="guessed")
    instruction_column: Optional[str] = _opt(None, "Seed instruction column.", SEEDS, default_text="guessed")
    chosen_column: Optional[str] = _opt(None, "Seed chosen-answer column.", SEEDS, default_text="guessed")
    id_column: Optional[str] = _opt(None, "Seed id column.", SEEDS, default_text="row number")
    image_root: Optional[str] = _opt(
        None,
        "Directory seed image paths are relative to; a path that leaves it once "
        "resolved (.., an absolute path, a symbolic link) is dropped as "
        "outside_image_root.",
        SEEDS,
        default_text="as written",
    )
    allow_outside_root: bool = _opt(
        False, "Read seed images outside --image-root too.", SEEDS, flag="--allow-outside-root/--no-allow-outside-root"
    )
    max_image_bytes: int = _opt(
        DEFAULT_MAX_IMAGE_BYTES,
        "Largest seed image file read, in bytes (larger: dropped "
        "as image_too_large). Only regular files are read (a FIFO or device: not_a_file).",
        SEEDS,
    )
    prompts: Optional[list] = _opt(
        None,
        "COCO seeds: a description prompt (repeat for several).",
        SEEDS,
        flag="--prompt",
        default_text="5 built-in prompts",
    )
    caption: str = _opt(
        "longest", "COCO seeds: which human caption is the chosen answer (all: joined).", SEEDS, choices=CAPTION_CHOICES
    )
    chosen_from: Optional[str] = _opt(
        None, "VLM that writes the chosen answer of seeds that have none.", SEEDS, default_text="none"
    )
    chosen_backend: str = _opt(
        "auto",
        "Backend of --chosen-from (auto: the filler's when it is a VLM backend, else transformers).",
        SEEDS,
        choices=CHOSEN_BACKENDS,
    )
    responses_from: Optional[str] = _opt(
        None, "On-policy: the policy whose answers are checked and corrected.", SEEDS, default_text="off"
    )
    responses_backend: str = _opt("auto", policy.BACKEND_HELP, SEEDS, choices=CHOSEN_BACKENDS)
    num_responses: int = _opt(1, "On-policy: answers sampled per seed.", SEEDS)
    temperature: float = _opt(0.7, "On-policy: sampling temperature (0: greedy; needs > 0 with K > 1).", SEEDS)
    round: int = _opt(0, "On-policy: the round recorded in every row.", SEEDS)
    mask_kinds: Optional[list] = _opt(
        None,
        "Span kind to mask (repeat for several); on-policy: the kinds of fact checked (object, count, color).",
        PIPELINE,
        flag="--mask-kind",
        choices=SPAN_KINDS,
        default_text="all",
    )
    masker: str = _opt(
        "lexicon",
        "Who finds the visual facts: the model-free lexicon, or the filler's model (with the lexicon as fallback).",
        PIPELINE,
        choices=MASKERS,
    )
    top_k: int = _opt(8, "Retrieved images tried per seed, most similar first.", PIPELINE)
    max_similarity: float = _opt(
        0.95, "Retrieved images more similar than this (near-duplicates) are skipped.", PIPELINE
    )
    filler: str = _opt(
        "annotation", "Filler backend (annotation is model-free; the others need --model).", PIPELINE, choices=FILLERS
    )
    model: Optional[str] = _opt(
        None, "Filler model: checkpoint / Hub id, or served model name.", PIPELINE, default_text="none"
    )
    base_url: Optional[str] = _opt(
        None, "OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.", PIPELINE, default_text="$OPENAI_BASE_URL"
    )
    api_key_env: str = _opt("OPENAI_API_KEY", "Environment variable holding the API key.", PIPELINE, runtime=True)
    concurrency: int = _opt(16, "OpenAI filler: requests in flight.", PIPELINE, runtime=True)
    max_retries: int = _opt(5, "OpenAI filler: retries on 429/5xx/timeouts.", PIPELINE, runtime=True)
    request_timeout: float = _opt(
        60.0,
        "OpenAI filler: seconds one attempt may take in all (connecting, sending, the whole answer).",
        PIPELINE,
        runtime=True,
    )
    retry_failed: bool = _opt(
        True,
        "A re-run retries the seeds that failed for a transient reason (network, HTTP "
        "error, timeout of the filler service); permanent drops stay dropped.",
        RUN,
        runtime=True,
        flag="--retry-failed/--no-retry-failed",
    )
    max_new_tokens: int = _opt(128, "VLM fillers: generation bound.", PIPELINE)
    batch_size: int = _opt(8, "Transformers filler: prompts per generate call.", PIPELINE)
    device: str = _opt(
        "auto",
        f"Device of the models (transformers filler, sentence gate, encoder): {DEVICE_HELP}.",
        PIPELINE,
        runtime=True,
    )
    dtype: str = _opt(
        "auto",
        "Transformers filler precision (auto: bf16 on GPUs that support it, else fp16 on CUDA; fp32 on the CPU).",
        PIPELINE,
        choices=DTYPES,
    )
    device_map: Optional[str] = _opt(
        None,
        "Spread a transformers filler too large for one GPU over several "
        "(accelerate's device_map; under torchrun each process gets its share of the "
        "node's GPUs).",
        PIPELINE,
        runtime=True,
        choices=DEVICE_MAPS,
        default_text="one device",
    )
    gate: str = _opt(
        "auto", "Similarity gate (auto: the sentence model, else the lexical TF-IDF gate).", PIPELINE, choices=GATES
    )
    gate_model: str = _opt("sentence-transformers/all-MiniLM-L6-v2", "SentenceTransformer of the gate.", PIPELINE)
    sim_threshold: float = _opt(
        0.95, "A fill is accepted when its similarity to the chosen answer is below this.", PIPELINE
    )
    quality_filters: bool = _opt(
        True,
        "Quality floor of a fill (RLAIF-V style): it keeps the unmasked words of the "
        "chosen answer in order, its length is within --max-length-ratio, and it is not "
        "a duplicate of another seed's rejected answer of the same image.",
        PIPELINE,
        flag="--quality-filters/--no-quality-filters",
    )
    max_length_ratio: float = _opt(
        DEFAULT_MAX_LENGTH_RATIO,
        "Quality filter: largest ratio between the word counts of the fill and the chosen answer (either way).",
        PIPELINE,
    )
    min_similarity: Optional[float] = _opt(
        None,
        "Fills less similar than this to the chosen answer (gate similarity) are not kept.",
        PIPELINE,
        default_text="off",
    )
    image_negative: str = _opt(
        "retrieval",
        "Rejected image of the visual pair: the retrieved image (Re-Align), or "
        "the original perturbed (region-noise: MFPO, crop: mDPO, noise: POVID).",
        NEGATIVE,
        choices=KINDS,
    )
    noise_step: int = _opt(
        500, f"region-noise/noise: forward-diffusion step t in [0, {NUM_DIFFUSION_STEPS - 1}] (POVID's 500).", NEGATIVE
    )
    noise_schedule: str = _opt(
        "sigmoid",
        "region-noise/noise: beta schedule (sigmoid: POVID's and Re-Align's code; "
        "linear: DDPM's, ~3x stronger at t=500; cosine: improved DDPM's).",
        NEGATIVE,
        choices=SCHEDULES,
    )
    crop_min_area: float = _opt(0.01, "crop: smallest area fraction kept.", NEGATIVE)
    crop_max_area: float = _opt(0.2, "crop: largest area fraction kept.", NEGATIVE)
    difficulty_image_weight: float = _opt(0.5, "Weight of image closeness in the difficulty score.", NEGATIVE)
    curriculum: Optional[str] = _opt(
        None,
        "Order rows by difficulty and also write easy/medium/hard splits (none: seed order).",
        NEGATIVE,
        choices=tuple(c for c in CURRICULA if c),
        default_text="none",
    )
    max_samples: Optional[int] = _opt(None, "Use only the first N seeds.", RUN, default_text="all")
    seed: int = _opt(0, "Seed of every random choice (same seed = same bytes).", RUN)
    num_shards: Optional[int] = _opt(
        None,
        "Split the seeds over N separately started processes (array jobs): each "
        "writes its chunks; the same command without --num-shards/--shard-index then "
        "writes the dataset. Under torchrun/accelerate leave it unset.",
        RUN,
        default_text="WORLD_SIZE, processes wait for each other",
    )
    shard_index: Optional[int] = _opt(None, "This process's shard, in [0, --num-shards).", RUN, default_text="none")
    wait_timeout: float = _opt(
        3600.0,
        "Processes launched together: seconds one waits without any progress of the "
        "others (a finished chunk, rank 0 writing the dataset) before it stops with an error.",
        RUN,
        runtime=True,
    )
    chunk_size: int = _opt(64, "Seeds per checkpoint.", RUN)
    format: str = _opt("arrow", "Dataset files: save_to_disk Arrow, or data/*.parquet shards.", RUN, choices=FORMATS)
    progress: bool = _opt(
        True,
        "Progress bar, stage messages and the final summary.",
        RUN,
        runtime=True,
        flag=("--progress/--quiet", " /-q"),
    )

    def __post_init__(self) -> None:
        if isinstance(self.curriculum, str) and self.curriculum.lower() == "none":  # the CLI passes a string
            self.curriculum = None
        for name in ("prompts", "mask_kinds"):  # an empty repeatable flag means "the default"
            if getattr(self, name) is not None and not getattr(self, name):
                setattr(self, name, None)
        self.dtype = DTYPE_ALIASES.get(self.dtype, self.dtype)  # torch's names (bfloat16 ...), as earlier configs had
        self.validate()

    # --------------------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        """Every field, as written to files (``realign_build.json``, the report): URL credentials redacted."""
        return redact_tree(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> BuildConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise BuildError(f"unknown build option(s) {unknown}; valid: {', '.join(sorted(names))}")
        return cls(**_check_types(cls, d))

    def semantic(self) -> dict:
        """The options the rows depend on (runtime fields and sharding excluded: shards of one build share these)."""
        skip = {f.name for f in dataclasses.fields(self) if f.metadata.get("runtime")} | {"num_shards", "shard_index"}
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def filler_options(self, kind: Optional[str] = None) -> dict:
        """Keyword arguments of :func:`realign_data.building.fillers.load_filler` for the filler backend ``kind``
        (default: ``--filler``): each backend gets the options it takes, and only those."""
        kind = kind or self.filler
        if kind == "transformers":
            return dict(
                model=self.model,
                batch_size=self.batch_size,
                max_new_tokens=self.max_new_tokens,
                device=self.device,
                dtype=self.dtype,
                device_map=self.device_map,
                seed=self.seed,
            )
        if kind == "openai":
            return dict(
                model=self.model,
                base_url=self.base_url,
                api_key_env=self.api_key_env,
                concurrency=self.concurrency,
                max_retries=self.max_retries,
                timeout=self.request_timeout,
                max_tokens=self.max_new_tokens,
                seed=self.seed,
            )
        return {}

    def policy_backend(self) -> str:
        """The backend that answers as the policy (``--responses-from``): openai with --base-url, else transformers."""
        return policy.backend_of(self)

    # ------------------------------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`BuildError` for the first bad value (also run by ``__post_init__``)."""
        for f in dataclasses.fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if not choices or value is None:
                continue
            bad = [v for v in (value if isinstance(value, list) else [value]) if v not in choices]
            if bad:
                raise BuildError(_choice_error(f.name, value, choices))
        try:
            check_device_name(self.device)
        except DeviceError as e:
            raise BuildError(str(e)) from None
        key_mistake = check_env_name(self.api_key_env)
        checks = [
            (key_mistake is None, key_mistake or ""),
            (
                self.base_url is None or _is_http_url(self.base_url),
                f"--base-url {redact_url(self.base_url)!r} is not an http(s) URL; give the endpoint root, e.g. "
                "http://localhost:8000/v1",
            ),
            (self.shard_index is None or self.num_shards is not None, "--shard-index needs --num-shards"),
            (self.wait_timeout > 0, f"wait timeout must be > 0 seconds, got {self.wait_timeout}"),
            (self.top_k >= 1, f"top-k must be >= 1, got {self.top_k}"),
            (
                0 < self.max_similarity <= 1,
                f"max-similarity must be in (0, 1] (1 keeps near-duplicates), got {self.max_similarity}",
            ),
            (0 < self.sim_threshold <= 1, f"sim-threshold must be in (0, 1], got {self.sim_threshold}"),
            (self.max_length_ratio >= 1, f"max length ratio must be >= 1, got {self.max_length_ratio}"),
            (
                self.min_similarity is None or -1 <= self.min_similarity < self.sim_threshold,
                f"min similarity must be in [-1, {self.sim_threshold}) (below the sim-threshold), "
                f"got {self.min_similarity}",
            ),
            (self.chunk_size >= 1, f"chunk size must be >= 1, got {self.chunk_size}"),
            (self.max_image_bytes >= 1, f"max image bytes must be >= 1, got {self.max_image_bytes}"),
            (
                all(isinstance(p, str) and p.strip() for p in self.prompts or []),
                f"--prompt must be a non-empty instruction, got {self.prompts!r} (leave it out for the 5 built-in "
                "prompts)",
            ),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.concurrency >= 1, f"concurrency must be >= 1, got {self.concurrency}"),
            (self.max_retries >= 0, f"max retries must be >= 0, got {self.max_retries}"),
            (self.max_new_tokens >= 1, f"max new tokens must be >= 1, got {self.max_new_tokens}"),
            (self.request_timeout > 0, f"request timeout must be > 0 seconds, got {self.request_timeout}"),
            (self.max_samples is None or self.max_samples >= 1, f"max-samples must be >= 1, got {self.max_samples}"),
            (self.filler == "annotation" or bool(self.model), f"the {self.filler} filler needs --model"),
            *policy.checks(self),
            (
                self.masker != "model" or self.filler != "annotation",
                "the model masker asks the filler's model which words are visual facts: use it with --filler "
                "transformers or --filler openai",
            ),
            (
                isinstance(self.noise_step, int) and 0 <= self.noise_step < NUM_DIFFUSION_STEPS,
                f"noise step must be an integer in [0, {NUM_DIFFUSION_STEPS - 1}], got {self.noise_step}",
            ),
            (
                0 < self.crop_min_area <= self.crop_max_area <= 1,
                f"crop areas must satisfy 0 < min <= max <= 1, got {self.crop_min_area} and {self.crop_max_area}",
            ),
            (
                0 <= self.difficulty_image_weight <= 1,
                f"difficulty image weight must be in [0, 1], got {self.difficulty_image_weight}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise BuildError(msg)
        chosen_backend = (
            self.chosen_backend
            if self.chosen_backend != "auto"
            else self.filler
            if self.filler in ("transformers", "openai")
            else "transformers"
        )
        for flag, model, loaded in (
            ("--model", self.model, self.filler == "transformers"),
            ("--chosen-from", self.chosen_from, chosen_backend == "transformers"),
            ("--responses-from", self.responses_from, self.policy_backend() == "transformers"),
        ):
            if loaded and model and model.startswith(("/", ".", "~")) and not os.path.exists(os.path.expanduser(model)):
                raise BuildError(
                    f"{flag} {model!r} is a local path that does not exist; give a checkpoint "
                    "directory (config.json and weights) or a Hub id such as llava-hf/llava-1.5-7b-hf"
                )


def _check_types(cls, d: dict) -> dict:
    """``d`` with paths as text, or a :class:`BuildError` naming the option and the type it needs for a value of
    the wrong type (``"top_k": "eight"`` in a ``--config`` file; ints are accepted where floats are expected)."""
    import os
    import typing

    d = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in d.items()}
    words = {str: "text", int: "an integer", float: "a number", bool: "true or false", list: "a list"}
    hints = typing.get_type_hints(cls)
    for name, value in d.items():
        args = typing.get_args(hints[name]) or (hints[name],)
        if value is None and type(None) in args:
            continue
        kinds = tuple(typing.get_origin(t) or t for t in args if t is not type(None))
        ok = isinstance(value, kinds + ((int,) if float in kinds else ()))
        if not ok or (isinstance(value, bool) and bool not in kinds):
            raise BuildError(
                f"option {name} must be {' or '.join(words.get(k, k.__name__) for k in kinds)}, got {value!r}"
            )
    return d


def _is_http_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a bad port, brackets that do not close
        return False


_CHOICE_NAMES = {
    "caption": "caption choice",
    "chosen_backend": "chosen backend",
    "mask_kinds": "mask kinds",
    "image_negative": "image negative",
    "noise_schedule": "noise schedule",
}


def _choice_error(name: str, value: Any, choices: tuple) -> str:
    what = _CHOICE_NAMES.get(name, name.replace("_", " "))
    shown = value if isinstance(value, list) else repr(value)
    tail = " (or none)" if name == "curriculum" else ""
    return f"unknown {what} {shown}; valid: {', '.join(choices)}{tail}"
