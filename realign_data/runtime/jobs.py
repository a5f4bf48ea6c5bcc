"""One resumable, sharded job runner: the index build and the dataset build are both one of these.

A job cuts its input into numbered **units** (a shard of corpus images, a chunk of seeds). Unit ``i`` belongs
to process ``i % world``; a finished unit leaves a **marker** (JSON: the caller's counts, the unit's number and a
digest of its items' ids, plus the name, size and sha256 of each file the unit wrote), written to a temporary name and renamed last, so a unit either has a marker
and complete files or is done again; a resume checks every file against its marker, so a truncated, deleted or
swapped file (or an empty marker, or a file swapped together with its marker) is found, logged and its unit done again. A re-run skips finished units: a job killed at any point (even ``kill -9``)
resumes and ends with what an uninterrupted run writes. The job directory records the job's **fingerprint**
(what the units depend on); running other settings into it is refused with the list of differences. When every
unit has its marker, the caller **finalises** once: rank 0 writes the final files (the knowledge base's index,
the dataset) while the other processes wait for them.

    job = Job(out, out / "embeddings", "shard", config_file=out / "build_config.json")
    job.open(fingerprint)                                       # or JobMismatch / JobDirNotEmpty
    run = job.run(chunked(items, 1000), do_unit, advance=bar.update)   # do_unit(i, items) -> (meta, files)
    job.barrier(run.num_units, timeout=3600)                    # every process's units are done
    result = job.finish(lambda: finalise(run.num_units), read_result, timeout=3600)  # rank 0 writes, all return

Processes launched together (``torchrun``, ``accelerate launch``, ``mpirun``, ``srun``) share one job directory.
The barrier is a **file barrier**: a process waits until every unit's marker is visible (so it works across
nodes on a shared filesystem, and a relaunch after a crash never passes it early: markers are results, not
arrival tokens), then, when a ``torch.distributed`` process group is initialised, a real
``torch.distributed.barrier()``. The long waits are on files, so no collective times out while the slowest
process finishes its last unit; a wait gives up, naming the missing units and their ranks, only after
``timeout`` seconds without progress (no new marker, no sign of life from the finalising rank).

Rank and world come from the process group when one is initialised (``torch.distributed``, e.g. by
accelerate's ``PartialState``), else from what the launcher exported (torchrun, ``accelerate launch``, MPI),
read by accelerate's :func:`~accelerate.utils.get_cpu_distributed_information`; a plain process is rank 0 of 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from realign_data.runtime.atomic import atomic_write_json, file_record, record_mismatch
from realign_data.runtime.redact import redact_tree

logger = logging.getLogger(__name__)

# launcher variables holding the world size (the ones accelerate reads); without any, nothing is imported
_WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


@dataclass(frozen=True)
class Dist:
    """This process's place in a multi-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # processes of this run on this node
    process_group: bool = False  # a torch.distributed process group is initialised (barriers use it)


def _process_group():
    """``torch.distributed`` when a process group is initialised (never imports torch itself)."""
    dist = sys.modules.get("torch.distributed")
    return dist if dist is not None and dist.is_available() and dist.is_initialized() else None


def distributed() -> Dist:
    """Rank, world size and local rank of this process (see the module docstring)."""
    dist = _process_group()
    if dist is not None:
        rank, world = dist.get_rank(), dist.get_world_size()
        return Dist(
            rank, world, int(os.environ.get("LOCAL_RANK", rank)), int(os.environ.get("LOCAL_WORLD_SIZE", world)), True
        )
    if not any(os.environ.get(v) for v in _WORLD_SIZE_VARS):
        return Dist()
    from accelerate.utils import get_cpu_distributed_information

    info = get_cpu_distributed_information()
    return Dist(info.rank, info.world_size, info.local_rank, info.local_world_size)


def process_group_backend() -> Optional[str]:
    """The backend (``gloo``, ``nccl``...) of the initialised ``torch.distributed`` process group, else None."""
    dist = _process_group()
    return dist.get_backend() if dist is not None else None


def process_group_barrier() -> None:
    """``torch.distributed.barrier()`` when a process group is initialised; nothing otherwise."""
    dist = _process_group()
    if dist is not None:
        dist.barrier()


