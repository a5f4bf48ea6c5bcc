"""``realign-data export``: a build in the layouts of LLaMA-Factory, ms-swift, Re-Align's train_rdpo.py and RLAIF-V.

Each format's rows, columns and image files are checked against the schema read from the target's own data code
(docs/export.md cites the files). Where the target installs in a side environment, the export is also loaded by
that tool's own dataset loader: set ``REALIGN_LLAMAFACTORY_PYTHON`` / ``REALIGN_SWIFT_PYTHON`` to its interpreter
(default ``/tmp/side_lf/bin/python`` and ``/tmp/side_swift/bin/python``, made by ``tests/support/export_side_envs.sh``);
those tests are skipped when the interpreter is missing or cannot import the tool.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realign_data.cli import app

ROWS = 5
ROOT = Path(__file__).resolve().parent.parent


def _png(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


ORIGINALS = [_png((255, 0, 0)), _png((0, 255, 0))]
NEGATIVE = _png((0, 0, 255))


def _rows(with_negatives: bool = True) -> list[dict]:
    from realign_data.building.schema import make_row

    return [
        make_row(
            seed_id=f"s{i}",
            image_id=str(i % 2),
            image_bytes=ORIGINALS[i % 2],
            image_name=f"/abs/corpus/{i % 2}.png",
            instruction=f"What is in picture {i}?",
            chosen=f"A red square number {i}.",
            rejected=f"A blue circle number {i}.",
            rejected_image_id="9",
            rejected_bytes=NEGATIVE,
            rejected_name="/abs/corpus/9.png",
            rank=1,
            score=0.9,
            similarity=0.5,
            masked="A [MASK] square",
            filler="annotation",
            fill_image_id="9",
        )
        for i in range(ROWS)
    ]


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    """A realign build folder (``save_to_disk``, the builder's columns): 5 pairs over 2 originals and 1 negative."""
    import datasets

    from realign_data.building.schema import features

    path = tmp_path_factory.mktemp("build") / "out"
    datasets.Dataset.from_list(_rows(), features=features()).save_to_disk(str(path))
    return path


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def _exported(build, tmp_path, fmt) -> Path:
    code, output = run("export", build, "--to", fmt, "--out", tmp_path / fmt, "--quiet")
    assert code == 0, output
    return tmp_path / fmt


def _no_absolute_paths(out: Path, build: Path) -> None:
    for f in out.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".parquet"):
            text = f.read_bytes()
            assert b"/abs/corpus" not in text and str(build).encode() not in text and str(out).encode() not in text, f


def _image_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / "images").iterdir()}


def test_llamafactory_rows_dataset_info_and_the_text_only_notice(build, tmp_path):
    code, output = run("export", build, "--to", "llamafactory", "--out", tmp_path / "lf")
    assert code == 0, output
    assert "holds only the text pair: 5 rows, one per pair; 5 image-rejected pairs" in output
    out = tmp_path / "lf"
    info = json.loads((out / "dataset_info.json").read_text())
    assert info == {
        "realign": {
            "file_name": "realign.json",
            "formatting": "sharegpt",
            "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
        }
    }
    rows = json.loads((out / "realign.json").read_text())
    assert len(rows) == ROWS
    for i, row in enumerate(rows):
        assert set(row) == {"conversations", "chosen", "rejected", "images"}
        assert row["conversations"] == [{"from": "human", "value": f"<image>\nWhat is in picture {i}?"}]
        assert row["chosen"] == {"from": "gpt", "value": f"A red square number {i}."}
        assert row["rejected"] == {"from": "gpt", "value": f"A blue circle number {i}."}
        assert row["images"] == [f"images/{_sha(ORIGINALS[i % 2])}.png"]  # media_dir = the dataset_info folder
    files = _image_files(out)
    assert files == {f"{_sha(b)}.png": b for b in ORIGINALS}  # the negatives are not written: not in the export
    _no_absolute_paths(out, build)


