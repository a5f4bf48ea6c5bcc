"""Generation backends for evaluation: a local ``transformers`` VLM, or an OpenAI-compatible endpoint.

Both answer work items ``(prompt, load_image, image_bytes)`` (the fillers' item shape) with greedy decoding and a
``max_new_tokens`` bound, and show the model the same conversation (:func:`conversation`: one user turn, the image
first, then the question). ``generate`` yields answers batch by batch, in order; the endpoint backend also has
``stream``, which yields ``(index, answer)`` pairs as requests finish, so the runner can show progress and save
answers as they come. An answer is ``(text, None)``, or ``(None, error)`` for a request that failed or came back
empty.

* :class:`TransformersBackend`: any ``AutoModelForImageTextToText`` with its own processor and chat template
  (LLaVA, Qwen2-VL, Gemma 3, ...), loaded from a directory or Hub id (optionally with a PEFT adapter) or given
  already loaded (the training callback). Batches are left-padded; the next batch is prepared (images decoded,
  chat template applied, processor run) in a background thread while the current one generates.
* :class:`OpenAIBackend`: the ``openai`` filler's client (:mod:`realign_data.building.fillers.openai_compat`: keep-alive
  connections, a bounded window of requests in flight, retries, a total deadline per attempt), so a model served by
  vLLM or TGI is measured the same way.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Optional, Sequence

from .suite import EvalError

Item = tuple  # (prompt, load_image, image_bytes)
Answer = tuple  # (text or None, error or None)


class EvalRuntimeError(RuntimeError):
    """An evaluation failed at run time (a model that cannot be loaded, an endpoint that does not answer)."""


def check_model_args(model: str, *, adapter: Optional[str] = None, dtype: str = "auto", device: str = "auto") -> None:
    """The mistakes worth catching before importing torch: a missing local directory, an unknown dtype or device."""
    from realign_data.runtime.devices import DeviceError, check_device_name, normalize_dtype

    try:
        normalize_dtype(dtype)
        check_device_name(device)
    except DeviceError as e:
        raise EvalError(f"{e}.") from None
    for what, path in (("model", model), ("adapter", adapter)):
        if path and str(path).startswith(("/", ".", "~")) and not os.path.isdir(os.path.expanduser(str(path))):
            raise EvalError(f"{what} directory {str(path)!r} does not exist.")


def load_model(
    model: str,
    *,
    adapter: Optional[str] = None,
    device: str = "auto",
    dtype: str = "auto",
    device_map: Optional[str] = None,
    trust_remote_code: bool = False,
):
    """``(model, processor)`` of a checkpoint directory or Hub id, in eval mode, PEFT ``adapter`` merged in.

    Placed as the build's filler is (:mod:`realign_data.runtime.devices`): ``device="auto"`` is ``cuda:LOCAL_RANK`` (else
    MPS, else the CPU), ``dtype="auto"`` bf16 (fp16 on GPUs without bf16) on CUDA and float32 elsewhere, and
    ``device_map="auto"`` spreads a model too large for one GPU over several.
    """
    check_model_args(model, adapter=adapter, dtype=dtype, device=device)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from realign_data.runtime.devices import DeviceError, placement

    try:
        where, _ = placement(device, device_map, dtype)
    except DeviceError as e:
        raise EvalError(f"{e}.") from None
    try:
        processor = AutoProcessor.from_pretrained(str(model), trust_remote_code=trust_remote_code)
        vlm = AutoModelForImageTextToText.from_pretrained(str(model), trust_remote_code=trust_remote_code, **where)
    except Exception as e:
        raise EvalRuntimeError(
            f"cannot load {str(model)!r} as an image-text-to-text model and processor "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})."
        ) from e
    if adapter:
        try:
            from peft import PeftModel

            vlm = PeftModel.from_pretrained(vlm, str(adapter)).merge_and_unload()
        except Exception as e:
            raise EvalRuntimeError(
                f"cannot load the PEFT adapter {str(adapter)!r} onto {str(model)!r} ({type(e).__name__}: {e})."
            ) from e
    return vlm.eval(), processor


def conversation(prompt: str) -> list[dict]:
    """The chat every backend sends: one user turn, the image first, then the question (as LLaVA and Qwen-VL were
    trained). The endpoint client builds the same turn with the image as a ``data:`` URL
    (:meth:`realign_data.building.fillers.openai_compat.OpenAIFiller._body`)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


