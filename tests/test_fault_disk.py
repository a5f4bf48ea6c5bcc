"""A full disk (a tiny tmpfs) under ``build``, ``sample`` and ``index build``: one sentence saying what is kept and
how to go on, exit 1, no traceback; once there is room, the same command (``sample``: with ``--overwrite``) ends
with what an uninterrupted run writes. Needs root (to mount the tmpfs); skipped elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from test_build_cli import data_hashes

from fault_procs import shared_commands


@pytest.fixture
def small_disks(tmp_path):
    """Three tmpfs folders too small for their command's output; ``grow(d)`` gives one room."""
    disks = {}
    for name, size in (("build", "100k"), ("sample", "100k"), ("index", "40k")):
        d = tmp_path / name
        d.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True
        ).returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        disks[name] = d
    yield disks
    for d in disks.values():
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_a_full_disk_is_one_sentence_and_the_same_command_resumes(
    small_disks, tiny_kb, sample_corpus, tiny_open_clip, tmp_path
):
    name, ckpt = tiny_open_clip
    build = ["build", "--index", tiny_kb, "--gate", "lexical", "--max-samples", "16", "--chunk-size", "4", "--quiet"]
    index = [
        "index",
        "build",
        "--source",
        "coco",
        "--root",
        sample_corpus,
        "--model",
        name,
        "--pretrained",
        ckpt,
        "--num-workers",
        "0",
        "--shard-size",
        "8",
        "--quiet",
    ]
    sample = ["sample", "--num-images", "40", "-q"]
    todo = [
        [*build, "--out", small_disks["build"] / "out"],
        [*sample, "--out", small_disks["sample"] / "corpus"],
        [*index, "--out", small_disks["index"] / "kb"],
    ]
    commands = shared_commands()
    said = [
        "the chunks it finished are kept",
        "run the same command again with --overwrite",
        "the embedding shards it finished are kept",
    ]
    for (code, output), words in zip(commands.run_together(todo), said):
        assert code == 1 and "Traceback" not in output, output[-3000:]
        assert output.count("Error: the disk is full (No space left on device") == 1 and words in output, output
    for d in small_disks.values():
        subprocess.run(["mount", "-o", "remount,size=64m", str(d)], check=True)
    todo[1].append("--overwrite")
    todo.append([*build, "--out", tmp_path / "clean"])
    for code, output in commands.run_together(todo):
        assert code == 0, output[-3000:]
    assert data_hashes(small_disks["build"] / "out") == data_hashes(tmp_path / "clean")
