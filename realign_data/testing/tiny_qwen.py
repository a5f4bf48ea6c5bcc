"""Tiny, randomly initialised Qwen-VL checkpoints (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) with the layout of the real ones:
one tiny tokenizer for the family, each model with its processor (see :mod:`realign_data.testing.tiny_models`)."""

from __future__ import annotations

from pathlib import Path

from realign_data.testing.tiny_tokenizer import train_tokenizer

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


_QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _qwen_tokenizer():
    """The tiny tokenizer of the Qwen-VL builders and its special-token ids (one tokenizer for the family)."""
    tokenizer = train_tokenizer(_QWEN_SPECIALS)
    tokenizer.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    tokenizer.padding_side = "left"
    return tokenizer, {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}


def _qwen_text_config(tokenizer, ids: dict, hidden_size: int = 32, num_layers: int = 2, **extra) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=max(2, hidden_size // 16),
        num_key_value_heads=1,
        max_position_embeddings=1024,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        **extra,
    )


def _qwen_token_ids(ids: dict) -> dict:
    return dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def _save_qwen(
    out: Path,
    model_class,
    config,
    processor_class,
    video_processor_class,
    tokenizer,
    ids: dict,
    *,
    image_size: int,
    patch_size: int,
    seed: int,
) -> Path:
    """The Qwen-VL builders' common end: the seeded model, its processor (every image resized to ``image_size`` px
    squared, merge 2), both saved to ``out``."""
    import torch
    from transformers import Qwen2VLImageProcessor

    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    pixels = {"shortest_edge": image_size * image_size, "longest_edge": image_size * image_size}
    image_processor = Qwen2VLImageProcessor(size=pixels, patch_size=patch_size, merge_size=2, temporal_patch_size=2)
    video_processor = video_processor_class(size=pixels, patch_size=patch_size, merge_size=2, temporal_patch_size=2)
    processor = processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_qwen2_vl(out: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny ``Qwen2VLForConditionalGeneration`` + ``Qwen2VLProcessor`` to ``out``."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor, Qwen2VLVideoProcessor

    out = Path(out)
    tokenizer, ids = _qwen_tokenizer()
    config = Qwen2VLConfig(
        text_config=_qwen_text_config(
            tokenizer, ids, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}
        ),
        vision_config=dict(
            depth=2,
            embed_dim=32,
            hidden_size=32,
            num_heads=2,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_chans=3,
        ),
        **_qwen_token_ids(ids),
    )
    return _save_qwen(
        out,
        Qwen2VLForConditionalGeneration,
        config,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
        tokenizer,
        ids,
        image_size=56,
        patch_size=14,
        seed=seed,
    )


def build_tiny_qwen2_5_vl(
    out: str | Path, *, seed: int = 0, image_size: int = 56, hidden_size: int = 32, num_layers: int = 2
) -> Path:
    """Save a tiny ``Qwen2_5_VLForConditionalGeneration`` + ``Qwen2_5_VLProcessor`` to ``out``.

    Qwen2.5-VL's vision tower (RMSNorm, SwiGLU, window attention with full-attention blocks) at 2 layers, the
    second one full attention; patch 14, merge 2: every image is resized to ``image_size`` px squared (default
    56), which gives ``(image_size / 28) ** 2`` image tokens (672: 576, LLaVA-1.5's count).
    ``hidden_size``/``num_layers`` scale the language model (benchmarks); the defaults are the test size.
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out)
    tokenizer, ids = _qwen_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config=_qwen_text_config(
            tokenizer,
            ids,
            hidden_size,
            num_layers,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=hidden_size,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
            in_channels=3,
        ),
        **_qwen_token_ids(ids),
    )
    return _save_qwen(
        out,
        Qwen2_5_VLForConditionalGeneration,
        config,
        Qwen2_5_VLProcessor,
        Qwen2VLVideoProcessor,
        tokenizer,
        ids,
        image_size=image_size,
        patch_size=14,
        seed=seed,
    )


def build_tiny_qwen3_vl(out: str | Path, *, seed: int = 0, image_size: int = 64) -> Path:
    """Save a tiny ``Qwen3VLForConditionalGeneration`` + ``Qwen3VLProcessor`` to ``out``.

    Qwen3-VL's parts at 2 layers: a vision tower with learned, interpolated position embeddings and a DeepStack
    merger feeding the first language layer, a Qwen3 language model (q/k norms) with interleaved multimodal
    RoPE; patch 16, merge 2: a ``image_size`` px square image (default 64) gives ``(image_size / 32) ** 2``
    image tokens.
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor

    out = Path(out)
    tokenizer, ids = _qwen_tokenizer()
    config = Qwen3VLConfig(
        text_config=_qwen_text_config(
            tokenizer,
            ids,
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
                "rope_theta": 10000.0,
            },
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=32,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=16,
            deepstack_visual_indexes=[0],
            in_channels=3,
        ),
        **_qwen_token_ids(ids),
    )
    return _save_qwen(
        out,
        Qwen3VLForConditionalGeneration,
        config,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
        tokenizer,
        ids,
        image_size=image_size,
        patch_size=16,
        seed=seed,
    )
