"""Job workers: `python -m dlgate.service.worker` (settings from the environment).

With the embedded SQLite queue a worker claims a job under a lease, heartbeats it from a
thread while the gate runs, and records the result; a job whose lease ran out (its worker was
killed) is queued again by whichever worker looks next, and when its attempts are spent, its
check runs are completed as failures. With Redis, the worker is an RQ worker (`redisq`).
`dlgate serve` starts `DLGATE_WORKERS` of these next to the web app; more can run anywhere
that reaches the same queue.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Sequence
from types import FrameType

from dlgate.service.jobs import Executor
from dlgate.service.queue import Lease, SqliteQueue, open_queue
from dlgate.service.sandbox import make_sandbox
from dlgate.service.settings import Settings, SettingsError

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often an idle worker looks for a job
RETRY_DELAY_S = 5.0  # before a failed attempt is tried again (times the attempt number)


def executor_for(settings: Settings) -> Executor:
    sandbox = make_sandbox(
        settings.sandbox,
        image=settings.sandbox_image,
        cpus=settings.sandbox_cpus,
        memory=settings.sandbox_memory,
        network=settings.sandbox_network,
    )
    return Executor(settings, sandbox)


class SqliteWorker:
    def __init__(self, settings: Settings, queue: SqliteQueue, executor: Executor) -> None:
        self.settings = settings
        self.queue = queue
        self.executor = executor
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()

    def run(self, *, max_jobs: int | None = None) -> None:
        """Work until `stop` is set (or `max_jobs` jobs were attempted)."""
        done = 0
        while not self.stop.is_set() and (max_jobs is None or done < max_jobs):
            for lost in self.queue.reap():
                log.warning("job %s: its worker was lost on the last attempt", lost.job.id)
                self.executor.fail_abandoned(
                    lost.job, lost.job.error or "the worker running it stopped"
                )
            lease = self.queue.claim(self.id, self.settings.lease_s)
            if lease is None:
                self.stop.wait(POLL_S)
                continue
            self.work(lease)
            done += 1

    def work(self, lease: Lease) -> None:
        job = lease.job
        log.info("job %s attempt %d: %s", job.id, lease.attempt, job.spec.title)
        beating = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job.id, beating), daemon=True)
        beat.start()
        try:
            result = self.executor.attempt(job, lease.attempt, lease.final)
        finally:
            beating.set()
            beat.join()
        if result.retry:
            self.queue.retry_later(job.id, self.id, result.error, RETRY_DELAY_S * lease.attempt)
            return
        kept = self.queue.finish(
            job.id,
            self.id,
            result.state,
            conclusion=result.conclusion,
            error=result.error,
            report_json=result.report_json,
        )
        if not kept:
            log.warning("job %s: its lease was lost while it ran; the result is dropped", job.id)
        log.info("job %s: %s %s", job.id, result.state.value, result.conclusion or result.error)

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        interval = self.settings.lease_s / 3
        while not done.wait(interval):
            if not self.queue.heartbeat(job_id, self.id, self.settings.lease_s):
                log.warning("job %s: lease lost (another worker took it over)", job_id)
                return


def run(settings: Settings, *, max_jobs: int | None = None) -> None:
    queue = open_queue(settings.queue, settings.max_attempts, settings.job_timeout_s)
    executor = executor_for(settings)
    if isinstance(queue, SqliteQueue):
        worker = SqliteWorker(settings, queue, executor)

        def stop(_sig: int, _frame: FrameType | None) -> None:
            # The job in hand finishes; a `kill -9` instead leaves it to the lease.
            worker.stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
        worker.run(max_jobs=max_jobs)
        return
    from dlgate.service.redisq import RedisQueue, work

    assert isinstance(queue, RedisQueue)
    work(queue, executor, burst=max_jobs is not None)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"dlgate worker: {exc}", file=sys.stderr)
        return 2
    run(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
