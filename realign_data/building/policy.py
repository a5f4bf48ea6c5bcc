"""The policy of an on-policy build (``--responses-from``): the model whose own answers are checked and corrected.

The policy answers each seed's ``(instruction, image)`` ``--num-responses`` times at ``--temperature`` (0: greedy).
It runs on the builder's own VLM backends (:mod:`realign_data.building.fillers`): ``transformers`` (a local
checkpoint, :class:`~realign_data.building.fillers.hf.TransformersFiller`, sampling seeded per batch) or ``openai``
(a served model, :class:`~realign_data.building.fillers.openai_compat.OpenAIFiller`, ``temperature`` and ``seed`` sent
with each request).

Why these and not :mod:`realign_trl.eval.backends`: the evaluation's backends are built on the same parts (its
``OpenAIBackend`` drives this very ``OpenAIFiller`` client, and ``TransformersBackend`` shows the model the same
one-turn conversation, image first, then the question), so the policy answers a build's seeds as it answers the
evaluation's prompts; and ``realign_data`` keeps importing nothing from ``realign_trl`` (the training package
depends on the data package, never the other way), which keeps ``tests/test_architecture.py`` honest without a new
exemption or an import the layer test cannot see. What the eval backends add and this does not: a PEFT
``--adapter`` merged at load time (merge the adapter into a checkpoint, or serve it behind ``--base-url``).

This module imports no other builder module at load time: :mod:`realign_data.building.config` asks it for its checks.
"""

from __future__ import annotations

import zlib
from typing import Any

BACKEND_HELP = "Backend of --responses-from (auto: openai with --base-url, else transformers)."


def backend_of(config: Any) -> str:
    """``openai`` or ``transformers``: the backend the policy answers through."""
    if config.responses_backend != "auto":
        return config.responses_backend
    return "openai" if config.base_url else "transformers"


def checked_kinds(config: Any) -> tuple[str, ...]:
    """The kinds of fact an on-policy build checks: ``--mask-kind``'s, else all of them."""
    from realign_data.building.facts import FACT_KINDS

    return tuple(k for k in FACT_KINDS if not config.mask_kinds or k in config.mask_kinds)


def checks(config: Any) -> list[tuple[bool, str]]:
    """``(ok, one-sentence mistake)`` of the on-policy options, for :meth:`BuildConfig.validate`."""
    from realign_data.building.facts import FACT_KINDS

    on = config.responses_from is not None
    k, t = config.num_responses, config.temperature
    other = [m for m in config.mask_kinds or () if m not in FACT_KINDS]
    return [
        (
            not on or not other,
            f"an on-policy build checks {', '.join(FACT_KINDS)} facts; --mask-kind {other[0] if other else ''} "
            "is none of them",
        ),
        (isinstance(k, int) and k >= 1, f"--num-responses must be >= 1, got {k}"),
        (t >= 0, f"--temperature must be >= 0 (0: greedy), got {t}"),
        (config.round >= 0, f"--round must be >= 0, got {config.round}"),
        (not on or bool(str(config.responses_from).strip()), "--responses-from needs a checkpoint or a model name"),
        (on or k == 1, "--num-responses counts the answers of --responses-from: give the policy with it"),
        (
            k == 1 or t > 0,
            f"--num-responses {k} with --temperature 0 gives {k} identical greedy answers: "
            "set a temperature > 0 (e.g. 0.7) or --num-responses 1",
        ),
    ]


class Policy:
    """Answers seeds as the policy: :meth:`answer` gives ``num_responses`` lists of results, one per draw."""

    def __init__(self, config: Any) -> None:
        from realign_data.building.fillers import load_filler

        self.config = config
        self.kind = backend_of(config)
        options = {**config.filler_options(self.kind), "model": config.responses_from}
        if self.kind == "transformers":
            options.update(do_sample=config.temperature > 0, temperature=config.temperature or 1.0)
        else:
            options["temperature"] = config.temperature
        self.backend = load_filler(self.kind, **options)  # FillerError: the caller says it in one sentence

    def answer(self, items: list[tuple], chunk_key: str) -> list[list]:
        """``[draw][item]`` results (:class:`~realign_data.building.fillers.FillResult`) for the chunk's items.

        Each draw ``k`` is seeded from ``--seed``, the chunk's first seed id and ``k``: a re-run of a chunk draws
        the same answers (resume), and the draws of one seed differ from each other."""
        out = []
        for k in range(self.config.num_responses):
            self.backend.seed = zlib.crc32(f"{self.config.seed}:{chunk_key}:{k}".encode())
            out.append(self.backend.generate(items))
        return out

    def describe(self) -> dict:
        """The policy as every row and the report record it."""
        return {
            "model": self.config.responses_from,
            "backend": self.kind,
            "temperature": self.config.temperature,
            "num_responses": self.config.num_responses,
            "round": self.config.round,
        }

    def close(self) -> None:
        self.backend.close()
