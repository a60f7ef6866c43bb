"""The durable job queue, and its embedded default: one SQLite file (WAL), no server.

A job is one delivery's `JobSpec` plus its state. `submit` de-duplicates by delivery id: a
delivery already queued, running or done is acknowledged and not run again; one that failed is
queued again. Workers `claim` a job with a lease and `heartbeat` while they run it; a job whose
worker died (even by `kill -9`) is claimed again once its lease runs out, until its attempts are
spent, when `reap` hands it back as finally failed so that its check runs get completed.

`open_queue(url)` picks the backend: `sqlite:///path` here, `redis://…` in `redisq` (RQ).
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dlgate.service.events import JobSpec

# Upper bounds (seconds) of the job-duration histogram on /metrics.
DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the gate ran and its verdict was published (pass or refusal)
    FAILED = "failed"  # no verdict: the check runs were completed as failures with the reason


@dataclass(frozen=True)
class Job:
    id: str
    delivery: str
    spec: JobSpec
    state: JobState
    attempts: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    conclusion: str = ""  # the report's conclusion when SUCCEEDED
    error: str = ""  # why the last attempt failed
    report_json: str = ""


@dataclass(frozen=True)
class Submitted:
    job: Job
    duplicate: bool  # True: seen before and not failed, so acknowledged and not run again


@dataclass(frozen=True)
class Stats:
    depth: int  # jobs waiting
    by_state: dict[str, int]
    # cumulative histogram of finished jobs' durations: (upper bound, count) + sum and count
    buckets: tuple[tuple[float, int], ...]
    duration_sum: float
    duration_count: int


class Queue(Protocol):
    """What the webhook app needs of any backend."""

    def submit(self, delivery: str, spec: JobSpec) -> Submitted: ...
    def get(self, job_id: str) -> Job | None: ...
    def latest_for(self, repo: str, head_sha: str) -> Job | None: ...
    def stats(self) -> Stats: ...
    def ping(self) -> None: ...


class QueueUnavailable(RuntimeError):
    """The queue cannot be reached; the webhook answers 503 and GitHub shows the delivery as
    failed, to be redelivered."""


def open_queue(url: str, max_attempts: int = 3, job_timeout_s: float = 3600.0) -> Queue:
    if url.startswith("sqlite:///"):
        return SqliteQueue(Path(url.removeprefix("sqlite:///")), max_attempts)
    from dlgate.service.redisq import RedisQueue

    return RedisQueue(url, max_attempts, job_timeout_s=job_timeout_s)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    delivery TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    repo TEXT NOT NULL,
    head_sha TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    conclusion TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    report TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (state, not_before, created_at);
CREATE INDEX IF NOT EXISTS jobs_commit ON jobs (repo, head_sha, created_at);
"""
_COLUMNS = (
    "id, delivery, spec, state, attempts, created_at, started_at, finished_at, "
    "conclusion, error, report"
)


@dataclass(frozen=True)
class Lease:
    job: Job
    attempt: int  # 1-based
    final: bool  # no attempt follows this one


