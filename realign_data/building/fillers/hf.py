"""Local VLM filler: ``AutoModelForImageTextToText`` + ``AutoProcessor`` with the model's chat template.

Batched, greedy by default, ``max_new_tokens`` bounded. Works with any image-text-to-text checkpoint whose
processor has a chat template (LLaVA, LLaVA-NeXT, Qwen2-VL, Idefics, ...). Placement follows
:mod:`realign_data.runtime.devices`: ``cuda:LOCAL_RANK`` and bf16 (fp16 where the GPU lacks bf16) by default on GPUs, fp32 on
the CPU, and ``device_map`` to spread a model over several GPUs.
"""

from __future__ import annotations

from typing import Any, Optional

from realign_data.building.fillers.base import FillerError, FillResult, VLMBackend, clean_generation


class TransformersFiller(VLMBackend):
    """Fill (or answer) with a local Hugging Face VLM.

    Args:
        model: Hub id or local directory of the checkpoint.
        batch_size: prompts per ``generate`` call.
        max_new_tokens: generation bound (default 128).
        do_sample / temperature: greedy by default; sampling is seeded per batch when enabled.
        device / dtype: ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:1"``...; ``"auto"``/``"bf16"``/``"fp16"``/``"fp32"``.
        device_map: ``None`` (the whole model on ``device``) or an accelerate strategy (``"auto"``...) spreading it
            over this process's GPUs (``device`` is then unused).
        trust_remote_code: off unless the user turns it on.
    """

    name = "transformers"

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        batch_size: int = 8,
        max_new_tokens: int = 128,
        do_sample: bool = False,
        temperature: float = 1.0,
        device: str = "auto",
        dtype: str = "auto",
        device_map: Optional[str] = None,
        trust_remote_code: bool = False,
        seed: int = 0,
    ) -> None:
        from realign_data.runtime.devices import DeviceError, placement

        if not model:
            raise FillerError("the transformers filler needs --model (a Hub id or a local checkpoint directory)")
        self.model_name = str(model)
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.do_sample, self.temperature, self.seed = do_sample, temperature, seed
        try:
            where, self.dtype = placement(device, device_map, dtype)
        except DeviceError as e:
            raise FillerError(str(e)) from None
        try:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(self.model_name, trust_remote_code=trust_remote_code)
            self.model = AutoModelForImageTextToText.from_pretrained(
                self.model_name, trust_remote_code=trust_remote_code, **where
            ).eval()
        except Exception as e:
            raise FillerError(
                f"cannot load VLM {self.model_name!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from e
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # decoder-only batched generation

    def generate(self, items: list[tuple[str, Any, Any]]) -> list[FillResult]:
        results: list[FillResult] = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            try:
                results += self._generate_batch(batch)
            except Exception as e:  # noqa: BLE001 - record per item, keep going
                results += [FillResult(None, error=f"{type(e).__name__}: {e}") for _ in batch]
        return results

    def _generate_batch(self, batch) -> list[FillResult]:
        import torch

        texts, images = [], []
        with_images = all(load_image is not None for _, load_image, _ in batch)  # else text-only prompts
        for prompt, load_image, _ in batch:
            content = [{"type": "text", "text": prompt}]
            if with_images:
                content.insert(0, {"type": "image"})
                images.append(load_image())
            messages = [{"role": "user", "content": content}]
            texts.append(self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device, self.model.dtype)  # the first layer's device; pixels in the model's dtype
        kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample)
        if self.do_sample:
            kwargs["temperature"] = self.temperature
            torch.manual_seed(self.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
        decoded = self.processor.batch_decode(new, skip_special_tokens=True)
        return [FillResult(clean_generation(t)) for t in decoded]

    def describe(self) -> dict:
        return {
            "filler": self.name,
            "model": self.model_name,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
        }

    def close(self) -> None:
        self.model = None
