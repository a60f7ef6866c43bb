"""The embedded SQLite queue: leases, heartbeats, retries and abandoned jobs."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from dlgate.service.events import JobSpec
from dlgate.service.queue import JobState, SqliteQueue

SPEC = JobSpec(
    kind="pr",
    repo="o/r",
    installation_id=1,
    clone_url="u",
    default_branch="main",
    head_sha="a" * 40,
    base_sha="b" * 40,
    pr=1,
)


def test_jobs_are_claimed_oldest_first_once(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db")
    first = q.submit("d1", SPEC).job
    second = q.submit("d2", SPEC).job
    a, b = q.claim("w1", 30), q.claim("w2", 30)
    assert a is not None and b is not None
    assert (a.job.id, b.job.id) == (first.id, second.id)
    assert q.claim("w3", 30) is None
    assert (a.attempt, a.final) == (1, False)


def test_a_job_whose_worker_stops_heartbeating_is_retried_then_failed(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db", max_attempts=2)
    job = q.submit("d1", SPEC).job
    lease = q.claim("w1", 0.2)
    assert lease is not None
    assert q.heartbeat(job.id, "w1", 0.2)
    time.sleep(0.3)
    assert q.reap() == []  # requeued: one attempt is left
    again = q.claim("w2", 0.2)
    assert again is not None and (again.attempt, again.final) == (2, True)
    assert not q.heartbeat(job.id, "w1", 30)  # the first worker has lost it
    assert not q.finish(job.id, "w1", JobState.SUCCEEDED)  # and cannot record a result
    time.sleep(0.3)
    lost = q.reap()
    assert [lease.job.id for lease in lost] == [job.id]
    record = q.get(job.id)
    assert record is not None and record.state is JobState.FAILED
    assert "worker stopped during attempt 2" in record.error


def test_retry_later_waits_before_the_next_claim(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db")
    job = q.submit("d1", SPEC).job
    lease = q.claim("w", 30)
    assert lease is not None
    assert q.retry_later(job.id, "w", "GitHub said 502", 0.3)
    assert q.claim("w", 30) is None
    time.sleep(0.35)
    again = q.claim("w", 30)
    assert again is not None and again.attempt == 2
    record = q.get(job.id)
    assert record is not None and record.error == "GitHub said 502"


def _claim_all(path: str, worker: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q = SqliteQueue(Path(path))
    got = []
    while (lease := q.claim(worker, 30)) is not None:
        got.append(lease.job.id)
    out.put(got)


def test_concurrent_workers_never_share_a_job(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db")
    ids = {q.submit(f"d{n}", SPEC).job.id for n in range(60)}
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=_claim_all, args=(str(tmp_path / "q.db"), f"w{i}", out))
        for i in range(3)
    ]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    flat = [job for got in claimed for job in got]
    assert sorted(flat) == sorted(ids)  # every job once, none twice