def test_swift_writes_the_text_pair_and_the_image_pair(build, tmp_path):
    out = _exported(build, tmp_path, "swift")
    rows = [json.loads(line) for line in (out / "realign.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * ROWS
    for i in range(ROWS):
        text, image = rows[2 * i], rows[2 * i + 1]
        messages = [
            {"role": "user", "content": f"<image>\nWhat is in picture {i}?"},
            {"role": "assistant", "content": f"A red square number {i}."},
        ]
        original = f"images/{_sha(ORIGINALS[i % 2])}.png"
        rejected = messages[:1] + [{"role": "assistant", "content": f"A blue circle number {i}."}]
        # the same four keys in every row (ms-swift drops rows where another row's rejected_response reads null)
        assert text == {
            "messages": messages,
            "images": [original],
            "rejected_messages": rejected,
            "rejected_images": [original],
        }
        assert image == {
            "messages": messages,
            "images": [original],
            "rejected_messages": messages,
            "rejected_images": [f"images/{_sha(NEGATIVE)}.png"],
        }
    assert _image_files(out) == {f"{_sha(b)}.png": b for b in ORIGINALS + [NEGATIVE]}  # 3 files for 15 references
    _no_absolute_paths(out, build)


def test_realign_json_is_what_train_rdpo_reads(build, tmp_path):
    out = _exported(build, tmp_path, "realign-json")
    rows = json.loads((out / "pref_data.json").read_text())
    assert len(rows) == ROWS
    for i, row in enumerate(rows):
        assert set(row) == {"id", "image", "retrieved_image", "chosen", "rejected"}
        # paths are relative to --image_folder (train_rdpo.py joins them with it)
        assert (out / "images" / row["image"]).read_bytes() == ORIGINALS[i % 2]
        assert (out / "images" / row["retrieved_image"]).read_bytes() == NEGATIVE
        user = {"role": "user", "content": f"<image>\nWhat is in picture {i}?"}
        assert row["chosen"] == [user, {"role": "assistant", "content": f"A red square number {i}."}]
        assert row["rejected"] == [user, {"role": "assistant", "content": f"A blue circle number {i}."}]
    assert len(_image_files(out)) == 3
    _no_absolute_paths(out, build)


def test_rlaif_v_parquet_loads_the_way_their_dataset_class_does(build, tmp_path):
    import datasets

    out = _exported(build, tmp_path, "rlaif-v")
    assert not (out / "images").exists()  # the images are embedded
    # RLAIFVDataset: load_dataset(data_dir)['train'].cast_column("image", Image(decode=False))
    ds = datasets.load_dataset(str(out))["train"].cast_column("image", datasets.Image(decode=False))
    assert ds.column_names == [
        "ds_name",
        "image",
        "question",
        "chosen",
        "rejected",
        "origin_dataset",
        "origin_split",
        "idx",
        "image_path",
    ]
    assert len(ds) == ROWS
    for i, row in enumerate(ds):
        assert row["image"]["bytes"] == ORIGINALS[i % 2]
        assert row["image"]["path"] == row["image_path"] == f"{_sha(ORIGINALS[i % 2])}.png"
        assert row["question"] == f"What is in picture {i}?"  # they add "<image>\n" themselves
        assert (row["chosen"], row["rejected"]) == (f"A red square number {i}.", f"A blue circle number {i}.")
        assert json.loads(row["origin_split"]) == "train"  # muffin_inference_logp json.loads it
        assert row["idx"] == f"s{i}"
    _no_absolute_paths(out, build)


def test_python_api_and_manifest(build, tmp_path):
    import realign_data
    import realign_data.publish.exports.formats
    from realign_data.publish.exports import read_manifest

    res = realign_data.export(build, to="swift", out=tmp_path / "api", name="mine")
    assert (res.pairs, res.rows, res.images, res.files) == (ROWS, 2 * ROWS, 3, ["mine.jsonl"])
    manifest = read_manifest(tmp_path / "api")
    assert manifest["format"] == "swift" and manifest["rows"] == 2 * ROWS and manifest["images"] == 3


def test_a_dataset_object_exports_too_and_images_given_by_path_are_read(tmp_path):
    import datasets

    import realign_data

    (tmp_path / "a.png").write_bytes(ORIGINALS[0])
    ds = datasets.Dataset.from_dict(
        {
            "images": [[str(tmp_path / "a.png")]],
            "prompt": [[{"role": "user", "content": [{"type": "text", "text": "Describe."}]}]],
            "chosen": [[{"role": "assistant", "content": [{"type": "text", "text": "Red."}]}]],
            "rejected": [[{"role": "assistant", "content": [{"type": "text", "text": "Blue."}]}]],
        }
    ).cast_column("images", datasets.List(datasets.Image()))
    res = realign_data.export(ds, to="llamafactory", out=tmp_path / "lf")
    row = json.loads((tmp_path / "lf" / "realign.json").read_text())[0]
    # a prompt without an image part gets the tag LLaMA-Factory counts against the images
    assert row["conversations"][0]["value"] == "<image>\nDescribe."
    assert (tmp_path / "lf" / row["images"][0]).read_bytes() == ORIGINALS[0]
    assert res.rows == 1 and "0 image-rejected pairs" in res.notes[0]


# ------------------------------------------------------------------------------------------- bad input
def test_unknown_format_is_one_sentence_exit_2(build, tmp_path):
    code, output = run("export", build, "--to", "axolotl", "--out", tmp_path / "x")
    assert code == 2
    assert "unknown export format 'axolotl'; valid formats: llamafactory, swift, realign-json, rlaif-v" in output
    assert "Traceback" not in output and not (tmp_path / "x").exists()


def test_a_dataset_without_rejected_images_cannot_be_a_swift_export(tmp_path):
    import datasets

    from realign_data.building.schema import features

    plain = tmp_path / "plain"
    ds = datasets.Dataset.from_list(_rows(), features=features()).remove_columns(["rejected_images"])
    ds.save_to_disk(str(plain))
    code, output = run("export", plain, "--to", "swift", "--out", tmp_path / "s")
    assert code == 2 and "has no rejected_images column; --to swift needs" in output
    code, output = run("export", plain, "--to", "realign-json", "--out", tmp_path / "r")
    assert code == 2 and "has no rejected_images column" in output
    code, output = run("export", plain, "--to", "llamafactory", "--out", tmp_path / "l", "--quiet")
    assert code == 0, output  # the text pair needs no rejected_images


def test_a_name_that_is_not_a_file_name_is_refused(build, tmp_path):
    code, output = run("export", build, "--to", "llamafactory", "--out", tmp_path / "o", "--name", "../up")
    assert code == 2 and "--name '../up' is not a plain file name" in output
    assert not (tmp_path / "o").exists() and not (tmp_path / "up.json").exists()


def test_not_a_build_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    code, output = run("export", tmp_path / "empty", "--to", "swift", "--out", tmp_path / "o")
    assert code == 2 and "holds no realign build" in output


def test_existing_out_needs_overwrite_and_is_replaced_whole(build, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, output = run("export", build, "--to", "swift", "--out", out)
    assert code == 2 and "exists and is not empty; pass --overwrite" in output
    assert (out / "keep.txt").read_text() == "mine"
    code, output = run("export", build, "--to", "realign-json", "--out", out, "--overwrite", "--quiet")
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == [".realign-export.json", "images", "pref_data.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_out_inside_the_dataset_is_refused(build):
    code, output = run("export", build, "--to", "swift", "--out", build / "swift", "--overwrite")
    assert code == 2 and "overlaps the dataset" in output
    assert not (build / "swift").exists()


def test_an_unreadable_image_is_one_sentence(tmp_path):
    import datasets

    import realign_data
    from realign_data.publish.exports import ExportError

    ds = datasets.Dataset.from_dict(
        {
            "images": [[{"bytes": None, "path": str(tmp_path / "gone.png")}]],
            "prompt": [[{"role": "user", "content": [{"type": "text", "text": "Q"}]}]],
            "chosen": [[{"role": "assistant", "content": [{"type": "text", "text": "A"}]}]],
            "rejected": [[{"role": "assistant", "content": [{"type": "text", "text": "B"}]}]],
        }
    )
    with pytest.raises(ExportError, match="images\\[0\\] has no bytes and its path .*gone.png.* is not a readable"):
        realign_data.export(ds, to="llamafactory", out=tmp_path / "lf")
    assert not (tmp_path / "lf").exists()
    (tmp_path / "gone.png").write_bytes(b"not an image at all")
    with pytest.raises(ExportError, match="images\\[0\\] is not an image Pillow can read"):
        realign_data.export(ds, to="llamafactory", out=tmp_path / "lf")
    assert not (tmp_path / "lf").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------- the targets' own loaders (side environments)
def _side_python(var: str, default: str) -> str:
    python = os.environ.get(var, default)
    module = {"REALIGN_LLAMAFACTORY_PYTHON": "llamafactory", "REALIGN_SWIFT_PYTHON": "swift"}[var]
    if (
        not Path(python).is_file()
        or subprocess.run(
            [python, "-c", f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": ""},
        ).returncode
    ):
        pytest.skip(
            f"no side environment with {module} ({var} or {default}; tests/support/export_side_envs.sh makes it)"
        )
    return python


def test_llamafactory_loads_the_export_with_its_own_loader(build, tmp_path):
    python = _side_python("REALIGN_LLAMAFACTORY_PYTHON", "/tmp/side_lf/bin/python")
    out = _exported(build, tmp_path, "llamafactory")
    script = ROOT / "tests" / "support" / "export_side_loaders.py"
    proc = subprocess.run(
        [python, str(script), "llamafactory", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["ranking"] is True and got["rows"] == ROWS and got["images"] == [1] * ROWS
    assert got["images_found"] == ROWS  # relative paths resolved against media_dir (= the dataset_info folder)
    assert got["tags_match"] == ROWS  # one <image> tag per image, as its mm_plugin demands
    assert got["responses"] == [[f"A red square number {i}.", f"A blue circle number {i}."] for i in range(ROWS)]


def test_swift_loads_the_export_with_its_own_loader(build, tmp_path):
    python = _side_python("REALIGN_SWIFT_PYTHON", "/tmp/side_swift/bin/python")
    out = _exported(build, tmp_path, "swift")
    script = ROOT / "tests" / "support" / "export_side_loaders.py"
    proc = subprocess.run(
        [python, str(script), "swift", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1"},
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["rows"] == 2 * ROWS
    assert got["text_pairs"] == ROWS and got["image_pairs"] == ROWS  # as the trainer builds its two sides
