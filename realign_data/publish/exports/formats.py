"""The four export layouts: one writer per target trainer, each read from that project's own data code.

=================  ==========================================================================================
``llamafactory``   ``{name}.json`` (a JSON list, sharegpt with ``ranking``) + ``dataset_info.json`` + images/;
                   LLaMA-Factory: ``src/llamafactory/data/converter.py`` (``SharegptDatasetConverter``),
                   ``data/dataset_info.json`` (entries ``rlhf_v``, ``rlaif_v``)
``swift``          ``{name}.jsonl``, two rows per pair, both with ``rejected_messages`` + ``rejected_images``
                   (text pair: the rejected answer on the same image; image pair: the chosen answer on the
                   retrieved image) + images/; ms-swift 4.6: ``swift/template/template_inputs.py``
                   (``TemplateInputs.from_dict``), ``swift/dataset/preprocessor/core.py``
                   (``RowPreprocessor._check_rejected_response``), ``swift/template/vision_utils.py``
``realign-json``   ``pref_data.json`` (``image``, ``retrieved_image``, ``chosen``/``rejected`` as role/content
                   lists) + images/ (the ``--image_folder``); Re-Align: ``train_rdpo.py``
                   (``LazySupervisedDataset``, ``preprocess_multimodal``)
``rlaif-v``        ``{name}_NNN.parquet`` with the images embedded (``image{bytes,path}``); RLAIF-V:
                   ``muffin/data/datasets.py`` (``RLAIFVDataset``), ``muffin/eval/muffin_inference_logp.py``
=================  ==========================================================================================

Every writer gets the rows one batch at a time (plain dicts, images undecoded) and an
:class:`~realign_data.publish.exports.images.ImageStore`; paths in the output are relative to the export folder (or, for
``realign-json``, to its image folder, as ``--image_folder`` expects).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from realign_data.runtime.atomic import atomic_path, atomic_write_json

IMAGE_TAG = "<image>"
TRAINERS = {
    "llamafactory": "LLaMA-Factory",
    "swift": "ms-swift",
    "realign-json": "Re-Align's train_rdpo.py",
    "rlaif-v": "RLAIF-V",
}
# columns each format reads; every format writes the text pair, swift and realign-json also the image pair
NEEDS = {
    "llamafactory": ("images", "prompt", "chosen", "rejected"),
    "swift": ("images", "prompt", "chosen", "rejected", "rejected_images"),
    "realign-json": ("images", "prompt", "chosen", "rejected", "rejected_images"),
    "rlaif-v": ("images", "prompt", "chosen", "rejected"),
}
IMAGE_FOLDER = "images"
PARQUET_ROWS_PER_FILE = 5000  # RLAIF-V's own logp shards hold 5000 rows


# ------------------------------------------------------------------------------------------- messages
def _parts_text(content) -> tuple[str, int]:
    """Text of one message's content with an ``<image>`` tag where an image part stands; and the tag count."""
    if isinstance(content, str):
        return content, content.count(IMAGE_TAG)
    pieces, tags = [], 0
    for part in content or []:
        if part.get("type") == "image":
            pieces.append(IMAGE_TAG)
            tags += 1
        elif part.get("text"):
            pieces.append(part["text"])
    return "\n".join(pieces), tags


def prompt_turns(prompt, num_images: int) -> list[tuple[str, str]]:
    """``(role, text)`` of the prompt's messages, with as many ``<image>`` tags as the row has images.

    Both trainers check that the tags match the images; a prompt with fewer image parts than images gets the
    missing tags in front of its first user turn (where LLaVA-style templates put them)."""
    turns, tags = [], 0
    for message in prompt:
        text, n = _parts_text(message["content"])
        turns.append((message["role"], text))
        tags += n
    if tags < num_images:
        first = next((i for i, (role, _) in enumerate(turns) if role == "user"), 0)
        role, text = turns[first]
        turns[first] = (role, "\n".join([IMAGE_TAG] * (num_images - tags) + ([text] if text else [])))
    return turns


