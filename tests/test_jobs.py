"""The job runner's waits: the barrier on unit markers, rank 0's finalisation, and their timeouts (which count
standstill, not total time)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from realign_data.runtime.jobs import Job, WaitTimeout, wait_until


def job(tmp_path, rank: int, world: int = 2) -> Job:
    j = Job(tmp_path, tmp_path / "units", "unit", config_file=tmp_path / "config.json", rank=rank, world=world)
    j.open({"what": "test"})
    return j


def later(seconds: float, fn) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(seconds), fn()))
    t.start()
    return t


def test_the_barrier_waits_for_every_marker_and_names_the_missing_ones(tmp_path):
    r0, r1 = job(tmp_path, 0), job(tmp_path, 1)
    r0.complete(0, {}), r0.complete(2, {})
    with pytest.raises(
        WaitTimeout,
        match=r"2 unit\(s\) of rank\(s\) 1 \(units 1, 3\) under .*units: is every one of "
        r"the 2 processes running",
    ):
        r0.barrier(4, timeout=0.3, poll=0.05)
    t = later(0.2, lambda: (r1.complete(1, {}), r1.complete(3, {})))
    r0.barrier(4, timeout=30, poll=0.05)
    t.join()
    assert r0.missing(4) == []


def test_a_wait_that_keeps_moving_never_times_out(tmp_path):
    count = {"n": 0}

    def progress():
        count["n"] += 1  # progress at every poll
        return count["n"]

    start = time.monotonic()
    wait_until(
        lambda: time.monotonic() - start > 0.5, timeout=0.1, message=lambda: "stuck", progress=progress, poll=0.02
    )
    with pytest.raises(WaitTimeout, match="stuck"):
        wait_until(lambda: False, timeout=0.1, message=lambda: "stuck", poll=0.02)


def test_rank_0_finalises_once_and_the_others_get_its_result(tmp_path):
    r0, r1 = job(tmp_path, 0), job(tmp_path, 1)
    result = tmp_path / "result.txt"
    calls = []

    def finalise():
        calls.append(1)
        result.write_text("done")
        return "done"

    def read():
        return result.read_text() if result.exists() else None

    t = later(0.2, lambda: r0.finish(finalise, read, timeout=5))
    assert r1.finish(lambda: pytest.fail("rank 1 must not finalise"), read, timeout=30, poll=0.05) == "done"
    t.join()
    assert calls == [1]
    with pytest.raises(WaitTimeout, match="waited 0.2 s for rank 0 to write the final files"):
        job(tmp_path / "other", 1).finish(lambda: None, lambda: None, timeout=0.2, poll=0.05)


def test_the_unit_count_is_recorded_for_merges(tmp_path):
    j = job(tmp_path, 0, world=1)
    assert j.num_units() is None
    j.record_num_units(7)
    assert j.num_units() == 7


def test_a_unit_is_done_only_while_its_marker_vouches_for_every_file(tmp_path):
    j = job(tmp_path, 0, world=1)
    unit = j.units_dir / "unit-000000.parquet"
    unit.write_bytes(b"rows")
    j.complete(0, {"rows": 1}, [unit])
    assert j.done(0)
    unit.write_bytes(b"ROWS")  # same size, other bytes
    assert "sha256 differs" in j.check(0)
    unit.write_bytes(b"rows")
    marker = j.path(0, ".json")
    meta = json.loads(marker.read_text())
    del meta["files"][unit.name]["sha256"]  # a marker that lost the checksum vouches for nothing
    marker.write_text(json.dumps(meta))
    assert j.check(0) == "unit-000000.parquet has no sha256 in its marker"
    meta["files"][unit.name] = {}
    marker.write_text(json.dumps(meta))
    assert j.check(0) == "unit-000000.parquet has no bytes or sha256 in its marker"
