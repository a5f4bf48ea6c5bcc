"""Executable docs: every fenced Python and shell block of README.md and docs/*.md runs here, as written.

A block runs in a fresh temporary directory (``examples/`` and ``experiments/`` linked in, as in a clone), shell
blocks with ``bash -e``, Python blocks with this interpreter, each under a timeout; the console scripts
(``realign-data``, ``realign-trl``) are this environment's. A block that fails, or stops running because the code
changed under it, fails this test with the block's file, line, text and output.

Markers: HTML comment lines right above the opening fence (docs/contributing.md shows them):

``<!-- docs-test: skip (REASON) -->``
    not run here; REASON (required) says why, e.g. ``needs a GPU and the real LLaVA weights``. The CI markers
    ``<!-- ci:install -->`` and ``<!-- ci:test -->`` also skip their block: ``.ci/run`` runs those.
``<!-- docs-test: continue -->``
    runs after the previous run block of the same file, in the same directory and with the variables that
    block exported (its background processes live until the chain ends): blocks that share state.
``<!-- docs-test: given PATH=FIXTURE ... -->``
    before the block, the directory gets PATH holding FIXTURE: ``demo-dataset`` (a built dataset,
    ``realign-data demo --num-images 40``'s ``dataset/``), ``coco-corpus`` (a synthetic COCO-layout corpus with
    train2014 and val2014 images) or ``tiny-llava`` (the tiny LLaVA checkpoint).
``<!-- docs-test: local-hub -->``
    the chain talks to a local Hub: ``realign-data hub serve`` runs for it and the block gets the variables that
    command prints (``HF_ENDPOINT``, ``HF_TOKEN``...), so ``push``, ``load_dataset`` and ``hf download`` of any
    ``namespace/name`` reach it.
``<!-- docs-test: timeout SECONDS -->``
    the block's own limit (default 300 s).

The switch that keeps real names in the docs: before a block runs, every key of ``tests/docs_rewrites.json``
found in its text is replaced by its value (``{tiny_llava}``: the tiny LLaVA's path, ``{hub_port}`` a free port,
``{work}`` the block's directory), so a Hub id such as ``llava-hf/llava-1.5-7b-hf`` runs against a tiny local
model and ``/data/coco`` is the block's ``data/coco``. Everything is offline; Hub repos are those of a local Hub
(``local-hub``, or a block that starts ``realign-data hub serve`` itself, as docs/hub.md tells a user to).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LANGS = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash", "console": "console"}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
CI_MARKER = re.compile(r"^\s*<!--\s*ci:(install|test)\s*-->\s*$")
FIXTURES = ("demo-dataset", "coco-corpus", "tiny-llava")
REWRITES = json.loads((Path(__file__).parent / "docs_rewrites.json").read_text())
DEFAULT_TIMEOUT = 300


@dataclass
class Block:
    file: str
    line: int
    lang: str
    text: str
    skip: str | None = None
    chained: bool = False
    given: dict = field(default_factory=dict)
    timeout: int = DEFAULT_TIMEOUT
    local_hub: bool = False

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def parse_marker(text: str, block: Block) -> None:
    """Apply one ``docs-test:`` marker's text to ``block``; an unknown or malformed marker is an error."""
    if m := re.fullmatch(r"skip\s*\((.+)\)", text):
        block.skip = m.group(1).strip()
    elif text == "continue":
        block.chained = True
    elif text == "local-hub":
        block.local_hub = True
    elif m := re.fullmatch(r"given\s+(.+)", text):
        for pair in m.group(1).split():
            path, _, fixture = pair.partition("=")
            if fixture not in FIXTURES:
                raise ValueError(f"{block.where}: unknown fixture {fixture!r} in {text!r} (valid: {FIXTURES})")
            block.given[path] = fixture
    elif m := re.fullmatch(r"timeout\s+(\d+)", text):
        block.timeout = int(m.group(1))
    else:
        raise ValueError(
            f"{block.where}: unknown docs-test marker {text!r} (valid: skip (REASON), continue, "
            "given PATH=FIXTURE, local-hub, timeout SECONDS)"
        )