class WaitTimeout(TimeoutError):
    """A process waited ``timeout`` seconds without progress from the others (the message says for what)."""


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    message: Callable[[], str],
    progress: Callable[[], object] = lambda: None,
    poll: float = 0.5,
) -> None:
    """Poll ``ready()`` until it is true. The clock restarts whenever ``progress()`` changes, so a long job that
    keeps moving never times out; :class:`WaitTimeout` with ``message()`` after ``timeout`` seconds of standstill."""
    last, since = progress(), time.monotonic()
    while not ready():
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > timeout:
            raise WaitTimeout(message())
        time.sleep(poll)


def library_versions(packages: Iterable[str], *, python: bool = False) -> dict:
    """Installed versions of ``packages`` (missing ones left out), for provenance records."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]} if python else {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


class JobMismatch(ValueError):
    """The job directory holds work made with another fingerprint: ``differences`` (dotted keys) and ``previous``."""

    def __init__(self, differences: list[str], previous: dict) -> None:
        super().__init__(", ".join(differences))
        self.differences, self.previous = differences, previous


class JobDirNotEmpty(ValueError):
    """The job directory holds files that are not this kind of job's."""


@dataclass
class JobRun:
    """What :meth:`Job.run` did: this process's units, how many were done now or resumed, time spent working."""

    units: list[int] = field(default_factory=list)
    num_units: int = 0  # units in the whole job (every process's)
    done_now: int = 0
    resumed: int = 0
    redone: int = 0  # units with a marker done again (a damaged file or marker, or ``redo``'s reason)
    items_now: int = 0
    seconds_working: float = 0.0