class SqliteQueue:
    """The embedded queue. Safe across threads and processes (one connection per thread;
    SQLite's locking serializes writers)."""

    def __init__(self, path: Path, max_attempts: int = 3) -> None:
        self.path = path
        self.max_attempts = max_attempts
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(_SCHEMA)  # runs in its own transaction

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives the crash or kill -9 of any process (the
            # OS holds it), not a power cut; FULL's fsync per delivery costs 20x at the p99
            # (bench/bench_webhook.py). Power-safe acknowledgement: Redis, appendfsync always.
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def ping(self) -> None:
        try:
            self._db().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"{self.path}: {exc}") from exc

    # -- the webhook side ------------------------------------------------------------------

    def submit(self, delivery: str, spec: JobSpec) -> Submitted:
        now = time.time()
        try:
            with self._tx() as db:
                row = db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE delivery = ?", (delivery,)
                ).fetchone()
                if row is not None:
                    job = _job(row)
                    if job.state is not JobState.FAILED:
                        return Submitted(job, duplicate=True)
                    # A redelivery of a failed delivery runs it again, under the same job id
                    # (and so the same report page).
                    db.execute(
                        "UPDATE jobs SET state = 'queued', attempts = 0, worker = '', "
                        "not_before = 0, error = '', finished_at = NULL, started_at = NULL, "
                        "spec = ? WHERE id = ?",
                        (spec.to_json(), job.id),
                    )
                    return Submitted(
                        _job(
                            db.execute(
                                f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job.id,)
                            ).fetchone()
                        ),
                        False,
                    )
                job_id = uuid.uuid4().hex[:16]
                db.execute(
                    "INSERT INTO jobs (id, delivery, spec, repo, head_sha, state, created_at) "
                    "VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                    (job_id, delivery, spec.to_json(), spec.repo, spec.head_sha, now),
                )
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"{self.path}: {exc}") from exc
        return Submitted(Job(job_id, delivery, spec, JobState.QUEUED, 0, now), duplicate=False)

    def get(self, job_id: str) -> Job | None:
        row = self._db().execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def latest_for(self, repo: str, head_sha: str) -> Job | None:
        row = (
            self._db()
            .execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE repo = ? AND head_sha = ? "
                "ORDER BY created_at DESC LIMIT 1",
                (repo, head_sha),
            )
            .fetchone()
        )
        return _job(row) if row else None

    def stats(self) -> Stats:
        db = self._db()
        by_state = {s.value: 0 for s in JobState}
        for state, count in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            by_state[state] = count
        durations = [
            d
            for (d,) in db.execute(
                "SELECT finished_at - started_at FROM jobs WHERE finished_at IS NOT NULL "
                "AND started_at IS NOT NULL"
            )
        ]
        return _stats(by_state, durations)

    # -- the worker side -------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float) -> Lease | None:
        """The oldest waiting job, leased to `worker` for `lease_s` seconds."""
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = 'queued' AND not_before <= ? "
                "ORDER BY created_at LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            job = _job(row)
            attempt = job.attempts + 1
            db.execute(
                "UPDATE jobs SET state = 'running', attempts = ?, worker = ?, lease_until = ?, "
                "started_at = ? WHERE id = ?",
                (attempt, worker, now + lease_s, now, job.id),
            )
        running = Job(
            job.id,
            job.delivery,
            job.spec,
            JobState.RUNNING,
            attempt,
            job.created_at,
            now,
            None,
            "",
            job.error,
        )
        return Lease(running, attempt, final=attempt >= self.max_attempts)

    def heartbeat(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Extend the lease; False when the job is no longer this worker's."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? AND state = 'running'",
                (time.time() + lease_s, job_id, worker),
            )
            return cur.rowcount == 1

    def reap(self) -> list[Lease]:
        """Jobs whose worker stopped heartbeating: queued again while attempts remain; the
        others are returned (marked failed) for their check runs to be completed."""
        now = time.time()
        lost: list[Lease] = []
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = 'running' AND lease_until < ?", (now,)
            ).fetchall()
            for row in rows:
                job = _job(row)
                error = f"the worker stopped during attempt {job.attempts} (killed or lost)"
                if job.attempts < self.max_attempts:
                    db.execute(
                        "UPDATE jobs SET state = 'queued', worker = '', error = ? WHERE id = ?",
                        (error, job.id),
                    )
                else:
                    db.execute(
                        "UPDATE jobs SET state = 'failed', worker = '', error = ?, "
                        "finished_at = ? WHERE id = ?",
                        (error, now, job.id),
                    )
                    lost.append(Lease(job, job.attempts, final=True))
        return lost

    def finish(
        self,
        job_id: str,
        worker: str,
        state: JobState,
        *,
        conclusion: str = "",
        error: str = "",
        report_json: str = "",
    ) -> bool:
        """Record the end of an attempt; False when the lease had been lost meanwhile."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = ?, conclusion = ?, error = ?, report = ?, "
                "finished_at = ?, worker = '' WHERE id = ? AND worker = ? AND state = 'running'",
                (state.value, conclusion, error, report_json, time.time(), job_id, worker),
            )
            return cur.rowcount == 1

    def retry_later(self, job_id: str, worker: str, error: str, delay_s: float) -> bool:
        """Give a failed attempt back to the queue, to be claimed after `delay_s`."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = 'queued', worker = '', error = ?, not_before = ? "
                "WHERE id = ? AND worker = ? AND state = 'running'",
                (error, time.time() + delay_s, job_id, worker),
            )
            return cur.rowcount == 1


def _job(row: Sequence[Any]) -> Job:
    (
        job_id,
        delivery,
        spec,
        state,
        attempts,
        created,
        started,
        finished,
        conclusion,
        error,
        report,
    ) = row
    return Job(
        id=str(job_id),
        delivery=str(delivery),
        spec=JobSpec.from_json(str(spec)),
        state=JobState(str(state)),
        attempts=int(attempts),
        created_at=float(created),
        started_at=float(started) if started is not None else None,
        finished_at=float(finished) if finished is not None else None,
        conclusion=str(conclusion),
        error=str(error),
        report_json=str(report),
    )


def _stats(by_state: dict[str, int], durations: Sequence[float]) -> Stats:
    buckets = tuple((b, sum(1 for d in durations if d <= b)) for b in DURATION_BUCKETS)
    return Stats(
        depth=by_state.get(JobState.QUEUED.value, 0),
        by_state=by_state,
        buckets=buckets,
        duration_sum=float(sum(durations)),
        duration_count=len(durations),
    )
