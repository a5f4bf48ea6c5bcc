"""Load an export with the target trainer's own dataset code; run by tests/test_export.py in a side environment.

    python tests/support/export_side_loaders.py swift OUT          # ms-swift: swift.dataset.load_dataset + TemplateInputs
    python tests/support/export_side_loaders.py llamafactory OUT   # LLaMA-Factory: get_dataset_list + align_dataset

Prints one JSON line of what the loader made of the export (the test compares it with what was written).
Runs with the side environment's interpreter, so it imports nothing from realign.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def swift(out: Path) -> dict:
    os.environ["ROOT_IMAGE_DIR"] = str(out)  # ms-swift joins relative media paths with it
    from swift.dataset import load_dataset
    from swift.template.template_inputs import TemplateInputs
    from swift.template.vision_utils import load_image

    train, _ = load_dataset(
        [str(next(out.glob("*.jsonl")))], split_dataset_ratio=0.0, num_proc=1, load_from_cache_file=False, strict=True
    )
    counts = {"rows": len(train), "text_pairs": 0, "image_pairs": 0}
    path = lambda im: im["path"] if isinstance(im, dict) else im  # noqa: E731
    for row in train:
        inputs = TemplateInputs.from_dict({k: v for k, v in row.items() if v is not None})
        chosen, rejected = inputs.chosen, inputs.rejected  # the two sides the trainer encodes
        for im in chosen.images + rejected.images:
            load_image(path(im))  # opens every image the way the template does
        same_images = [path(i) for i in chosen.images] == [path(i) for i in rejected.images]
        same_text = chosen.messages == rejected.messages
        counts["text_pairs"] += int(same_images and not same_text)
        counts["image_pairs"] += int(same_text and not same_images)
    return counts


def llamafactory(out: Path) -> dict:
    import importlib.machinery
    import tempfile
    import types

    # llamafactory.data imports torchaudio at module level (audio inputs); it does not install beside this torch,
    # and nothing here reads audio: an empty module stands in for it
    stub = types.ModuleType("torchaudio")
    stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    sys.modules.setdefault("torchaudio", stub)
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    name = next(iter(json.loads((out / "dataset_info.json").read_text())))
    data_args = DataArguments(dataset=name, dataset_dir=str(out))  # media_dir defaults to dataset_dir
    model_args = ModelArguments(model_name_or_path="unused")
    training_args = Seq2SeqTrainingArguments(output_dir=tempfile.mkdtemp())
    [attr] = get_dataset_list([name], str(out))
    ds = _load_single_dataset(attr, model_args, data_args, training_args)  # file loading + SharegptDatasetConverter
    rows = list(ds)
    return {
        "ranking": attr.ranking,
        "rows": len(rows),
        "images": [len(r["_images"]) for r in rows],
        "images_found": sum(all(Path(p).is_file() for p in r["_images"]) for r in rows),
        "tags_match": sum(sum(m["content"].count("<image>") for m in r["_prompt"]) == len(r["_images"]) for r in rows),
        "responses": [[m["content"] for m in r["_response"]] for r in rows],
    }


if __name__ == "__main__":
    fmt, out = sys.argv[1], Path(sys.argv[2]).resolve()
    print(json.dumps({"swift": swift, "llamafactory": llamafactory}[fmt](out)))
