"""Every input accounted for: a folder corpus with a GIF, TIFFs, an EXIF-rotated JPEG, a non-UTF-8 file name, a
symlink loop, a dangling link, a link to a folder and a text file. Each file is embedded or listed with its reason,
and the rotated photo is embedded upright. Seeds files that are not UTF-8 or hold a malformed line say where."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def _picture(w: int = 96, h: int = 48) -> Image.Image:
    """An asymmetric picture (a red block on the left, a gradient on the right): rotations change it."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 3] = (220, 30, 30)
    a[:, w // 3 :, 1] = np.linspace(0, 255, w - w // 3, dtype=np.uint8)[None, :]
    a[: h // 4, :, 2] = 255
    return Image.fromarray(a)


def test_a_folder_with_every_kind_of_entry_is_fully_accounted_for(tmp_path, tiny_open_clip):
    from realign_data.kb.corpus import open_source
    from realign_data.kb.encoder import Encoder
    from realign_data.kb.knowledge_base import KnowledgeBase
    from realign_data.kb.knowledge_base_build import build_knowledge_base

    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    pic = _picture()
    frames = [pic, pic.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    pic.save(root / "scan.tif")
    pic.save(root / "sub" / "scan2.TIFF")
    pic.save(root / "plain.png")
    # stored sideways with EXIF orientation 6 ("rotate 90 CW to display"), as a phone writes it
    exif = Image.Exif()
    exif[0x0112] = 6
    pic.transpose(Image.Transpose.ROTATE_90).save(root / "phone.jpg", exif=exif, quality=100)
    upright = pic  # what a viewer shows for orientation 6
    with open(os.path.join(os.fsencode(root), b"caf\xe9.png"), "wb") as f:  # a Latin-1 name: not UTF-8
        pic.save(f, format="PNG")
    os.symlink("loop.jpg", root / "loop.jpg")
    os.symlink("gone.jpg", root / "dangling.jpg")
    os.symlink(".", root / "sub" / "again")  # a link to a folder (a loop if followed)
    (root / "notes.txt").write_text("not an image")
    name, ckpt = tiny_open_clip
    out = tmp_path / "kb"
    report = build_knowledge_base(
        open_source("folder", root), out, model=name, pretrained=str(ckpt), num_workers=0, batch_size=8, progress=False
    )
    kb = KnowledgeBase.load(out)
    embedded = set(kb.ids)
    assert embedded == {"anim.gif", "scan.tif", "sub/scan2.TIFF", "plain.png", "phone.jpg"}
    skipped = dict(report.skipped)
    assert "not valid UTF-8" in skipped["caf\\xe9.png"]
    assert "symbolic link loop" in skipped["loop.jpg"]
    assert "dangling link (to gone.jpg)" in skipped["dangling.jpg"]
    assert "link to a folder (not followed)" in skipped["sub/again/"]
    assert "not an image format" in skipped["notes.txt"]
    assert len(embedded) + len(skipped) == 10  # every entry of the folder, once
    # upright: the stored size is the displayed one, and the embedding is the upright picture's
    phone = next(r for r in kb._table.to_pylist() if r["id"] == "phone.jpg")
    assert (phone["width"], phone["height"]) == upright.size
    enc = Encoder(name, str(ckpt))
    stored = kb.embeddings_for(["phone.jpg"])[0]
    want, sideways = enc.embed_images([upright, pic.transpose(Image.Transpose.ROTATE_90)])
    assert float(stored @ want) > float(stored @ sideways)
    assert float(stored @ want) > 0.99


def _seed_lines(images, chosen: list[bytes]) -> bytes:
    return b"".join(
        b'{"image": "%s", "instruction": "Describe the image.", "chosen": "%s"}\n' % (str(im).encode(), c)
        for im, c in zip(images, chosen)
    )


def test_seeds_files_that_are_not_utf8_or_not_json_say_where(tiny_kb, sample_corpus, tmp_path):
    from typer.testing import CliRunner

    from realign_data.cli import app

    images = sorted((sample_corpus / "train2014").iterdir())[:3]
    chosen = [
        b"A red car next to two dogs.",
        b"A caf\xe9 with a blue chair on the left of a cat.",
        b"Three green apples above a white plate.",
    ]
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(_seed_lines(images, chosen))
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(_seed_lines(images[:1], chosen[:1]) + b'{"image": "x.jpg" "instruction": "?"}\n')
    base = ["build", "--index", str(tiny_kb), "--gate", "lexical", "--top-k", "2", "--quiet"]
    runner = CliRunner()
    r = runner.invoke(app, [*base, "--seeds", str(latin), "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "line 2: not valid utf-8 text (byte 0xe9" in r.output and "--seeds-encoding" in r.output
    r = runner.invoke(app, [*base, "--seeds", str(broken), "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "line 2: Expecting ',' delimiter" in r.output, r.output
    r = runner.invoke(app, [*base, "--seeds", str(latin), "--seeds-encoding", "latin-1", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    import json

    import datasets

    rows = datasets.load_from_disk(str(tmp_path / "c"))
    assert any("café" in json.dumps(row["chosen"], ensure_ascii=False) for row in rows)


def test_seed_images_stay_inside_their_root_and_are_read_only_from_bounded_regular_files(
    tiny_kb, sample_corpus, tmp_path
):
    """Seeds naming ``../outside``, an absolute path, or a link out of ``--image-root`` are dropped as
    ``outside_image_root`` and never read (nothing of the outside picture reaches the output); a FIFO and
    ``/dev/zero`` are ``not_a_file`` (no hang, no MemoryError), a file over ``--max-image-bytes``
    ``image_too_large``; ``--allow-outside-root`` reads the outside picture. Real processes, bounded in time."""
    import json
    import shutil
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
    from fault_procs import shared_commands

    pics = sorted((sample_corpus / "train2014").iterdir())
    root, outside = tmp_path / "imgs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    shutil.copy(pics[0], root / "good.jpg")
    secret = outside / "secret.png"
    _picture().save(secret)
    shutil.copy(pics[1], root / "big.jpg")
    os.symlink(secret, root / "link.png")
    os.mkfifo(root / "pipe.jpg")
    cap = max((root / "good.jpg").stat().st_size, secret.stat().st_size)
    big = (root / "big.jpg").read_bytes()
    (root / "big.jpg").write_bytes(big + b"\0" * (cap + 1 - len(big)))  # a valid JPEG padded past the cap
    images = ["good.jpg", "../outside/secret.png", str(secret), "link.png", "pipe.jpg", "big.jpg", "/dev/zero"]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(_seed_lines(images, [b"A red car next to two dogs."] * len(images)))
    base = [
        "build",
        "--index",
        tiny_kb,
        "--seeds",
        seeds,
        "--image-root",
        root,
        "--gate",
        "lexical",
        "--top-k",
        "2",
        "--max-image-bytes",
        cap,
        "--quiet",
    ]
    (code, said), (code2, said2) = shared_commands().run_together(
        [[*base, "--out", tmp_path / "a"], [*base, "--allow-outside-root", "--out", tmp_path / "b"]], timeout=60
    )
    assert code == 0 and code2 == 0, said + said2
    drops = json.loads((tmp_path / "a" / "build_report.json").read_text())["drops"]
    assert drops == {"image_too_large": 1, "not_a_file": 1, "outside_image_root": 4}
    drops = json.loads((tmp_path / "b" / "build_report.json").read_text())["drops"]
    assert drops == {"image_too_large": 1, "not_a_file": 2}
    import datasets

    rows = datasets.load_from_disk(str(tmp_path / "a"))
    assert {r["image_id"] for r in rows} == {"good.jpg"}
    allowed = datasets.load_from_disk(str(tmp_path / "b"))
    assert {r["image_id"] for r in allowed} == {"good.jpg", "secret.png", "link.png"}
