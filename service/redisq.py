"""The queue beyond one machine: Redis, dispatched by RQ (`DLGATE_QUEUE_URL=redis://…`).

The job records (state, report, the delivery → job index) live in Redis hashes next to RQ's own
keys, written in one MULTI/EXEC with the RQ enqueue, so an acknowledged delivery is always both
recorded and queued. RQ runs each job in a forked work horse with heartbeats; a horse whose
worker died is found abandoned by any worker's maintenance and retried (`Retry`), and when no
retry is left, `on_failure` completes the job's check runs as failures.

Redis must persist (`appendonly yes`; `appendfsync always` for zero loss), or a restart loses
what it held. The clients retry through a restart: commands are re-sent on connection errors
for up to ~30 s (workers) or ~2 s (the webhook, which answers 503 after that).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as RedisRetry

from dlgate.service.events import JobSpec
from dlgate.service.jobs import Executor
from dlgate.service.queue import Job, JobState, QueueUnavailable, Stats, Submitted, _stats

log = logging.getLogger(__name__)

QUEUE_NAME = "dlgate"
PREFIX = "dlgate:"
KEEP_S = 30 * 24 * 3600  # how long RQ keeps finished and failed job records
DURATIONS_KEPT = 10_000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RetryableFailure(Exception):
    """Raised from the RQ job for a transient failure, so that RQ's `Retry` runs it again."""


def connect(url: str, *, patience_s: float) -> redis.Redis:
    """A client that re-sends commands through a Redis restart for about `patience_s`."""
    retries = max(1, int(patience_s / 0.5))
    return redis.Redis.from_url(
        url,
        retry=RedisRetry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionRefusedError],
        socket_connect_timeout=2,
        health_check_interval=10,
    )


class RedisQueue:
    def __init__(
        self,
        url: str,
        max_attempts: int = 3,
        *,
        patience_s: float = 2.0,
        job_timeout_s: float = 3600.0,
    ) -> None:
        import rq

        self.url = url
        self.max_attempts = max_attempts
        self.job_timeout_s = job_timeout_s
        self.redis = connect(url, patience_s=patience_s)
        self.rq = rq.Queue(QUEUE_NAME, connection=self.redis)

    def ping(self) -> None:
        try:
            self.redis.ping()
        except RedisError as exc:
            raise QueueUnavailable(f"{self.url}: {exc}") from exc

    # -- the webhook side

    def submit(self, delivery: str, spec: JobSpec) -> Submitted:
        try:
            return self._submit(delivery, spec)
        except RedisError as exc:
            raise QueueUnavailable(f"{self.url}: {exc}") from exc

    def _submit(self, delivery: str, spec: JobSpec) -> Submitted:
        dkey = f"{PREFIX}delivery:{delivery}"
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(dkey)  # type: ignore[no-untyped-call]
                    existing = pipe.get(dkey)
                    job = self.get(_text(existing)) if existing else None
                    if job is not None and job.state is not JobState.FAILED:
                        pipe.unwatch()
                        return Submitted(job, duplicate=True)
                    # New, or a failed delivery sent again: (re)queue it under its job id.
                    job_id = job.id if job else uuid.uuid4().hex[:16]
                    now = time.time()
                    runs = int(self.redis.hget(self._key(job_id), "runs") or 0) + 1
                    pipe.multi()
                    pipe.set(dkey, job_id)
                    pipe.delete(self._key(job_id))
                    pipe.hset(
                        self._key(job_id),
                        mapping={
                            "delivery": delivery,
                            "spec": spec.to_json(),
                            "state": "queued",
                            "attempts": 0,
                            "created_at": job.created_at if job else now,
                            "runs": runs,
                        },
                    )
                    pipe.hset(f"{PREFIX}states", job_id, "queued")
                    pipe.set(f"{PREFIX}commit:{spec.repo}:{spec.head_sha}", job_id)
                    self._enqueue(job_id, runs, pipe)
                    pipe.execute()
                    fresh = Job(
                        job_id, delivery, spec, JobState.QUEUED, 0, job.created_at if job else now
                    )
                    return Submitted(fresh, duplicate=False)
                except WatchError:
                    continue  # the same delivery arrived twice at once; look again

    def _enqueue(self, job_id: str, runs: int, pipe: Any) -> None:
        import rq

        self.rq.enqueue(
            run_rq_job,
            job_id,
            job_id=f"{job_id}-{runs}",
            retry=rq.Retry(max=self.max_attempts - 1) if self.max_attempts > 1 else None,
            on_failure=rq.Callback(on_rq_failure),
            job_timeout=int(self.job_timeout_s) + 300,  # the sandbox enforces the real limit
            result_ttl=KEEP_S,
            failure_ttl=KEEP_S,
            pipeline=pipe,
        )

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.hgetall(self._key(job_id))
        if not raw:
            return None
        d = {_text(k): _text(v) for k, v in raw.items()}

        def num(key: str) -> float | None:
            return float(d[key]) if d.get(key) else None

        return Job(
            id=job_id,
            delivery=d["delivery"],
            spec=JobSpec.from_json(d["spec"]),
            state=JobState(d["state"]),
            attempts=int(d.get("attempts", 0)),
            created_at=float(d["created_at"]),
            started_at=num("started_at"),
            finished_at=num("finished_at"),
            conclusion=d.get("conclusion", ""),
            error=d.get("error", ""),
            report_json=d.get("report", ""),
        )

    def latest_for(self, repo: str, head_sha: str) -> Job | None:
        job_id = self.redis.get(f"{PREFIX}commit:{repo}:{head_sha}")
        return self.get(_text(job_id)) if job_id else None

    def stats(self) -> Stats:
        try:
            by_state = {s.value: 0 for s in JobState}
            for state in self.redis.hvals(f"{PREFIX}states"):
                by_state[_text(state)] = by_state.get(_text(state), 0) + 1
            durations = [float(d) for d in self.redis.lrange(f"{PREFIX}durations", 0, -1)]
        except RedisError as exc:
            raise QueueUnavailable(f"{self.url}: {exc}") from exc
        stats = _stats(by_state, durations)
        return Stats(
            self.rq.count, stats.by_state, stats.buckets, stats.duration_sum, stats.duration_count
        )

    # -- the worker side

    def _key(self, job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    def set_state(self, job_id: str, state: JobState, **fields: str | int | float) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self._key(job_id), "state", state.value)
        for key, value in fields.items():
            pipe.hset(self._key(job_id), key, value)
        pipe.hset(f"{PREFIX}states", job_id, state.value)
        if "finished_at" in fields and "started_at" in fields:
            pipe.lpush(
                f"{PREFIX}durations", float(fields["finished_at"]) - float(fields["started_at"])
            )
            pipe.ltrim(f"{PREFIX}durations", 0, DURATIONS_KEPT - 1)
        pipe.execute()