def parse(path: Path) -> list[Block]:
    """The Python and shell blocks of one Markdown file, with the markers right above each opening fence."""
    lines = path.read_text().split("\n")
    rel = path.relative_to(REPO).as_posix()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if MARKER.match(lines[i]) and not any(
                MARKER.match(x) or CI_MARKER.match(x) or FENCE.match(x) for x in lines[i + 1 : i + 2]
            ):
                raise ValueError(f"{rel}:{i + 1}: a docs-test marker must sit right above a code fence")
            i += 1
            continue
        indent, fence, lang = m.groups()
        end = next(
            (
                j
                for j in range(i + 1, len(lines))
                if lines[j].strip().startswith(fence) and not lines[j].strip()[len(fence) :].strip()
            ),
            None,
        )
        if end is None:
            raise ValueError(f"{rel}:{i + 1}: code fence never closed")
        if lang in LANGS:
            block = Block(
                rel,
                i + 1,
                LANGS[lang],
                "\n".join(x[len(indent) :] if x.startswith(indent) else x for x in lines[i + 1 : end]) + "\n",
            )
            j = i - 1
            while j >= 0 and (MARKER.match(lines[j]) or CI_MARKER.match(lines[j])):
                if ci := CI_MARKER.match(lines[j]):
                    block.skip = f"`.ci/run` runs the ci:{ci.group(1)} command itself"
                else:
                    parse_marker(MARKER.match(lines[j]).group(1), block)
                j -= 1
            blocks.append(block)
        i = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [b for path in DOC_FILES for b in parse(path)]


def chains() -> list[list[Block]]:
    """Run blocks grouped: a ``continue`` block joins the chain of the run block before it in the same file."""
    out: list[list[Block]] = []
    for block in all_blocks():
        if block.skip:
            continue
        if block.chained:
            assert out and out[-1][0].file == block.file, f"{block.where}: `continue` with no run block before it"
            out[-1].append(block)
        else:
            out.append([block])
    return out


def rewrite(text: str, values: dict) -> str:
    for real, local in REWRITES.items():
        if real.startswith("_") or real not in text:
            continue
        text = text.replace(real, local.format_map(values))
    return text


@pytest.fixture(scope="session")
def coco_corpus(tmp_path_factory):
    from realign_data import make_sample_corpus

    return make_sample_corpus(tmp_path_factory.mktemp("docs_coco") / "coco", num_images=24, heldout=16, seed=0)


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory):
    from realign_data import run_demo

    return Path(run_demo(tmp_path_factory.mktemp("docs_demo") / "demo", num_images=40, progress=False)["dataset"])


def _env_file(path: Path) -> dict:
    if not path.is_file():
        return {}
    return dict(item.split("=", 1) for item in path.read_text().split("\0") if "=" in item)


