"""One writer per output: two builds racing into one ``--out`` (real processes, repeated), a lock held by a live
process, a lock left by a killed one, and ``sample`` refusing to rewrite an existing corpus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from realign_data import BuildConfig, build

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from test_build_cli import data_hashes

from fault_procs import shared_commands

ARGS = ["--gate", "lexical", "--top-k", "3", "--chunk-size", "4", "--max-samples", "8", "--quiet"]
HOLD = (
    "import sys, time; from realign_data.runtime.locks import output_lock\n"
    "with output_lock(sys.argv[1], 'holder'):\n    print('held', flush=True); time.sleep(60)"
)


@pytest.fixture(scope="module")
def commands():
    return shared_commands()


def test_two_builds_into_one_out_one_is_refused_and_the_dataset_is_whole(tiny_kb, tmp_path, commands):
    ref = build(
        BuildConfig(
            index=str(tiny_kb),
            out=str(tmp_path / "ref"),
            gate="lexical",
            top_k=3,
            chunk_size=4,
            max_samples=8,
            progress=False,
        )
    )
    for trial in range(10):
        out = tmp_path / f"race{trial}"
        args = ["build", "--index", tiny_kb, "--out", out, *ARGS]
        results = commands.run_together([args, args])
        codes = sorted(code for code, _ in results)
        assert codes == [0, 1], results
        refused = next(err for code, err in results if code == 1)
        assert "is being written by pid" in refused and "Traceback" not in refused, refused
        assert data_hashes(out) == data_hashes(Path(ref.out))
        report = json.loads((out / "build_report.json").read_text())
        assert report["pairs_written"] == ref.pairs_written
        assert not list(tmp_path.glob(f".race{trial}*.lock"))  # released


def test_a_live_holder_is_named_and_a_killed_one_is_taken_over(tmp_path, caplog):
    from realign_data.runtime.locks import LockHeld, output_lock

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"is being written by pid {holder.pid} on .*holder"):
            with output_lock(out, "second"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with output_lock(out, "third") as path:  # the kernel released the lock of the killed process
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"{holder.pid}" in caplog.text and "stale" in caplog.text


def test_sample_refuses_an_existing_corpus_unless_overwrite(tmp_path):
    from typer.testing import CliRunner

    from realign_data.cli import app

    runner = CliRunner()
    out = tmp_path / "corpus"
    assert runner.invoke(app, ["sample", "--out", str(out), "--num-images", "5", "--quiet"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    r = runner.invoke(app, ["sample", "--out", str(out), "--num-images", "3", "--seed", "1", "--quiet"])
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    r = runner.invoke(app, ["sample", "--out", str(out), "--num-images", "3", "--seed", "1", "--overwrite", "--quiet"])
    assert r.exit_code == 0
    images = json.loads((out / "annotations" / "instances_train2014.json").read_text())["images"]
    assert sorted(p.name for p in (out / "train2014").iterdir()) == sorted(im["file_name"] for im in images)
    assert len(images) == 3
    r = runner.invoke(app, ["sample", "--out", str(tmp_path / "big"), "--num-images", "600000"])
    assert r.exit_code == 2 and "599999" in r.output


def test_sample_adds_a_new_split_beside_an_existing_one(tmp_path):
    """A held-out split written into a corpus root is added, not refused, and leaves the first split untouched."""
    from realign_data.testing.sample import make_sample_corpus

    root = tmp_path / "coco"
    make_sample_corpus(root, num_images=4, seed=0, split="train2014")
    before = {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    make_sample_corpus(root, num_images=3, seed=1, split="val2014")
    after = {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert all(after[name] == data for name, data in before.items())
    assert len(list((root / "val2014").iterdir())) == 3