@dataclass
class _Context:
    queue: RedisQueue
    executor: Executor


_context: _Context | None = None  # set by `work()` before RQ forks its work horses


def _ctx() -> _Context:
    global _context
    if _context is None:  # a callback run outside `work()` (e.g. by `rq` maintenance)
        from dlgate.service.settings import Settings
        from dlgate.service.worker import executor_for

        settings = Settings.from_env()
        queue = RedisQueue(
            settings.queue,
            settings.max_attempts,
            patience_s=30,
            job_timeout_s=settings.job_timeout_s,
        )
        _context = _Context(queue, executor_for(settings))
    return _context


def run_rq_job(job_id: str) -> str:
    """The RQ job: one attempt at dlgate job `job_id`."""
    import rq

    ctx = _ctx()
    current = rq.get_current_job()
    left = int(current.retries_left or 0) if current is not None else 0
    attempt = ctx.queue.max_attempts - left
    job = ctx.queue.get(job_id)
    if job is None:
        raise RuntimeError(f"job {job_id} has no record in {ctx.queue.url}")
    started = time.time()
    ctx.queue.set_state(job_id, JobState.RUNNING, attempts=attempt, started_at=started)
    running = Job(
        job.id, job.delivery, job.spec, JobState.RUNNING, attempt, job.created_at, started
    )
    result = ctx.executor.attempt(running, attempt, final=left == 0)
    if result.retry:
        ctx.queue.set_state(job_id, JobState.QUEUED, error=result.error)
        raise RetryableFailure(result.error)
    ctx.queue.set_state(
        job_id,
        result.state,
        conclusion=result.conclusion,
        error=result.error,
        report=result.report_json,
        started_at=started,
        finished_at=time.time(),
    )
    return result.state.value


def on_rq_failure(
    job: Any,
    connection: Any,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    """RQ's failure callback, after an exception or an abandoned horse (worker killed)."""
    if job.retries_left:
        return  # RQ runs it again
    ctx = _ctx()
    job_id = str(job.args[0])
    record = ctx.queue.get(job_id)
    if record is None or record.state in (JobState.SUCCEEDED, JobState.FAILED):
        return
    reason = (
        str(exc)
        if exc and str(exc)
        else f"the worker stopped ({getattr(exc_type, '__name__', 'lost')})"
    )
    ctx.queue.set_state(
        job_id,
        JobState.FAILED,
        error=reason,
        finished_at=time.time(),
        started_at=record.started_at or time.time(),
    )
    ctx.executor.fail_abandoned(record, reason)


def work(
    queue: RedisQueue, executor: Executor, *, burst: bool = False, monitoring_interval: int = 10
) -> None:
    """Run an RQ worker on the dlgate queue until stopped (SIGTERM: warm shutdown)."""
    import rq

    global _context
    worker_queue = RedisQueue(
        queue.url, queue.max_attempts, patience_s=30, job_timeout_s=queue.job_timeout_s
    )
    _context = _Context(worker_queue, executor)
    worker = rq.Worker(
        [worker_queue.rq],
        connection=worker_queue.redis,
        job_monitoring_interval=monitoring_interval,
        maintenance_interval=60,
    )
    worker.work(burst=burst, logging_level="INFO", with_scheduler=False)
