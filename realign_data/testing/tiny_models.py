"""Tiny, randomly initialised stand-ins for the real checkpoints this project loads.

Nothing can be downloaded in CI or on an air-gapped cluster, yet every code path that loads a real model
(``AutoModelForImageTextToText.from_pretrained``, ``AutoProcessor``, ``SentenceTransformer``, open_clip)
must still be exercised for real. These builders write a checkpoint directory with the exact layout of the
real thing, from configs with random weights and a small BPE tokenizer trained in about a second, so the
same public loading API works on them. Used by the test suite, the benchmarks and offline demos. The Qwen-VL
builders live in :mod:`realign_data.testing.tiny_qwen`, the tokenizer in :mod:`realign_data.testing.tiny_tokenizer`.
"""

from __future__ import annotations

import json
from pathlib import Path

from realign_data.testing.tiny_qwen import (  # noqa: F401 - the Qwen-VL builders, imported from here too
    build_tiny_qwen2_5_vl,
    build_tiny_qwen2_vl,
    build_tiny_qwen3_vl,
)
from realign_data.testing.tiny_tokenizer import train_tokenizer

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% else %}SYSTEM: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}</s>{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT: {% endif %}"
)


def build_tiny_llava(
    out: str | Path,
    *,
    image_size: int = 32,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
    patch_size: int = 8,
    vision_hidden_size: int = 32,
    vision_layers: int = 2,
    vision_heads: int = 2,
    intermediate_size: int | None = None,
    max_position_embeddings: int | None = None,
    extra_text: list[str] | None = None,
) -> Path:
    """Save a tiny ``LlavaForConditionalGeneration`` + ``LlavaProcessor`` (with chat template) to ``out``.

    The CLIP vision tower keeps its CLS token, hence ``num_additional_image_tokens=1`` on the processor.
    ``hidden_size``/``num_layers``/``intermediate_size`` (default 2x hidden) scale the language model,
    ``vision_*``/``patch_size`` the vision tower; ``max_position_embeddings`` defaults to room for the image
    tokens plus 256 text tokens, at least 512 (LLaVA-1.5 proportions: 577 image tokens at 192 px, patch 8).
    ``extra_text`` adds words to the tokenizer's training text (domain vocabulary).
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out = Path(out)
    tokenizer = train_tokenizer(["<unk>", "<s>", "</s>", "<pad>", "<image>"], extra_text=extra_text)
    tokenizer.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    tokenizer.padding_side = "left"
    image_tokens = (image_size // patch_size) ** 2 + 1
    if max_position_embeddings is None:
        max_position_embeddings = max(512, image_tokens + 256)
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden_size,
        intermediate_size=vision_hidden_size * 2,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 16),
        num_key_value_heads=max(1, hidden_size // 16),
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_sentence_transformer(out: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny BERT + mean pooling model in sentence-transformers format to ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 6.3 moved the modules (importing `sentence_transformers.models` is deprecated)
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # older 6.x
        from sentence_transformers.models import Pooling, Transformer
    from transformers import BertConfig, BertModel

    out = Path(out)
    tokenizer = train_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.add_special_tokens(
        {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    )
    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=256,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    hf_dir = out / "_hf"
    bert.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    word = Transformer(str(hf_dir), max_seq_length=128)
    pooling = Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(out))
    import shutil

    shutil.rmtree(hf_dir)
    return out


TINY_OPEN_CLIP = "realign-tiny-clip"
_TINY_OPEN_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def register_tiny_open_clip(name: str = TINY_OPEN_CLIP) -> str:
    """Register a tiny ViT config with open_clip (idempotent) so ``create_model(name)`` builds it."""
    from open_clip.factory import _MODEL_CONFIGS

    _MODEL_CONFIGS.setdefault(name, json.loads(json.dumps(_TINY_OPEN_CLIP_CONFIG)))
    return name


def build_tiny_open_clip(out: str | Path, *, seed: int = 0) -> Path:
    """Save the tiny open_clip model's random weights as a safetensors checkpoint at ``out``.

    Load it back with ``open_clip.create_model_and_transforms(TINY_OPEN_CLIP, pretrained=str(out))``
    after :func:`register_tiny_open_clip`.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.create_model(register_tiny_open_clip(), pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return out


GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build_tiny_gemma3(out: str | Path, *, image_size: int = 32, mm_tokens_per_image: int = 4, seed: int = 0) -> Path:
    """Save a tiny ``Gemma3ForConditionalGeneration`` + ``Gemma3Processor`` (with chat template) to ``out``.

    The processor expands each ``<start_of_image>`` into ``<start_of_image>`` + ``mm_tokens_per_image`` x
    ``<image_soft_token>`` + ``<end_of_image>`` and emits ``token_type_ids`` (1 on image tokens), which
    Gemma 3 uses for bidirectional attention within an image. The multimodal projector is zero-initialised
    by transformers (images would then have no effect at all), so it is re-drawn at random here.
    """
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        Gemma3TextConfig,
        PreTrainedTokenizerFast,
        SiglipVisionConfig,
    )

    out = Path(out)
    specials = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
    ]
    # Gemma3Processor reads boi/eoi/image tokens off the tokenizer; named extra special tokens are saved with
    # it and restored on load.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(specials)._tokenizer,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        padding_side="left",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    patch = 8
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
    )
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=512,
        pad_token_id=ids["<pad>"],
        eos_token_id=ids["<eos>"],
        bos_token_id=ids["<bos>"],
    )
    config = Gemma3Config(
        vision_config=vision,
        text_config=text,
        mm_tokens_per_image=mm_tokens_per_image,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config)
    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.02)
    model.generation_config.pad_token_id = ids["<pad>"]
    model.generation_config.eos_token_id = [ids["<eos>"], ids["<end_of_turn>"]]
    image_processor = Gemma3ImageProcessor(size={"height": image_size, "width": image_size})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=mm_tokens_per_image,
        chat_template=GEMMA3_CHAT_TEMPLATE,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