def answer(messages) -> str:
    """The text of a chosen/rejected column value (its assistant messages' text parts, joined)."""
    if isinstance(messages, str):
        return messages
    return "\n".join(_parts_text(m["content"])[0] for m in messages)


def question(prompt) -> str:
    """The prompt's last user turn without image tags (RLAIF-V and Re-Align put the tag in themselves)."""
    users = [_parts_text(m["content"])[0] for m in prompt if m["role"] == "user"] or [""]
    return "\n".join(line for line in users[-1].split("\n") if line.strip() != IMAGE_TAG).strip()


# -------------------------------------------------------------------------------------------- writers
class JsonList:
    """A JSON list written one element per line to a temporary name, renamed into place on :meth:`close`."""

    def __init__(self, path: Path, lines: bool = False):
        self.path, self.lines, self.count = path, lines, 0
        self._ctx = atomic_path(path)
        self._f = open(self._ctx.__enter__(), "w", encoding="utf-8")
        if not lines:
            self._f.write("[")

    def add(self, obj: dict) -> None:
        text = json.dumps(obj, ensure_ascii=False)
        if self.lines:
            self._f.write(text + "\n")
        else:
            self._f.write(("\n" if self.count == 0 else ",\n") + text)
        self.count += 1

    def close(self) -> None:
        if not self.lines:
            self._f.write("\n]\n" if self.count else "]\n")
        self._f.close()
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        self._f.close()
        try:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
        except RuntimeError:
            pass


