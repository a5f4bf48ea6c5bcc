"""Real processes for the fault suite, without paying torch's import for each one.

``forkserver`` starts one clean server process that imports the heavy modules once (before any OpenMP or FAISS
thread exists, so forking it is safe); every child is a real process forked from it, with its own pid, file
descriptors and locks, that runs ``realign-data ARGS`` and exits with the command's exit code. Its stderr goes to
a file the test reads (stdout too). ``["realign-trl", ...]`` runs ``realign-trl`` instead.

    procs = shared_commands()
    results = procs.run_together([args_a, args_b])   # [(exit code, stderr text), ...], started at one signal
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import tempfile
from pathlib import Path

PRELOAD = [
    "realign_data.cli",
    "realign_data.building.builder",
    "realign_data.building.pipeline",
    "realign_data.kb.knowledge_base",
    "realign_data.testing.tiny_models",
    "realign_data.objects.english",
    "inflect",
    "torch",
    "faiss",
    "datasets",
    "pyarrow.parquet",
    "open_clip",
    "trl",
    "realign_trl.cli",
    "realign_trl.scripts.dpo",
]


def _child(args: list[str], err: str, go) -> None:
    fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.dup2(fd, 1)  # typer prints usage errors on stdout or stderr depending on the case: read both
    go.wait(60)
    if args[:1] == ["realign-trl"]:
        from realign_trl.cli import app as trl_app

        trl_app(args=[str(a) for a in args[1:]], prog_name="realign-trl")
    from realign_data.cli import app
    from realign_data.testing.tiny_models import register_tiny_open_clip

    register_tiny_open_clip()
    app(args=[str(a) for a in args], prog_name="realign-data")


class Commands:
    """Run ``realign-data`` commands in forked real processes (see the module docstring)."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)
        self.tmp = Path(tempfile.mkdtemp(prefix="realign-fault-"))
        self.n = 0

    def run_together(self, commands: list[list], timeout: float = 120) -> list[tuple[int, str]]:
        go = self.ctx.Event()
        errs, procs = [], []
        for args in commands:
            self.n += 1
            errs.append(self.tmp / f"stderr-{self.n}")
            procs.append(self.ctx.Process(target=_child, args=(args, str(errs[-1]), go)))
            procs[-1].start()
        go.set()
        for p in procs:
            p.join(timeout)
            if p.exitcode is None:
                p.kill()
                p.join()
        return [(p.exitcode, e.read_text() if e.exists() else "") for p, e in zip(procs, errs)]

    def run(self, args: list, timeout: float = 120) -> tuple[int, str]:
        return self.run_together([args], timeout)[0]


@functools.lru_cache(maxsize=1)
def shared_commands() -> Commands:
    """One :class:`Commands` per test session: the fork server (and its imports) is paid for once."""
    return Commands()
