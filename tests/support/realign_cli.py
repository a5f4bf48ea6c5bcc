"""Run ``realign-data`` in a subprocess the way tests need it: the tiny open_clip model registered with open_clip,
optionally a pause after every finished job unit (so that a test can ``kill -9`` the process between units), and
optionally a ``torch.distributed`` process group (the way ``accelerate`` scripts run under ``torchrun``).

    python tests/support/realign_cli.py [--pause-after-unit SECONDS] [--process-group gloo] ARGS...   (also under torchrun)

With ``REALIGN_TEST_PID_DIR`` set, the process writes its pid to ``$REALIGN_TEST_PID_DIR/rank-$RANK.pid``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

SCRIPT = str(Path(__file__).resolve())


def command(*args, pause: float | None = None, process_group: str | None = None) -> list[str]:
    """The argv of ``realign-data ARGS`` run by this script (``pause``: seconds after each finished unit)."""
    return [
        sys.executable,
        SCRIPT,
        *(["--pause-after-unit", str(pause)] if pause else []),
        *(["--process-group", process_group] if process_group else []),
        *map(str, args),
    ]


def main(argv: list[str]) -> None:
    if os.environ.get("REALIGN_TEST_PID_DIR"):
        Path(os.environ["REALIGN_TEST_PID_DIR"], f"rank-{os.environ.get('RANK', 0)}.pid").write_text(str(os.getpid()))
    if argv[:1] == ["--pause-after-unit"]:
        pause, argv = float(argv[1]), argv[2:]
        import realign_data.runtime.jobs as jobs

        complete = jobs.Job.complete

        def complete_then_pause(self, *args, **kwargs):
            complete(self, *args, **kwargs)
            time.sleep(pause)

        jobs.Job.complete = complete_then_pause
    if argv[:1] == ["--process-group"]:
        import atexit

        import torch.distributed as dist

        backend, argv = argv[1], argv[2:]
        dist.init_process_group(backend)
        atexit.register(dist.destroy_process_group)
    from realign_data.cli import app
    from realign_data.testing.tiny_models import register_tiny_open_clip

    register_tiny_open_clip()
    app(args=argv, prog_name="realign-data")


if __name__ == "__main__":
    main(sys.argv[1:])