class Writer:
    """One format's output: :meth:`add` each source row, :meth:`close` for the data files written."""

    def __init__(self, root: Path, store, name: str, split: str):
        self.root, self.store, self.name, self.split = root, store, name, split
        self.rows = 0  # rows written (swift writes two per pair)
        self.image_pairs_left_out = 0

    def _images(self, row: dict, column: str) -> list[str]:
        return [
            self.store.add(v, f"row {row.get('id')!r} {column}[{i}]")[0] for i, v in enumerate(row.get(column) or [])
        ]

    def add(self, row: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def abort(self) -> None:
        pass


class LlamaFactory(Writer):
    def __init__(self, *args):
        super().__init__(*args)
        self.file = f"{self.name}.json"
        self.out = JsonList(self.root / self.file)

    def add(self, row):
        images = self._images(row, "images")
        role = {"user": "human", "assistant": "gpt", "system": "system"}
        turns = [{"from": role.get(r, r), "value": t} for r, t in prompt_turns(row["prompt"], len(images))]
        self.out.add(
            {
                "conversations": turns,
                "chosen": {"from": "gpt", "value": answer(row["chosen"])},
                "rejected": {"from": "gpt", "value": answer(row["rejected"])},
                "images": images,
            }
        )
        self.rows += 1
        self.image_pairs_left_out += 1 if row.get("rejected_images") else 0

    def close(self):
        self.out.close()
        entry = {
            "file_name": self.file,
            "formatting": "sharegpt",
            "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
        }
        atomic_write_json(self.root / "dataset_info.json", {self.name: entry})
        return [self.file, "dataset_info.json"]

    def abort(self):
        self.out.abort()


class Swift(Writer):
    def __init__(self, *args):
        super().__init__(*args)
        self.file = f"{self.name}.jsonl"
        self.out = JsonList(self.root / self.file, lines=True)

    def add(self, row):
        images = self._images(row, "images")
        messages = [{"role": r, "content": t} for r, t in prompt_turns(row["prompt"], len(images))]
        chosen = messages + [{"role": "assistant", "content": answer(row["chosen"])}]
        rejected = messages + [{"role": "assistant", "content": answer(row["rejected"])}]
        # Every row has the same four keys: a JSONL where some rows have ``rejected_response`` and others not
        # gets ``null`` in the others when read, which ms-swift's check refuses (strict) or drops (its default).
        self.out.add({"messages": chosen, "images": images, "rejected_messages": rejected, "rejected_images": images})
        self.out.add(
            {
                "messages": chosen,
                "images": images,
                "rejected_messages": chosen,
                "rejected_images": self._images(row, "rejected_images"),
            }
        )
        self.rows += 2

    def close(self):
        self.out.close()
        return [self.file]

    def abort(self):
        self.out.abort()


class RealignJson(Writer):
    FILE = "pref_data.json"

    def __init__(self, *args):
        super().__init__(*args)
        self.out = JsonList(self.root / self.FILE)

    def _one(self, row, column) -> str:
        paths = self._images(row, column)
        if len(paths) != 1:
            raise ValueError(
                f"row {row.get('id')!r} has {len(paths)} {column}; Re-Align's train_rdpo.py reads "
                f"one image and one retrieved image per row"
            )
        return paths[0][len(IMAGE_FOLDER) + 1 :]  # relative to --image_folder

    def add(self, row):
        image, retrieved = self._one(row, "images"), self._one(row, "rejected_images")
        user = {"role": "user", "content": f"{IMAGE_TAG}\n{question(row['prompt'])}"}
        self.out.add(
            {
                "id": row.get("id") or str(self.rows),
                "image": image,
                "retrieved_image": retrieved,
                "chosen": [user, {"role": "assistant", "content": answer(row["chosen"])}],
                "rejected": [user, {"role": "assistant", "content": answer(row["rejected"])}],
            }
        )
        self.rows += 1

    def close(self):
        self.out.close()
        return [self.FILE]

    def abort(self):
        self.out.abort()


class RlaifV(Writer):
    """Parquet shards in RLAIF-V's column layout; the images are embedded, so the store writes no files."""

    def __init__(self, *args):
        super().__init__(*args)
        self.batch: list[dict] = []
        self.files: list[str] = []

    @staticmethod
    def features():
        from datasets import Features, Image, Value

        return Features(
            {
                "ds_name": Value("string"),
                "image": Image(),
                "question": Value("string"),
                "chosen": Value("string"),
                "rejected": Value("string"),
                "origin_dataset": Value("string"),
                "origin_split": Value("string"),
                "idx": Value("string"),
                "image_path": Value("string"),
            }
        )

    def add(self, row):
        images = row.get("images") or []
        if len(images) != 1:
            raise ValueError(f"row {row.get('id')!r} has {len(images)} images; RLAIF-V's layout holds one")
        path, data = self.store.add(images[0], f"row {row.get('id')!r} images[0]")
        self.batch.append(
            {
                "ds_name": self.name,
                "image": {"bytes": data, "path": path},
                "question": question(row["prompt"]),
                "chosen": answer(row["chosen"]),
                "rejected": answer(row["rejected"]),
                "origin_dataset": self.name,
                "origin_split": json.dumps(self.split),
                "idx": str(row.get("id") or self.rows),
                "image_path": path,
            }
        )
        self.rows += 1
        self.image_pairs_left_out += 1 if row.get("rejected_images") else 0
        if len(self.batch) >= PARQUET_ROWS_PER_FILE:
            self._flush()

    def _flush(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.batch and self.files:
            return
        features = self.features()
        table = pa.Table.from_pylist([features.encode_example(r) for r in self.batch], schema=features.arrow_schema)
        name = f"{self.name}_{len(self.files):03d}.parquet"
        with atomic_path(self.root / name) as tmp:
            pq.write_table(table, tmp)
        self.files.append(name)
        self.batch = []

    def close(self):
        self._flush()
        return list(self.files)


WRITERS: dict[str, Callable[..., Writer]] = {
    "llamafactory": LlamaFactory,
    "swift": Swift,
    "realign-json": RealignJson,
    "rlaif-v": RlaifV,
}


def image_folder(fmt: str) -> str:
    """Folder of the image files in an export (``""``: the format embeds its images)."""
    return "" if fmt == "rlaif-v" else IMAGE_FOLDER


def rows_of(batches: Iterable) -> Iterable[dict]:
    for batch in batches:
        yield from batch.to_pylist()