class Job:
    """A resumable job in ``units_dir``: markers ``{prefix}-{i:0{width}d}.json`` next to the unit files.

    ``config_file`` records the fingerprint; ``owned`` (a predicate on a path) says which files already in
    ``root`` belong to such a job (anything else there makes :meth:`open` refuse the directory).
    """

    def __init__(
        self,
        root: Path,
        units_dir: Path,
        prefix: str,
        *,
        config_file: Path,
        width: int = 6,
        rank: Optional[int] = None,
        world: Optional[int] = None,
        owned: Callable[[Path], bool] = lambda p: p.name.startswith("."),
    ) -> None:
        here = distributed() if rank is None or world is None else None
        self.root, self.units_dir, self.prefix, self.width = root, units_dir, prefix, width
        self.config_file, self.owned = config_file, owned
        self.rank = here.rank if rank is None else rank
        self.world = here.world if world is None else world

    # --------------------------------------------------------------------------------------- fingerprint
    def open(self, fingerprint: dict, *, upgrade: Optional[Callable[[dict], dict]] = None) -> None:
        """Record ``fingerprint`` in a new job directory, or check it against the one recorded.

        ``upgrade`` completes a recorded fingerprint written by an older version (new options take their
        defaults) before comparing. A directory without any finished unit (a run that failed before its first,
        e.g. on weights that could not be loaded) takes the new fingerprint: there is nothing to protect, and the
        retry the error advised must not be refused. Raises :class:`JobMismatch` or :class:`JobDirNotEmpty`.
        """
        fingerprint = redact_tree(fingerprint)  # as written: no URL credentials
        if not self.config_file.is_file() and self._foreign_files():
            time.sleep(0.5)  # another rank may be renaming the config file into place right now
        if self.config_file.is_file():
            have = _read_json(self.config_file)
            have = upgrade(have) if upgrade and isinstance(have, dict) else have
            if have != fingerprint and self._has_units():
                raise JobMismatch(
                    _differences(have, fingerprint)
                    if isinstance(have, dict)
                    else ["config.settings (the record is unreadable)"],
                    have if isinstance(have, dict) else {},
                )
            if have != fingerprint:  # a run that failed before its first unit: nothing to protect, start afresh
                atomic_write_json(self.config_file, fingerprint)
        elif self._foreign_files():
            raise JobDirNotEmpty(str(self.root))
        else:
            self.config_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.config_file, fingerprint)
        self.units_dir.mkdir(parents=True, exist_ok=True)

    def _has_units(self) -> bool:
        return self.units_dir.is_dir() and any(p.suffix == ".json" for p in self.units_dir.iterdir())

    def _foreign_files(self) -> bool:
        return self.root.exists() and any(not self.owned(p) for p in self.root.iterdir())

    # -------------------------------------------------------------------------------------------- units
    def path(self, i: int, suffix: str) -> Path:
        """Where unit ``i`` keeps a file (``suffix`` like ``.parquet``); its marker is ``path(i, ".json")``."""
        return self.units_dir / f"{self.prefix}-{i:0{self.width}d}{suffix}"

    def mine(self, i: int) -> bool:
        return i % self.world == self.rank

    def check(self, i: int, digest: Optional[str] = None) -> Optional[str]:
        """Why unit ``i`` is not done (no marker, an unreadable marker, a marker of another unit or of other items
        than ``digest`` says, a file it names missing, another unit's, or of another size or sha256 than recorded),
        or None when its marker and every file it names are intact. A unit whose files were consumed by the
        finalisation counts as not done: a re-run before the final files exist redoes it."""
        marker = self.path(i, ".json")
        if not marker.is_file():
            return "no marker"
        meta = _read_json(marker)
        if not isinstance(meta, dict) or not isinstance(meta.get("files", {}), dict):
            return f"its marker {marker.name} is empty or unreadable"
        if meta.get("unit", i) != i:  # a marker copied from another unit (older markers have no "unit")
            return f"its marker {marker.name} belongs to {self.prefix} {meta['unit']}"
        if digest is not None and meta.get("items_digest", digest) != digest:
            return f"its marker {marker.name} was written for other items (their ids digest differs)"
        own = self.path(i, ".").name
        for name, want in meta.get("files", {}).items():
            if not name.startswith(own):
                return f"its marker {marker.name} names {name}, a file of another {self.prefix}"
            f = self.units_dir / name
            if not f.is_file():
                return f"{name} is missing"
            if not isinstance(want, dict):
                continue  # a marker of an older version: presence only
            if problem := record_mismatch(f, want, "its marker", complete=True):
                return problem
        return None

    def done(self, i: int) -> bool:
        """Unit ``i`` has an intact marker and every file it names, unchanged (see :meth:`check`)."""
        return self.check(i) is None

    def marker(self, i: int) -> dict:
        return json.loads(self.path(i, ".json").read_text())

    def complete(self, i: int, meta: dict, files: Iterable[Path] = (), digest: Optional[str] = None) -> None:
        """Mark unit ``i`` finished: ``meta`` plus the unit's number, the digest of its items' ids
        (:func:`items_digest`) and the name, size and sha256 of its ``files`` (already in place)."""
        listed = {p.name: file_record(p) for p in files}
        ident = {"unit": i, **({"items_digest": digest} if digest else {})}
        atomic_write_json(self.path(i, ".json"), redact_tree({**meta, **ident, "files": listed}), indent=None)

    def run(
        self,
        units: Iterable[tuple[int, list]],
        work: Callable[[int, list], tuple[dict, list[Path]]],
        *,
        advance: Callable[[int], object] = lambda n: None,
        redo: Callable[[dict], Optional[str]] = lambda meta: None,
    ) -> JobRun:
        """Do this process's unfinished units in order; ``work(i, items) -> (meta, files)`` writes the files.

        A unit with a marker is checked (:meth:`check`): a missing, truncated or swapped file, or an empty marker,
        is logged and the unit done again. ``redo(meta)`` may give a reason to redo an intact unit too (the build:
        seeds that failed for a transient reason). ``advance(n)`` is told about units skipped (another process's)
        or resumed; ``work`` reports its own progress. Units are consumed once, so a streaming input is read
        exactly once.
        """
        run = JobRun()
        for i, items in units:
            run.num_units = i + 1
            if not self.mine(i):
                advance(len(items))
                continue
            run.units.append(i)
            digest = items_digest(items)
            why = self.check(i, digest)
            if why is None:
                why = redo(self.marker(i))
                if why is None:
                    run.resumed += 1
                    advance(len(items))
                    continue
            if why != "no marker":
                logger.warning("%s %d under %s: %s; doing it again", self.prefix, i, self.units_dir, why)
                self.path(i, ".json").unlink(missing_ok=True)  # the others' barrier waits for the new marker
                run.redone += 1
            t0 = time.time()
            meta, files = work(i, items)
            self.complete(i, meta, files, digest)
            run.seconds_working += time.time() - t0
            run.done_now += 1
            run.items_now += len(items)
        return run

    # ------------------------------------------------------------------------------ several processes
    def missing(self, num_units: int) -> list[int]:
        """Units of ``0..num_units-1`` without a marker (one directory listing, not one stat per unit)."""
        have = set(os.listdir(self.units_dir)) if self.units_dir.is_dir() else set()
        return [i for i in range(num_units) if self.path(i, ".json").name not in have]

    def barrier(self, num_units: int, *, timeout: float, poll: float = 0.5) -> None:
        """Wait until every unit of the job has its marker (the other processes' units too), then pass the process
        group's barrier when there is one. :class:`WaitTimeout` after ``timeout`` seconds without a new marker."""
        left = self.missing(num_units)

        def ready() -> bool:
            nonlocal left
            left = self.missing(num_units) if left else left
            return not left

        def message() -> str:
            ranks = sorted({i % self.world for i in left})
            shown = ", ".join(map(str, left[:10])) + (" ..." if len(left) > 10 else "")
            return (
                f"waited {timeout:g} s without progress for {len(left)} {self.prefix}(s) of rank(s) "
                f"{', '.join(map(str, ranks))} ({self.prefix}s {shown}) under {self.units_dir}: is every one of "
                f"the {self.world} processes running, with an output directory they all see (a filesystem shared "
                "by every node)? Run the same command again to resume"
            )

        wait_until(ready, timeout=timeout, message=message, progress=lambda: len(left), poll=poll)
        process_group_barrier()

    def finish(
        self,
        finalise: Callable[[], object],
        result: Callable[[], object],
        *,
        timeout: float,
        heartbeat: Optional[Path] = None,
        poll: float = 0.5,
    ):
        """Rank 0 runs ``finalise()`` once (after :meth:`barrier`); the other processes wait until ``result()``
        returns something other than None (the files rank 0 writes last) and return it. ``heartbeat`` is a file
        rank 0 touches while it works: the others' timeout counts seconds without it changing."""
        if self.rank == 0:
            value = finalise()
        else:

            def beat():
                try:
                    return heartbeat.stat().st_mtime_ns if heartbeat is not None else None
                except FileNotFoundError:
                    return None

            wait_until(
                lambda: result() is not None,
                timeout=timeout,
                progress=beat,
                poll=poll,
                message=lambda: (
                    f"waited {timeout:g} s for rank 0 to write the final files into {self.root} "
                    "without any sign of progress; is rank 0 still running? Run the same command "
                    "again to resume"
                ),
            )
            value = result()
        process_group_barrier()
        return value

    def record_num_units(self, num_units: int) -> None:
        """Record how many units the whole job has (known once a process has read its whole input)."""
        atomic_write_json(self.units_dir / "units.json", {"num_units": num_units})

    def num_units(self) -> Optional[int]:
        """The job's unit count, when a process has recorded it (:meth:`record_num_units`)."""
        f = self.units_dir / "units.json"
        return json.loads(f.read_text())["num_units"] if f.is_file() else None


