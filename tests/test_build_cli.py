"""The CLI of the builder: demo, build (kill -9 and resume in a subprocess), inspect, merge, usage errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from realign_data.building.schema import COLUMNS, message_text
from realign_data.cli import app

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from realign_cli import command

runner = CliRunner()


def data_hashes(d: Path) -> dict:
    files = sorted(d.glob("data-*.arrow")) + [d / "dataset_info.json", d / "state.json"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_demo_end_to_end(tmp_path):
    import datasets

    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--num-images", "40", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "pairs written" in r.output and "Report:" in r.output
    assert "Image-blind separability: a text-only classifier picks the chosen answer in" in r.output  # issue 22
    ds = datasets.load_from_disk(str(tmp_path / "demo" / "dataset"))
    assert len(ds) > 0 and set(COLUMNS) <= set(ds.column_names)
    for row in ds:
        assert message_text(row["rejected"]) != message_text(row["chosen"])
        assert row["text_similarity"] < 0.95
        assert row["rejected_images"][0].tobytes() != row["images"][0].tobytes()
    html = (tmp_path / "demo" / "dataset" / "inspect.html").read_text()
    assert html.count("data:image/jpeg;base64,") >= 2 and "<ins>" in html
    report = json.loads((tmp_path / "demo" / "dataset" / "build_report.json").read_text())
    prov = report["provenance"]
    # offline (tests): random encoder and lexical gate, both recorded
    assert prov["knowledge_base"]["random_encoder"] is True
    assert prov["gate"]["gate"] == "lexical" and "fallback_reason" in prov["gate"]


def _cli(*args, pause=None):
    return subprocess.Popen(command(*args, pause=pause), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_and_resume(tiny_kb, tmp_path):
    args = ["build", "--index", str(tiny_kb), "--gate", "lexical", "--top-k", "3", "--chunk-size", "4", "--quiet"]
    ref = runner.invoke(app, args + ["--out", str(tmp_path / "ref")])
    assert ref.exit_code == 0, ref.output
    out = tmp_path / "killed"
    p = _cli(*args, "--out", str(out), pause=0.3)
    markers = out / ".realign-build" / "chunks"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(markers.glob("*.json"))) < 3:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = len(list((out / ".realign-build" / "chunks").glob("*.json")))
    assert 3 <= done < 10 and not (out / "build_report.json").exists()
    p = _cli(*args, "--out", str(out))
    assert p.wait(timeout=300) == 0, p.stderr.read()
    report = json.loads((out / "build_report.json").read_text())
    assert report["throughput"]["resumed_chunks"] == done
    assert data_hashes(out) == data_hashes(tmp_path / "ref")


def test_missing_seed_column_is_a_usage_error(tiny_kb, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"image": "x.jpg", "question": "q", "answer": "a"}) + "\n")
    r = runner.invoke(
        app,
        [
            "build",
            "--index",
            str(tiny_kb),
            "--seeds",
            str(seeds),
            "--chosen-column",
            "caption",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert r.exit_code == 2
    assert "columns are: image, question, answer" in r.output


def test_bad_option_values_are_usage_errors(tiny_kb, tmp_path):
    r = runner.invoke(app, ["build", "--index", str(tiny_kb), "--filler", "magic", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown filler 'magic'" in r.output
    r = runner.invoke(app, ["build", "--index", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--coco-root" in r.output
    for flag, value, message in [
        ("--batch-size", "0", "batch size must be >= 1"),
        ("--concurrency", "-3", "concurrency must be >= 1"),
    ]:
        r = runner.invoke(app, ["build", "--index", str(tiny_kb), "--out", str(tmp_path / "o"), flag, value])
        assert r.exit_code == 2 and message in r.output, r.output
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--num-images", "0"])
    assert r.exit_code == 2 and "--num-images must be at least 1" in r.output
    assert not (tmp_path / "d").exists()


def test_build_inspect_merge_cli(tiny_kb, tmp_path):
    base = ["build", "--index", str(tiny_kb), "--gate", "lexical", "--top-k", "2", "--chunk-size", "8", "--quiet"]
    for i in range(2):
        r = runner.invoke(app, base + ["--out", str(tmp_path / f"s{i}"), "--num-shards", "2", "--shard-index", str(i)])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, base[:-1] + ["--out", str(tmp_path / "s1"), "--num-shards", "2", "--shard-index", "1"])
    assert r.exit_code == 0 and "Shard 1 of 2: 2 chunks done" in r.output, r.output  # a re-run: already done
    assert "run the same command without --num-shards/--shard-index to write the dataset" in r.output
    r = runner.invoke(app, ["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "Merged 2 shards" in r.output
    r = runner.invoke(app, ["inspect", str(tmp_path / "m"), "--html", str(tmp_path / "x.html"), "-n", "3"])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "x.html").read_text()
    assert page.count("class='pair'") == 3 and "data:image/jpeg;base64," in page
    assert not list((tmp_path / "m").rglob("cache-*.arrow")), "inspect must not write into the dataset"


def test_help_is_light():
    code = (
        "import sys, time; t=time.time(); from realign_data.cli import app; "
        "heavy=[m for m in ('torch','faiss','transformers','open_clip','datasets') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    subprocess.run([sys.executable, "-m", "realign_data.cli", "build", "--help"], capture_output=True, check=True)
