"""Publishing to the Hub (issue 5), against a real HTTP server on localhost (tests/support/hub_server.py).

The suite runs offline (conftest sets HF_HUB_OFFLINE=1 before any import), so every push and load runs in a
subprocess with a clean environment: HF_ENDPOINT pointed at the fake Hub, offline mode off, Xet off, caches
and token under a temporary HF_HOME.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))
from hub_server import HubServer

TOKEN = "hf_test_token"


# ----------------------------------------------------------------------------------------------- helpers
def _features():
    from realign_data.building.schema import features

    return features()


def _png(seed: int) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (12, 10), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    img.putpixel((seed % 12, seed % 10), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_build_dir(root: Path, n: int = 5, offset: int = 0, with_provenance: bool = True) -> Path:
    """A build output directory as `realign-data build` writes it: save_to_disk dataset + JSON provenance."""
    from datasets import Dataset

    rows = []
    for i in range(offset, offset + n):
        chosen = f"A red cube left of {i} blue spheres."
        rows.append(
            {
                "images": [{"bytes": _png(i), "path": f"img_{i}.png"}],
                "prompt": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "text": None}, {"type": "text", "text": f"Describe image {i}."}],
                    }
                ],
                "chosen": [{"role": "assistant", "content": [{"type": "text", "text": chosen}]}],
                "rejected": [
                    {"role": "assistant", "content": [{"type": "text", "text": f"A green cone near {i} dogs."}]}
                ],
                "rejected_images": [{"bytes": _png(1000 + i), "path": f"img_{1000 + i}.png"}],
                "id": f"seed-{i}",
                "image_id": str(i),
                "rejected_image_id": str(1000 + i),
                "retrieval_rank": 1,
                "retrieval_score": 0.5 + i / 100,
                "text_similarity": 0.6,
                "masked_chosen": "A [MASK] left of [MASK].",
                "filler": "annotation",
                "fill_image_id": str(1000 + i),
                "image_negative": "retrieval",
                "negative_params": "{}",
                "difficulty": 0.55,
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=_features()).save_to_disk(str(root))
    if with_provenance:
        corpus = root.parent / f"{root.name}-corpus"
        (corpus / "annotations").mkdir(parents=True, exist_ok=True)
        (corpus / "annotations" / "captions_train2014.json").write_text(
            json.dumps(
                {
                    "licenses": [
                        {
                            "id": 1,
                            "name": "CC0 1.0 Universal (synthetic images)",
                            "url": "https://creativecommons.org/publicdomain/zero/1.0/",
                        }
                    ],
                    "images": [],
                }
            )
        )
        index = root.parent / f"{root.name}-index"
        index.mkdir(exist_ok=True)
        (index / "manifest.json").write_text(
            json.dumps(
                {
                    "encoder": {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "dim": 512},
                    "count": 40,
                    "index": {"factory": "Flat", "recall_at_10": 1.0, "search_params": {}},
                    "source": {"type": "coco", "root": str(corpus), "split": None},
                }
            )
        )
        config = {
            "index": str(index),
            "out": str(root),
            "coco_root": str(corpus),
            "seeds": None,
            "top_k": 8,
            "max_similarity": 0.95,
            "filler": "annotation",
            "model": None,
            "mask_kinds": None,
            "gate": "auto",
            "gate_model": "sentence-transformers/all-MiniLM-L6-v2",
            "sim_threshold": 0.95,
            "seed": 0,
            "format": "arrow",
        }
        (root / "realign_build.json").write_text(json.dumps(config, indent=2))
        (root / "build_report.json").write_text(
            json.dumps(
                {
                    "seeds_read": n + 2,
                    "pairs_written": n,
                    "drops": {"nothing_to_mask": 1, "all_fills_too_similar": 1},
                    "fills_tried": n + 3,
                    "histograms": {"retrieval_rank": {"1": n}},
                    "provenance": {
                        "seeds": "coco-captions",
                        "knowledge_base": {"path": str(index)},
                        "gate": {"gate": "lexical", "threshold": 0.95},
                    },
                },
                indent=2,
            )
        )
    return root


def tree_hash(path: Path) -> str:
    """Names, sizes, mtimes and contents of every file under ``path``."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        st = p.stat()
        h.update(f"{p.relative_to(path)}|{p.is_dir()}|{st.st_mtime_ns}".encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


CLI = [sys.executable, "-m", "realign_data.cli"]
# same CLI, with huggingface_hub's retry back-off made instant (a dropped upload is retried 5 times)
CLI_NO_SLEEP = [
    sys.executable,
    "-c",
    "import sys, time; time.sleep = lambda s: None; sys.argv[0] = 'realign-data'; "
    "from realign_data.cli import main; main()",
]


def run(cmd: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(Path.cwd()))


def run_python(code: str, env: dict, timeout: float = 120) -> dict:
    """Run ``code`` in a clean online subprocess; it prints one JSON object as its last line."""
    r = run([sys.executable, "-c", textwrap.dedent(code)], env, timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubServer(tmp_path_factory.mktemp("fake_hub"), token=TOKEN) as server:
        yield server


@pytest.fixture
def env(hub, tmp_path):
    hub.mode = "ok"
    yield hub.client_env(tmp_path / "hf_home")
    hub.mode = "ok"


# ----------------------------------------------------------------------------------------------- end to end
def test_push_load_roundtrip_card_and_build_config(hub, env, tmp_path):
    out = make_build_dir(tmp_path / "build")
    before = tree_hash(out)
    r = run(CLI + ["push", str(out), "tester/roundtrip", "--private", "-q"], env)
    assert r.returncode == 0, r.stderr
    assert "tester/roundtrip" in r.stdout
    assert tree_hash(out) == before, "a push must not touch the local dataset"

    # --private reached the server, the repo holds data + provenance + card
    assert {
        "name": "roundtrip",
        "organization": "tester",
        "visibility": "private",
        "type": "dataset",
    } in hub.create_payloads
    assert hub.repo("tester/roundtrip").private
    files = hub.list_files("tester/roundtrip")
    assert any(f.startswith("data/train-") and f.endswith(".parquet") for f in files)
    assert {"data/realign_build.json", "data/build_report.json", "data/index_manifest.json", "README.md"} <= set(files)
    assert json.loads(hub.read_file("tester/roundtrip", "data/realign_build.json")) == json.loads(
        (out / "realign_build.json").read_text()
    )

    res = run_python(
        f"""
        import json, datasets
        from datasets import load_dataset, load_from_disk, Image, List
        from huggingface_hub import DatasetCard
        from realign_data.publish.hub import load_build_config

        remote = load_dataset("tester/roundtrip", split="train")
        features = {{k: repr(v) for k, v in remote.features.items()}}
        local = load_from_disk({str(out)!r})
        raw = lambda d: d.cast_column("images", List(Image(decode=False))).cast_column(
            "rejected_images", List(Image(decode=False)))
        a, b = raw(remote).to_list(), raw(local).to_list()
        for rows in (a, b):
            for row in rows:
                for col in ("images", "rejected_images"):
                    for im in row[col]:
                        im.pop("path", None)
        card = DatasetCard.load("tester/roundtrip", repo_type="dataset")
        cfg = load_build_config("tester/roundtrip")
        print(json.dumps({{"equal": a == b, "n": len(a), "features": features, "card": str(card),
                          "license": card.data.license, "tags": card.data.tags,
                          "size": card.data.size_categories, "cfg": cfg}}))
    """,
        env,
    )
    assert res["n"] == 5 and res["equal"], "rows (with image bytes) differ after the round trip"
    assert "Image" in res["features"]["images"] and "Image" in res["features"]["rejected_images"]
    card = res["card"]
    assert res["license"] == "cc0-1.0"  # from the synthetic corpus' annotations
    assert {"dpo", "rdpo", "re-align", "vision", "preference", "synthetic"} <= set(res["tags"])
    assert res["size"] == ["n<1K"]
    for needle in (
        "configs:",
        "dataset_info:",
        "<!-- realign:begin -->",
        "<!-- realign:end -->",
        "ViT-B-32",
        "laion2b_s34b_b79k",
        "sentence-transformers/all-MiniLM-L6-v2",
        "0.95",
        "nothing_to_mask",
        "all_fills_too_similar",
        "Seed records read: 7",
        "Top-k",
        "annotation",
        'loss_type="rdpo"',
        "import realign_trl",
        "xing2025realign",
        "2502.13146",
        'load_dataset("tester/roundtrip"',
        "realign-data build --config data/realign_build.json",
    ):
        assert needle in card, needle
    assert res["cfg"] == json.loads((out / "realign_build.json").read_text())


def test_second_config_merges_card_and_keeps_user_sections(hub, env, tmp_path):
    first = make_build_dir(tmp_path / "first", n=4)
    assert run(CLI + ["push", str(first), "tester/merge", "-q"], env).returncode == 0
    # a user edits the card on the Hub: a section of their own, and a license
    readme = hub.read_file("tester/merge", "README.md").decode()
    readme = readme.replace("license: cc0-1.0", "license: cc-by-4.0")
    readme += "\n## Notes from the maintainers\n\nHand-written, must survive.\n"
    hub.put_file("tester/merge", "README.md", readme.encode())

    second = make_build_dir(tmp_path / "second", n=3, offset=50)
    r = run(CLI + ["push", str(second), "tester/merge", "--config-name", "hard", "-q"], env)
    assert r.returncode == 0, r.stderr
    import yaml

    text = hub.read_file("tester/merge", "README.md").decode()
    meta = yaml.safe_load(text.split("---")[1])
    assert {c["config_name"] for c in meta["configs"]} == {"default", "hard"}
    assert {i["config_name"] for i in meta["dataset_info"]} == {"default", "hard"}
    assert meta["license"] == "cc-by-4.0"  # the user's choice wins over the corpus licence
    assert "Hand-written, must survive." in text
    assert text.count("<!-- realign:begin -->") == 1 and text.count("<!-- realign:end -->") == 1
    assert "### Config `default`" in text and "### Config `hard`" in text
    files = hub.list_files("tester/merge")
    assert "hard/realign_build.json" in files and "data/realign_build.json" in files
    assert any(f.startswith("hard/train-") for f in files) and any(f.startswith("data/train-") for f in files)

    res = run_python(
        """
        import json
        from datasets import load_dataset
        print(json.dumps({"n": len(load_dataset("tester/merge", "hard", split="train")),
                          "d": len(load_dataset("tester/merge", split="train"))}))
    """,
        env,
    )
    assert res == {"n": 3, "d": 4}


# ----------------------------------------------------------------------------------------------- failures
def _one_clear_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    # huggingface_hub may log its retries first; the message itself is one line, the last one
    assert lines and lines[-1].startswith("Error: ") and sum(ln.startswith("Error: ") for ln in lines) == 1, r.stderr
    return lines[-1]


def test_http_401_gives_clear_message(hub, env, tmp_path):
    out = make_build_dir(tmp_path / "b", n=2, with_provenance=False)
    hub.mode = "401"
    err = _one_clear_error(run(CLI + ["push", str(out), "tester/denied"], env))
    assert "HTTP 401" in err and "hf auth login" in err


def test_missing_token_and_unreachable_hub(hub, env, tmp_path):
    out = make_build_dir(tmp_path / "b", n=2, with_provenance=False)
    no_token = {k: v for k, v in env.items() if k != "HF_TOKEN"}
    err = _one_clear_error(run(CLI + ["push", str(out), "tester/x"], no_token))
    assert "no Hugging Face token" in err and "hf auth login" in err

    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _one_clear_error(
        run(CLI + ["push", str(out), "tester/x"], {**env, "HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    )
    assert "connection to the Hub" in err and f"127.0.0.1:{port}" in err


def test_dropped_connection_mid_upload_leaves_local_dataset_untouched(hub, env, tmp_path):
    out = make_build_dir(tmp_path / "b", n=3)
    before = tree_hash(out)
    hub.mode = "drop_upload"
    err = _one_clear_error(run(CLI_NO_SLEEP + ["push", str(out), "tester/dropped"], env))
    assert "connection to the Hub" in err and "was lost" in err
    assert tree_hash(out) == before
    assert not any(f.endswith(".parquet") for f in hub.list_files("tester/dropped"))


# ----------------------------------------------------------------------------------------------- in-process units
def test_error_messages_name_status_and_action():
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    from realign_data.publish.hub_errors import explain_hub_error

    def err(status):
        req = httpx2.Request("POST", "http://127.0.0.1:1/api/repos/create")
        return HfHubHTTPError("boom", response=httpx2.Response(status, request=req))

    assert "HTTP 403" in str(explain_hub_error(err(403), "a/b")) and "write access" in str(
        explain_hub_error(err(403), "a/b")
    )
    assert "HTTP 404" in str(explain_hub_error(err(404), "a/b"))
    m = explain_hub_error(err(429), "a/b")
    assert m.status == 429 and "rate limit" in str(m) and "wait" in str(m)
    assert "HTTP 503" in str(explain_hub_error(err(503), "a/b"))


def test_merge_card_keeps_foreign_yaml_and_text():
    from realign_data.publish.dataset_card import BEGIN_MARKER, END_MARKER, merge_card
    from realign_data.publish.provenance import Provenance

    existing = textwrap.dedent("""\
        ---
        configs:
        - config_name: default
          data_files:
          - split: train
            path: data/train-*
        dataset_info:
          config_name: default
          splits:
          - name: train
            num_examples: 2500
        tags:
        - mine
        ---
        # Title by hand

        Intro by hand.

        <!-- realign:begin -->
        old generated text
        <!-- realign:end -->

        ## Outro by hand
        """)
    new = merge_card(
        existing,
        repo_id="me/ds",
        provenance={"default": Provenance(config={"top_k": 3})},
        columns=["images", "prompt", "chosen", "rejected", "rejected_images"],
    )
    assert "old generated text" not in new
    assert new.index("Intro by hand.") < new.index(BEGIN_MARKER) < new.index(END_MARKER) < new.index("## Outro by hand")
    assert "path: data/train-*" in new and "num_examples: 2500" in new
    assert "- mine" in new and "- rdpo" in new and "1K<n<10K" in new and "license: other" in new
    again = merge_card(new, repo_id="me/ds", provenance={"default": Provenance(config={"top_k": 3})}, columns=[])
    assert again.count(BEGIN_MARKER) == 1


def test_load_build_config_local(tmp_path):
    from realign_data.publish.hub import HubUsageError, load_build_config

    out = make_build_dir(tmp_path / "b", n=1)
    want = json.loads((out / "realign_build.json").read_text())
    assert load_build_config(out / "realign_build.json") == want
    assert load_build_config(out) == want
    with pytest.raises(HubUsageError):
        load_build_config(tmp_path / "missing.json")


def test_build_config_flag_reproduces_saved_config(tmp_path, monkeypatch):
    """`realign-data build --config realign_build.json` runs the saved BuildConfig; typed flags override it."""
    from typer.testing import CliRunner

    builder = pytest.importorskip("realign_data.building.builder")
    from realign_data.cli import app

    saved = builder.BuildConfig(index="my-index", out=str(tmp_path / "orig"), top_k=3, sim_threshold=0.9, seed=7)
    cfg_file = tmp_path / "realign_build.json"
    cfg_file.write_text(json.dumps(saved.to_dict()))
    seen = []

    def fake_build(config):
        seen.append(config)
        raise builder.BuildError("stop here")

    monkeypatch.setattr(builder, "build", fake_build)
    r = CliRunner().invoke(app, ["build", "--config", str(cfg_file), "-q"])
    assert r.exit_code == 2 and "stop here" in r.output
    assert seen[-1].to_dict() == {**saved.to_dict(), "progress": False}
    r = CliRunner().invoke(app, ["build", "--config", str(cfg_file), "--top-k", "5", "--out", str(tmp_path / "new")])
    assert seen[-1].to_dict() == {**saved.to_dict(), "top_k": 5, "out": str(tmp_path / "new")}
    r = CliRunner().invoke(app, ["build", "--config", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_push_to_a_branch(hub, env, tmp_path):
    out = make_build_dir(tmp_path / "b", n=2, with_provenance=False)
    r = run(CLI + ["push", str(out), "tester/branchy", "--revision", "dev", "-q"], env)
    assert r.returncode == 0, r.stderr
    assert any(f.endswith(".parquet") for f in hub.list_files("tester/branchy", revision="dev"))
    assert hub.list_files("tester/branchy", revision="main") == [".gitattributes"]
    card = hub.read_file("tester/branchy", "README.md", revision="dev").decode()
    assert "No build configuration (realign_build.json) was found" in card and "license: other" in card


def test_card_commit_is_retried_when_another_commit_lands_first(hub, env, tmp_path):
    """Between the data commit and the card commit someone else commits: the card commit (parent = the data
    commit) gets HTTP 412, is retried on the new head with backoff, and both commits are kept."""
    out = make_build_dir(tmp_path / "b", n=2)
    res = run_python(
        f"""
        import json
        from huggingface_hub import HfApi
        import realign_data.publish.hub as hub

        merged, calls = hub._merged_readme, []

        def commit_in_between(api, repo_id, head, *args, **kwargs):
            calls.append(head)
            if len(calls) == 1:  # another writer commits right after our data commit
                HfApi().upload_file(path_or_fileobj=b"theirs", path_in_repo="NOTES.txt", repo_id=repo_id,
                                    repo_type="dataset")
            return merged(api, repo_id, head, *args, **kwargs)

        hub._merged_readme = commit_in_between
        result = hub.push_to_hub({str(out)!r}, "tester/raced", progress=False)
        print(json.dumps({{"calls": len(calls), "heads_differ": calls[0] != calls[-1], "files": result.files}}))
    """,
        env,
    )
    assert res["calls"] == 2 and res["heads_differ"]
    files = hub.list_files("tester/raced")
    assert "NOTES.txt" in files and "data/realign_build.json" in files
    assert "<!-- realign:begin -->" in hub.read_file("tester/raced", "README.md").decode()


def test_hub_serve_command_prints_the_variables_a_push_and_load_need(tmp_path):
    """`realign-data hub serve DIR` (docs/hub.md, A local Hub): export what it prints, push, load_dataset."""
    import os
    import signal

    proc = subprocess.Popen(
        CLI + ["hub", "serve", str(tmp_path / "local-hub")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        export = ""
        for _ in range(5):
            line = proc.stdout.readline()
            if line.startswith("export "):
                export = line
                break
        assert export, proc.stderr.read() if proc.poll() is not None else "no export line"
        variables = dict(kv.split("=", 1) for kv in export.split()[1:])
        assert variables["HF_ENDPOINT"].startswith("http://127.0.0.1:") and variables["HF_TOKEN"] == "hf_local"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env.update(variables, HF_HOME=str(tmp_path / "hf_home"), NO_PROXY="*")
        out = make_build_dir(tmp_path / "build", n=3)
        r = run(CLI + ["push", str(out), "local/tried", "-q"], env)
        assert r.returncode == 0, r.stderr[-3000:]
        res = run_python(
            """
            import json
            from datasets import load_dataset
            ds = load_dataset("local/tried", split="train")
            print(json.dumps({"rows": len(ds), "columns": sorted(ds.column_names)}))
        """,
            env,
        )
        assert res["rows"] == 3 and {"prompt", "chosen", "rejected"} <= set(res["columns"])
        assert list((tmp_path / "local-hub").glob("datasets/local/tried/main/data/*.parquet"))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_hub_serve_stops_on_ctrl_c_even_when_started_with_sigint_ignored(tmp_path, sig):
    """`hub serve ... &` in a script starts it with SIGINT ignored (as some test workers do): Ctrl-C must still stop it."""
    import signal

    proc = subprocess.Popen(
        CLI + ["hub", "serve", str(tmp_path / "hub")],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert proc.stdout.readline().startswith("Local Hub at") and proc.stdout.readline().startswith("export ")
        proc.send_signal(getattr(signal, sig))
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