class TransformersBackend:
    """Batched greedy generation with a VLM and its processor's chat template.

    Args:
        model: a directory / Hub id (loaded with :func:`load_model`), or a loaded model (then give ``processor``).
        processor: the model's processor (needed with a loaded model).
        adapter, device, dtype, device_map, trust_remote_code: loading options (see :func:`load_model`).
        batch_size: prompts per ``generate`` call.
        name: how results name the model (default: the id or directory).
    """

    kind = "transformers"

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        *,
        adapter: Optional[str] = None,
        device: str = "auto",
        dtype: str = "auto",
        device_map: Optional[str] = None,
        batch_size: int = 8,
        trust_remote_code: bool = False,
        name: Optional[str] = None,
    ) -> None:
        if batch_size < 1:
            raise EvalError(f"batch size must be at least 1 (got {batch_size}).")
        self.batch_size = batch_size
        if isinstance(model, (str, os.PathLike)):
            self.name = name or str(model)
            self.model, self.processor = load_model(
                str(model),
                adapter=adapter,
                device=device,
                dtype=dtype,
                device_map=device_map,
                trust_remote_code=trust_remote_code,
            )
        else:
            if processor is None:
                raise EvalError("a loaded model needs its processor (processor=...).")
            self.model, self.processor = model, processor
            self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.adapter = str(adapter) if adapter else None
        if getattr(self.processor, "chat_template", None) is None:
            raise EvalError(
                f"the processor of {self.name!r} has no chat template: evaluation prompts are built with "
                "the model's own template."
            )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="realign-eval-prepare")

    def _prepare(self, items: Sequence[Item]):
        """Tokenised, left-padded batch with pixel values (runs in the background thread)."""
        texts = [
            self.processor.apply_chat_template(conversation(prompt), add_generation_prompt=True, tokenize=False)
            for prompt, _, _ in items
        ]
        images = [[load_image()] for _, load_image, _ in items]
        return self.processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")

    def generate(self, items: Sequence[Item], max_new_tokens: int) -> Iterator[list[Answer]]:
        """Yield the answers of each batch of ``items``, in order."""
        import torch

        model = self.model
        batches = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        if not batches:
            return
        generation = _greedy_config(model, self.processor, max_new_tokens)
        device = _input_device(model)
        was_training = model.training
        model.eval()
        try:
            pending = self._pool.submit(self._prepare, batches[0])
            for k in range(len(batches)):
                inputs = pending.result()
                if k + 1 < len(batches):
                    pending = self._pool.submit(self._prepare, batches[k + 1])
                inputs = inputs.to(device)
                dtype = getattr(model, "dtype", None)
                if dtype is not None and "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
                    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
                with torch.inference_mode():
                    out = model.generate(**inputs, generation_config=generation)
                new = out[:, inputs["input_ids"].shape[1] :].cpu()
                # decoded in the preparing thread too: a fast tokenizer used from two threads at once can fail
                # ("Already borrowed"), so every tokenizer call goes through that one thread, in order
                texts = self._pool.submit(self.processor.batch_decode, new, skip_special_tokens=True).result()
                yield [(t.strip(), None) for t in texts]
        finally:
            model.train(was_training)

    def describe(self) -> dict:
        return {
            "backend": self.kind,
            "model": self.name,
            "adapter": self.adapter,
            "batch_size": self.batch_size,
            "device": str(_input_device(self.model)),
            "dtype": str(getattr(self.model, "dtype", "")),
            "decoding": "greedy",
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _greedy_config(model, processor, max_new_tokens: int):
    """The model's generation config made greedy (sampling knobs cleared) with the requested length bound."""
    import copy

    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    config.do_sample, config.num_beams, config.max_new_tokens, config.use_cache = False, 1, max_new_tokens, True
    config.temperature = config.top_p = config.top_k = None
    config.max_length = None
    if config.pad_token_id is None:
        tok = getattr(processor, "tokenizer", processor)
        config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return config


def _input_device(model):
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        import torch

        return torch.device("cpu")


class OpenAIBackend:
    """Greedy generation through an OpenAI-compatible ``/chat/completions`` endpoint (the openai filler's client).

    Args:
        model: the model name the endpoint serves.
        base_url: e.g. ``http://localhost:8000/v1``.
        api_key_env: environment variable holding the key (may be unset for local servers).
        concurrency: requests in flight (a bounded window: a new request starts as soon as one finishes).
        max_retries: retries on 429/5xx/timeouts/empty answers; timeout: total seconds one attempt may take.
    """

    kind = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        max_retries: int = 5,
        timeout: float = 60.0,
    ) -> None:
        from realign_data.runtime.redact import check_env_name

        if not model:
            raise EvalError("an OpenAI-compatible endpoint needs --model (the model name it serves).")
        if concurrency < 1:
            raise EvalError(f"--concurrency must be at least 1 (got {concurrency}).")
        if max_retries < 0:
            raise EvalError(f"--max-retries must be 0 or more (got {max_retries}).")
        if not timeout > 0:
            raise EvalError(f"--request-timeout must be more than 0 seconds (got {timeout:g}).")
        mistake = check_env_name(api_key_env)
        if mistake:
            raise EvalError(f"{mistake}.")
        self.name, self.base_url = model, base_url
        self.options = dict(
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
            max_retries=max_retries,
            timeout=timeout,
            temperature=0.0,
        )
        self._filler: Any = None

    def _client(self):
        from realign_data.building.fillers import load_filler

        if self._filler is None:
            self._filler = load_filler("openai", **self.options)
        return self._filler

    def stream(self, items: Sequence[Item], max_new_tokens: Optional[int] = None) -> Iterator[list[tuple[int, Answer]]]:
        """``(index, answer)`` pairs as requests finish, ``concurrency`` in flight at all times (no barrier). An item
        may carry its own length bound as a fourth element (one window for POPE and CHAIR prompts together)."""
        if max_new_tokens is not None:
            items = [(*item[:3], max_new_tokens) for item in items]
        for done in self._client().stream(items):
            yield [(k, _answer(r)) for k, r in done]

    def generate(self, items: Sequence[Item], max_new_tokens: int) -> Iterator[list[Answer]]:
        """Yield every answer, in order, in one list (:meth:`stream` yields them as they come)."""
        answers: list = [None] * len(items)
        for done in self.stream(items, max_new_tokens):
            for k, a in done:
                answers[k] = a
        if answers:
            yield answers

    def describe(self) -> dict:
        return {
            "backend": self.kind,
            "model": self.name,
            "base_url": self.base_url,
            "concurrency": self.options["concurrency"],
            "max_retries": self.options["max_retries"],
            "request_timeout": self.options["timeout"],
            "decoding": "greedy (temperature 0)",
        }

    def close(self) -> None:
        if self._filler is not None:
            self._filler.close()
            self._filler = None


def _answer(result) -> Answer:
    """A filler result as an answer: an empty text is a failure too (the client retries it; it is never scored)."""
    if result.error is None and result.text and result.text.strip():
        return result.text, None
    return None, result.error or "empty answer"