def run_chain(chain: list[Block], work: Path, values: dict, fixtures: dict) -> None:
    env = dict(
        os.environ,
        REALIGN_HOME=str(work / ".realign-home"),
        TQDM_DISABLE="1",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    for name in ("examples", "experiments"):
        (work / name).symlink_to(REPO / name)
    groups = []
    try:
        if any(b.local_hub for b in chain):
            groups.append(_start_local_hub(work, env))
        for n, block in enumerate(chain):
            for dest, fixture in block.given.items():
                shutil.copytree(fixtures[fixture](), work / dest, symlinks=True)
            text = rewrite(block.text, values)
            if block.lang == "console":
                block_lang = "bash"
                text = "\n".join(x[2:] for x in text.splitlines() if x.startswith("$ ")) + "\n"
            else:
                block_lang = block.lang
            script = work / f".docs_block_{n}.{'py' if block_lang == 'python' else 'sh'}"
            env_out = work / f".docs_env_{n}"
            if block_lang == "bash":
                script.write_text(f"trap 'env -0 > {env_out}' EXIT\n{text}")
                argv = ["bash", "-e", str(script)]
            else:
                script.write_text(text)
                argv = [sys.executable, str(script)]
            log = work / f".docs_output_{n}"
            with log.open("w") as out:  # a file, not a pipe: a background process may keep it open
                proc = subprocess.Popen(
                    argv, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
                )
            groups.append(proc.pid)
            try:
                proc.wait(timeout=block.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                pytest.fail(
                    f"{block.where}: the {block.lang} block ran past {block.timeout} s\n{text}\n"
                    f"--- output (tail)\n{log.read_text(errors='replace')[-4000:]}"
                )
            if proc.returncode != 0:
                pytest.fail(
                    f"{block.where}: the {block.lang} block exited {proc.returncode}\n--- block (as run)\n"
                    f"{text}--- output (tail)\n{log.read_text(errors='replace')[-6000:]}"
                )
            env.update(_env_file(env_out))
    finally:
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass


class _Values(dict):
    """Placeholder values for the rewrites; a callable is called (a fixture built) only when a block uses it."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return value() if callable(value) else value


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_local_hub(work: Path, env: dict) -> int:
    """``realign-data hub serve`` in the background; ``env`` gets the variables it prints. Returns its pid."""
    import time

    log = work / ".local_hub.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["realign-data", "hub", "serve", str(work / ".local-hub")],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while "export HF_ENDPOINT=" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"realign-data hub serve did not start:\n{log.read_text()}")
        time.sleep(0.2)
    line = next(x for x in log.read_text().splitlines() if x.startswith("export HF_ENDPOINT="))
    env.update(item.split("=", 1) for item in line.removeprefix("export ").split())
    return proc.pid


def _chain_id(chain: list[Block]) -> str:
    return chain[0].where


@pytest.mark.parametrize("chain", chains(), ids=_chain_id)
def test_docs_block_runs_as_written(chain, tmp_path, request):
    work = tmp_path / "work"
    work.mkdir()
    fixtures = {
        "demo-dataset": lambda: request.getfixturevalue("demo_dataset"),
        "coco-corpus": lambda: request.getfixturevalue("coco_corpus"),
        "tiny-llava": lambda: request.getfixturevalue("tiny_llava"),
    }
    values = _Values(hub_port=str(_free_port()), work=str(work), tiny_llava=lambda: str(fixtures["tiny-llava"]()))
    run_chain(chain, work, values, fixtures)


def test_every_block_runs_or_says_why_not():
    """Each skipped block says why and carries no run markers; every rewrite of docs_rewrites.json is used."""
    blocks = all_blocks()
    assert len(blocks) > 30, "the docs parser found too few blocks"
    for block in blocks:
        assert block.skip is None or len(block.skip) > 5, f"{block.where}: a skip needs a reason ({block.skip!r})"
        assert not (block.skip and (block.chained or block.given or block.local_hub)), (
            f"{block.where}: a skipped block with run markers"
        )
    run_text = "".join(b.text for chain in chains() for b in chain)
    unused = [k for k in REWRITES if not k.startswith("_") and k not in run_text]
    assert not unused, f"tests/docs_rewrites.json rewrites what no run block says: {unused}"


def test_markers_are_checked(tmp_path, monkeypatch):
    """A misspelt marker, a skip without a reason, or a marker that is not above a fence is refused."""
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    for bad in (
        "<!-- docs-test: skp (typo) -->\n```bash\ntrue\n```\n",
        "<!-- docs-test: skip -->\n```bash\n```\n",
        "<!-- docs-test: continue -->\n\ntext\n```bash\ntrue\n```\n",
        "<!-- docs-test: given x=nope -->\n```bash\ntrue\n```\n",
    ):
        (tmp_path / "x.md").write_text(bad)
        with pytest.raises(ValueError):
            parse(tmp_path / "x.md")
    (tmp_path / "x.md").write_text(
        "<!-- ci:test -->\n<!-- docs-test: timeout 9 -->\n```sh\nexit 3\n```\n"
        "```python\nprint(1)\n```\n```text\nno\n```\n"
    )
    first, second = parse(tmp_path / "x.md")
    assert (first.lang, first.timeout, first.skip is not None) == ("bash", 9, True)
    assert (second.lang, second.line, second.skip) == ("python", 6, None)


def test_a_failing_block_fails_with_its_place_and_output(tmp_path):
    block = Block("docs/x.md", 7, "bash", "echo hello\nrealign-data build --no-such-option\necho never\n")
    with pytest.raises(pytest.fail.Exception) as e:
        run_chain([block], tmp_path, {}, {})
    assert "docs/x.md:7" in str(e.value) and "--no-such-option" in str(e.value) and "hello" in str(e.value)
    assert "never" not in str(e.value).split("--- output")[1]


def test_chained_blocks_share_the_directory_exported_variables_and_background_processes(tmp_path):
    chain = [
        Block("d.md", 1, "bash", "export GREETING=hi\nsleep 60 &\necho $! > pid\n"),
        Block(
            "d.md",
            5,
            "python",
            "import os, pathlib\nassert os.environ['GREETING'] == 'hi'\n"
            "os.kill(int(pathlib.Path('pid').read_text()), 0)\n",
            chained=True,
        ),
    ]
    import time

    start = time.monotonic()
    run_chain(chain, tmp_path, {}, {})
    assert time.monotonic() - start < 30  # not waiting for the background process
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):  # the chain's end stopped the background process
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
