"""Image-rejected samples other than retrieval: MFPO region noise, mDPO crops, POVID whole-image noise.

Each kind turns the seed image into a *visual negative*: an image on which the chosen answer is less
true. Retrieval (Re-Align) finds a different image; the kinds here perturb the original instead:

- ``region-noise`` (MFPO, arXiv 2410.15334): forward-diffusion noise at step ``t`` only inside the regions
  of the objects the answer names (COCO instance masks of those categories). When no region is known it
  falls back to whole-image noise and says so (``region_source="whole_image_fallback"``).
- ``crop`` (mDPO, arXiv 2406.11839): a random resized crop keeping 1-20 % of the area, resized back.
- ``noise`` (POVID, arXiv 2402.11411): forward-diffusion noise at step ``t`` over the whole image.

Forward diffusion follows DDPM (Ho et al., 2020): with pixels scaled to [-1, 1],
``x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps``, ``eps ~ N(0, I)``, ``abar_t = prod_{s<=t} (1 - beta_s)``
with steps indexed 0..T-1 as in the published code (``alphas_bar_sqrt[t]`` in POVID's ``add_diffusion_noise``,
``alphas_cumprod[t]`` in diffusers), so a step means what it means there. Schedules over ``T = 1000`` steps:
``sigmoid`` (the default) is POVID's, copied into Re-Align's ``train_rdpo.py``:
``betas = sigmoid(linspace(-6, 6, T)) * (5e-3 - 1e-5) + 1e-5``; ``linear`` is DDPM's linear betas from 1e-4 to
0.02 (about three times stronger noise at t = 500); ``cosine`` is the improved-DDPM schedule (Nichol &
Dhariwal, 2021; betas clipped at 0.999). The result is clipped to [-1, 1] and quantised back to 8-bit.
Perturbed images are encoded as PNG, so pixels that were not perturbed stay exactly as decoded.

Every function takes a ``numpy.random.Generator``; the builder seeds it from ``--seed`` and the row id,
so a build is deterministic. numpy, PIL and pycocotools are imported inside the functions, so the option
vocabulary below can be read (``realign-data build --help``) without them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

KINDS = ("retrieval", "region-noise", "crop", "noise")
SCHEDULES = ("sigmoid", "linear", "cosine")
DEFAULT_SCHEDULE = "sigmoid"
NUM_DIFFUSION_STEPS = 1000


@dataclass
class Negative:
    """A perturbed image plus the parameters that made it (they go into provenance columns)."""

    image: Image.Image
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def png_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


@dataclass(frozen=True)
class VisualNegative:
    """The rejected image of a kept pair, as the row takes it: the retrieved image (``rejected_image_id`` names it in
    the corpus), or the original perturbed (``rejected_image_id`` None; :class:`Negative`'s ``params``)."""

    rejected_image_id: Optional[str]
    image_bytes: bytes  # the file as stored (retrieval) or a PNG (perturbation)
    name: Optional[str]  # the image's file name in the row
    params: dict[str, Any]  # the perturbation's parameters (empty for retrieval): the negative_params column
    difficulty: float  # realign_data.building.difficulty of the pair


@functools.cache
def _alphas_cumprod(schedule: str, num_steps: int) -> tuple[float, ...]:
    import numpy as np

    if schedule == "sigmoid":
        x = np.linspace(-6.0, 6.0, num_steps, dtype=np.float64)
        betas = 1.0 / (1.0 + np.exp(-x)) * (5e-3 - 1e-5) + 1e-5
    elif schedule == "linear":
        betas = np.linspace(1e-4, 0.02, num_steps, dtype=np.float64)
    else:
        steps = np.arange(num_steps + 1, dtype=np.float64)
        f = np.cos((steps / num_steps + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = np.minimum(1.0 - f[1:] / f[:-1], 0.999)
    return tuple(float(v) for v in np.cumprod(1.0 - betas))


def alpha_bar(t: int, schedule: str = DEFAULT_SCHEDULE, num_steps: int = NUM_DIFFUSION_STEPS) -> float:
    """Cumulative signal fraction ``abar_t = prod_{s<=t} (1 - beta_s)`` at step ``t`` in 0..T-1 (code indexing)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}.")
    if not 0 <= t < num_steps:
        raise ValueError(f"diffusion step must be between 0 and {num_steps - 1} (got {t}).")
    return _alphas_cumprod(schedule, num_steps)[t]


def diffuse(x0: np.ndarray, t: int, rng: np.random.Generator, schedule: str = DEFAULT_SCHEDULE) -> np.ndarray:
    """Forward-diffuse ``x0`` (float, in [-1, 1]) to step ``t``; unclipped, for analysis and tests."""
    abar = alpha_bar(t, schedule)
    eps = rng.standard_normal(x0.shape)
    return math.sqrt(abar) * x0 + math.sqrt(1.0 - abar) * eps


def _to_unit(image: Image.Image) -> np.ndarray:
    import numpy as np

    return np.asarray(image.convert("RGB"), dtype=np.float64) / 127.5 - 1.0


def _to_image(x: np.ndarray) -> Image.Image:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.clip(np.rint((np.clip(x, -1.0, 1.0) + 1.0) * 127.5), 0, 255).astype(np.uint8))


def add_noise(
    image: Image.Image,
    rng: np.random.Generator,
    *,
    t: int = 500,
    schedule: str = DEFAULT_SCHEDULE,
    mask: np.ndarray | None = None,
) -> Image.Image:
    """Diffusion noise at step ``t`` over the whole image, or only where the boolean ``mask`` is true."""
    import numpy as np
    from PIL import Image

    original = np.asarray(image.convert("RGB"))
    noisy = np.asarray(_to_image(diffuse(_to_unit(image), t, rng, schedule)))
    if mask is None:
        return Image.fromarray(noisy)
    return Image.fromarray(np.where(mask[..., None], noisy, original))


def segmentation_mask(segmentations: Iterable[Any], size: tuple[int, int]) -> np.ndarray:
    """The union of COCO ``segmentation`` values as a bool HxW mask (``size`` is ``(width, height)``).

    Each value is a list of polygons (flat ``[x0, y0, x1, y1, ...]``) or a run-length encoding (crowd
    annotations: ``{"size": [h, w], "counts": ...}``, compressed or not), rasterised by pycocotools exactly as
    the COCO API does.
    """
    import numpy as np
    from pycocotools import mask as coco_mask

    width, height = size
    rles = []
    for seg in segmentations:
        if isinstance(seg, dict) and "counts" in seg:
            rles.append(coco_mask.frPyObjects(seg, height, width) if isinstance(seg["counts"], list) else seg)
        elif isinstance(seg, (list, tuple)):
            polygons = [list(map(float, p)) for p in seg if len(p) >= 6]
            rles += coco_mask.frPyObjects(polygons, height, width) if polygons else []
    if not rles:
        return np.zeros((height, width), dtype=bool)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def region_noise(
    image: Image.Image,
    rng: np.random.Generator,
    instances: Sequence[dict],
    categories: Iterable[str],
    *,
    t: int = 500,
    schedule: str = DEFAULT_SCHEDULE,
) -> Negative:
    """MFPO's key-region negative: noise inside the masks of the instances whose category the answer names.

    ``instances`` are COCO annotations of the image, each with ``category`` (name) and ``segmentation``
    (polygons, or the run-length encoding of a crowd annotation).
    """
    wanted = {c.lower() for c in categories}
    named = [inst for inst in instances if str(inst.get("category", "")).lower() in wanted and inst.get("segmentation")]
    mask = segmentation_mask([inst["segmentation"] for inst in named], image.size) if named else None
    if mask is None or not mask.any():
        return Negative(
            add_noise(image, rng, t=t, schedule=schedule),
            "region-noise",
            {
                "t": t,
                "schedule": schedule,
                "region_source": "whole_image_fallback",
                "region_fraction": 1.0,
                "categories": sorted(wanted),
            },
        )
    ids = [inst.get("id") for inst in named if inst.get("id") is not None]
    return Negative(
        add_noise(image, rng, t=t, schedule=schedule, mask=mask),
        "region-noise",
        {
            "t": t,
            "schedule": schedule,
            "region_source": "segmentation",
            "region_fraction": float(mask.mean()),
            "categories": sorted(wanted),
            "instance_ids": ids,
        },
    )


def whole_image_noise(
    image: Image.Image, rng: np.random.Generator, *, t: int = 500, schedule: str = DEFAULT_SCHEDULE
) -> Negative:
    """POVID's negative: diffusion noise at step ``t`` over the whole image."""
    return Negative(
        add_noise(image, rng, t=t, schedule=schedule), "noise", {"t": t, "schedule": schedule, "region_fraction": 1.0}
    )


def random_crop(
    image: Image.Image,
    rng: np.random.Generator,
    *,
    min_area: float = 0.01,
    max_area: float = 0.2,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Negative:
    """mDPO's negative: a random crop keeping ``min_area``-``max_area`` of the area, resized back."""
    from PIL import Image

    if not 0 < min_area <= max_area <= 1:
        raise ValueError(f"crop area fractions must satisfy 0 < min <= max <= 1 (got {min_area}, {max_area}).")
    width, height = image.size
    area = width * height
    for _ in range(100):
        target = rng.uniform(min_area, max_area) * area
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height and min_area <= w * h / area <= max_area:
            break
    else:  # tiny or extreme images: a centred square of the largest allowed area
        side = max(1, int(math.sqrt(max_area * area)))
        w, h = min(side, width), min(side, height)
    left = int(rng.integers(0, width - w + 1))
    top = int(rng.integers(0, height - h + 1))
    box = (left, top, left + w, top + h)
    cropped = image.convert("RGB").crop(box).resize((width, height), Image.BICUBIC)
    return Negative(cropped, "crop", {"box": list(box), "area_fraction": w * h / area})


def image_closeness(kind: str, params: dict[str, Any], retrieval_score: float | None = None) -> float:
    """How much of the original a visual negative keeps, in [0, 1] (1 = indistinguishable).

    - retrieval: the retrieved image's cosine similarity to the original, clipped to [0, 1];
    - noise: ``sqrt(abar_t)``, the signal amplitude left by the diffusion;
    - region-noise: ``1 - f * (1 - sqrt(abar_t))`` with ``f`` the perturbed fraction of the image;
    - crop: ``sqrt(area_fraction)``, the linear scale of what is kept.
    """
    if kind == "retrieval":
        return float(min(1.0, max(0.0, retrieval_score if retrieval_score is not None else 0.0)))
    if kind in ("noise", "region-noise"):
        keep = math.sqrt(alpha_bar(int(params["t"]), params.get("schedule", "linear")))
        return float(1.0 - float(params.get("region_fraction", 1.0)) * (1.0 - keep))
    if kind == "crop":
        return float(math.sqrt(params["area_fraction"]))
    raise ValueError(f"unknown image negative kind {kind!r}; choose one of {', '.join(KINDS)}.")


def perturbation_rng(seed: int, key: str, kind: str) -> np.random.Generator:
    """The generator of one row's perturbation: a stable hash of (build seed, seed id, kind).

    Independent of chunking, sharding, resume and of the other rows, so a build is byte-identical.
    """
    import numpy as np

    digest = hashlib.sha256(f"{seed}:{key}:{kind}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def make_negative(
    kind: str,
    image: Image.Image,
    rng: np.random.Generator,
    *,
    instances: Sequence[dict] = (),
    categories: Iterable[str] = (),
    t: int = 500,
    schedule: str = DEFAULT_SCHEDULE,
    min_area: float = 0.01,
    max_area: float = 0.2,
) -> Negative:
    """The perturbation negative of ``kind`` (``region-noise``, ``crop`` or ``noise``) of ``image``."""
    if kind == "region-noise":
        return region_noise(image, rng, instances, categories, t=t, schedule=schedule)
    if kind == "crop":
        return random_crop(image, rng, min_area=min_area, max_area=max_area)
    if kind == "noise":
        return whole_image_noise(image, rng, t=t, schedule=schedule)
    raise ValueError(f"{kind!r} is not a perturbation kind; choose one of region-noise, crop, noise.")
