"""One writer per output: an exclusive lock beside every directory a command writes (build, index, sample, merge,
pope).

Two copies of one command into one ``--out`` (a double-clicked job, a retried scheduler task) used to interleave
their files: the survivor reported rows the dataset did not hold. Now the second is refused with one sentence
naming the holder. The lock is ``.{out name}.lock`` in ``out``'s parent (so it never adds a file to the output
itself, and exists before the output does), held with ``fcntl.flock``: the kernel releases it when its process
ends, even on ``kill -9``, so a crashed run never blocks its own resume. The file records the holder's pid, host,
command and start time for the message; a file left by a process that ended without releasing it (killed) is
reported as stale and taken over. Processes of one launch (``torchrun``: one lock per rank, ``--shard-index``: one
per shard) pass ``part`` and lock only their share.

    with output_lock(out, "build"):
        ...  # or LockHeld("... is being written by pid 123 on host-a (build, started 2026-01-01 12:00:00 UTC) ...")
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

logger = logging.getLogger(__name__)


class LockHeld(RuntimeError):
    """Another process is writing the same output (the message names it)."""


class OutputError(ValueError):
    """The output cannot be written at all: it is a file, or its folder cannot be created (a user mistake)."""


def lock_path(out: str | os.PathLike, part: Optional[str] = None) -> Path:
    """Where the lock of ``out`` (and of its ``part``, e.g. ``rank-1``) lives: a hidden file beside ``out``."""
    out = Path(out).expanduser().absolute()
    return out.parent / f".{out.name}{'.' + part if part else ''}.lock"


def _describe(info: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("started", 0)))
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} ({info.get('command', '?')}, started {started})"


def _read(path: Path) -> dict:
    for _ in range(5):  # the holder writes its details right after locking: give it a moment
        try:
            info = json.loads(path.read_text() or "null")
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict):
            return info
        time.sleep(0.05)
    return {}


def _acquire(path: Path, out: Path, what: str) -> int:
    """Lock ``path`` (created if missing) and write our details into it; the open, locked descriptor."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read(path)
            raise LockHeld(
                f"{out} is being written by "
                f"{_describe(holder) if holder else 'another process'}; wait for it to finish (or stop it), "
                "then run the command again"
            ) from None
        except OSError as e:  # a filesystem without locks (Lustre without -o flock, some NFS setups): go on, say so
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            logger.warning(
                "The filesystem of %s does not support locks (%s): nothing stops a second command from "
                "writing the same output at the same time",
                out,
                e.strerror,
            )
            break
        try:  # the holder may have removed the file between our open and our lock: lock the file that is there
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    previous = _read_fd(fd)
    if previous:
        logger.warning(
            "Taking over a stale lock %s: %s ended without releasing it (killed?)", path, _describe(previous)
        )
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": what, "started": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return fd


def _read_fd(fd: int) -> dict:
    try:
        data = os.pread(fd, 1 << 16, 0)
        info = json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


@contextmanager
def output_lock(out: str | os.PathLike, what: str, *, part: Optional[str] = None) -> Iterator[Path]:
    """Hold the exclusive lock of ``out`` (``what``: the command, for the holder's description) while the block
    runs; :class:`LockHeld` when another live process holds it, :class:`OutputError` when it cannot be written.
    Yields the lock file's path."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {str(out)!r} is a file, not a directory; give --out a new or existing directory")
    path = lock_path(out, part)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path, out, what)
    except OSError as e:
        raise OutputError(
            f"cannot write to output directory {str(out)!r}: {e.strerror or e}; choose a writable --out"
        ) from None
    try:
        yield path
    finally:
        try:
            path.unlink()  # before unlocking: a waiting process then locks a new file (see the inode check)
        except FileNotFoundError:
            pass
        os.close(fd)


def locked_output(what: str, out_arg: str = "out"):
    """Decorator: the function writes its ``out_arg`` argument under :func:`output_lock` (one lock per rank when
    launched with several processes; a ``rank`` argument, when given, says which)."""
    import functools
    import inspect

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            from realign_data.runtime.jobs import distributed

            bound = sig.bind_partial(*args, **kwargs).arguments
            rank = bound.get("rank")
            rank = distributed().rank if rank is None else rank
            with output_lock(bound[out_arg], what, part=f"rank-{rank}" if rank else None):
                return fn(*args, **kwargs)

        return locked

    return wrap
