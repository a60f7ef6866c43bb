"""The queue beyond one machine: Redis with RQ workers, chosen by DLGATE_QUEUE_URL alone.

A real redis-server (append-only, in a temporary folder) is started and restarted by the tests;
the worker is `python -m dlgate.service.worker` as an operator would run it on another machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import (
    INSTALLATION,
    RedisServer,
    completed_runs,
    delivery_headers,
    emulator,
    make_remote,
    make_settings,
    payload,
    pr_payload,
    redis_server,
    wait_for,
)

from dlgate.report import STAGES
from dlgate.service.app import create_app
from dlgate.service.events import JobSpec
from dlgate.service.queue import JobState
from dlgate.service.redisq import RedisQueue

pytestmark = pytest.mark.redis

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


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as server:
        yield server


def test_submit_dedupes_and_requeues_a_failed_delivery(redis: RedisServer) -> None:
    q = RedisQueue(redis.url)
    first = q.submit("d1", SPEC)
    again = q.submit("d1", SPEC)
    assert not first.duplicate and again.duplicate and again.job.id == first.job.id
    assert q.rq.count == 1
    q.set_state(first.job.id, JobState.FAILED, error="boom")
    third = q.submit("d1", SPEC)
    assert not third.duplicate and third.job.id == first.job.id
    assert q.rq.count == 2  # queued again under a new RQ id
    job = q.get(first.job.id)
    assert job is not None and job.state is JobState.QUEUED and job.error == ""
    latest = q.latest_for("o/r", "a" * 40)
    assert latest is not None and latest.id == first.job.id
    assert q.stats().by_state["queued"] == 1


def test_the_webhook_answers_503_while_redis_is_down_and_202_after(
    redis: RedisServer, tmp_path: Path
) -> None:
    with emulator() as emu:
        settings = make_settings(tmp_path / "data", emu, tmp_path, queue_url=redis.url)
        app = create_app(settings)
        body = json.dumps(payload("pull_request.opened")).encode()
        with app.test_client() as client:
            redis.stop()
            resp = client.post(
                "/webhook", data=body, headers=delivery_headers("pull_request", body, delivery="x1")
            )
            assert resp.status_code == 503 and "redeliver" in resp.get_json()["error"]
            assert client.get("/healthz").status_code == 503
            redis.start()
            resp = client.post(
                "/webhook", data=body, headers=delivery_headers("pull_request", body, delivery="x1")
            )
            assert resp.status_code == 202
            assert client.get("/healthz").status_code == 200


SLOW = (
    "version: 1\nstages: [changes, data, training, export, accuracy]\n"
    "pipeline:\n  train: python3 train.py {out}\n"
)
TRAIN = "import sys, time\ntime.sleep(3)\nsys.exit(1)\n"


def test_a_redis_restart_mid_run_loses_no_job(redis: RedisServer, tmp_path: Path) -> None:
    remotes = tmp_path / "remotes"
    remote = make_remote(
        remotes, "octo/scaled", {"dlgate.yml": SLOW, "train.py": TRAIN, "model.py": "W = 0\n"}
    )
    base = remote.work.sha("main")
    heads = []
    for n in range(3):
        remote.work.branch(f"f{n}", "main")
        heads.append(remote.commit({"model.py": f"W = {n + 1}\n"}))
        remote.push(f"f{n}")
        remote.work.checkout("main")
    with emulator() as emu:
        emu.add_repo("octo/scaled", git_dir=remote.bare, installation_id=INSTALLATION)
        settings = make_settings(
            tmp_path / "data", emu, remotes, queue_url=redis.url, sandbox="local"
        )
        app = create_app(settings)
        q = RedisQueue(redis.url)
        jobs = []
        with app.test_client() as client:
            for n, head in enumerate(heads):
                body = json.dumps(
                    pr_payload(remote, number=n + 1, head=head, base=base, head_ref=f"f{n}")
                ).encode()
                resp = client.post(
                    "/webhook", data=body, headers=delivery_headers("pull_request", body)
                )
                assert resp.status_code == 202
                jobs.append(resp.get_json()["job"])
        env = {**os.environ, **settings.to_env()}
        with (tmp_path / "worker.log").open("ab") as sink:
            worker = subprocess.Popen(
                [sys.executable, "-m", "dlgate.service.worker"],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:

            def running() -> bool:
                job = q.get(jobs[0])
                return job is not None and job.state is JobState.RUNNING

            wait_for(running, 60, "the first job to start")
            redis.stop()  # mid-run: the gate is in its training command
            redis.start()

            def finished() -> bool:
                states = [q.get(j) for j in jobs]
                return all(s is not None and s.state is JobState.SUCCEEDED for s in states)

            wait_for(finished, 180, f"every job to finish; log in {tmp_path / 'worker.log'}")
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        for head in heads:
            runs = completed_runs(emu, "octo/scaled", head)
            assert sorted(runs) == sorted(f"dlgate/{s}" for s in STAGES)
            for name, [run] in runs.items():
                assert run["status"] == "completed", name
        assert q.stats().by_state["succeeded"] == 3