def items_digest(items: list) -> Optional[str]:
    """sha256 (16 hex digits) of the ``id`` of each item, in order, or None when an item has no ``id``: a marker
    records it, so a marker found beside other items (another chunk's seeds) does not pass."""
    import hashlib

    ids = [getattr(x, "id", None) for x in items]
    if any(v is None for v in ids):
        return None
    return hashlib.sha256("\n".join(map(str, ids)).encode("utf-8")).hexdigest()[:16]


def _read_json(path: Path):
    """A JSON file's value, or None when it is empty or torn (rewritten by whoever finds it so)."""
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _differences(have: dict, want: dict) -> list[str]:
    """Keys whose values differ; nested dicts are compared one level down (``section.key``)."""
    out = []
    for k in sorted(set(have) | set(want)):
        a, b = have.get(k), want.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{kk}" for kk in sorted(set(a) | set(b)) if a.get(kk) != b.get(kk)]
        elif a != b:
            out.append(k)
    return out


def chunked(items: Iterable, size: int) -> Iterable[tuple[int, list]]:
    """``(i, items[i*size:(i+1)*size])`` over any iterable, read once (a streaming source stays streaming)."""
    chunk, i = [], 0
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield i, chunk
            chunk, i = [], i + 1
    if chunk:
        yield i, chunk
