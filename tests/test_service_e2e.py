"""The whole service with real parts: GitHub's payloads signed and posted to the Flask app, the
SQLite queue, the worker, the gate in a Docker container built from the local base image, and
the GitHub emulator receiving the check runs. Also the sandbox's promises (no network, no
secrets) and the fault cases (a worker killed mid-job, GitHub failing at random)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ghemu
import pytest
from flask.testing import FlaskClient
from service_support import (
    FAST_CONFIG,
    INSTALLATION,
    Remote,
    check_run_payload,
    check_suite_payload,
    completed_runs,
    delivery_headers,
    emulator,
    make_remote,
    make_settings,
    merge_group_payload,
    pr_payload,
    push_payload,
    wait_for,
)

from dlgate.report import STAGES
from dlgate.service.app import create_app
from dlgate.service.queue import JobState, SqliteQueue
from dlgate.service.settings import Settings
from dlgate.service.worker import SqliteWorker, executor_for

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
ALL_STAGES = "version: 1\nstages: [changes, data, training, export, accuracy]\n"
SLOW_TRAIN = "import sys, time\ntime.sleep(float(sys.argv[2]))\nsys.exit(1)\n"


@pytest.fixture(scope="session")
def runner_image() -> str:
    """The runner image of this source tree, built (or found cached) by the project's script."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no Docker engine (scripts/system-deps.sh starts one)")
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), "runner"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"scripts/build-images.sh failed:\n{proc.stderr[-3000:]}"
    return (ROOT / "build" / "images" / "runner.tag").read_text().strip()


@dataclass
class Stack:
    emu: ghemu.GitHubEmulator
    remote: Remote
    settings: Settings
    queue: SqliteQueue
    client: FlaskClient

    def deliver(self, event: str, body: dict[str, Any], delivery: str | None = None) -> str:
        raw = json.dumps(body).encode()
        resp = self.client.post(
            "/webhook", data=raw, headers=delivery_headers(event, raw, delivery=delivery)
        )
        assert resp.status_code == 202, resp.get_data(as_text=True)
        job_id: str = resp.get_json()["job"]
        return job_id

    def work(self, jobs: int = 1) -> None:
        """Run the real worker in this process until it has attempted `jobs` jobs."""
        SqliteWorker(self.settings, self.queue, executor_for(self.settings)).run(max_jobs=jobs)

    def runs(self, head: str) -> dict[str, list[Any]]:
        return completed_runs(self.emu, self.remote.full_name, head)

    def job(self, job_id: str) -> Any:
        job = self.queue.get(job_id)
        assert job is not None
        return job


@contextmanager
def _stack(tmp_path: Path, image: str, files: dict[str, str], **overrides: Any) -> Iterator[Stack]:
    remotes = tmp_path / "remotes"
    remote = make_remote(remotes, "octo/gated", files)
    with emulator() as emu:
        emu.add_repo("octo/gated", git_dir=remote.bare, installation_id=INSTALLATION)
        settings = make_settings(tmp_path / "data", emu, remotes, sandbox_image=image, **overrides)
        queue = SqliteQueue(settings.data_dir / "queue.db", settings.max_attempts)
        app = create_app(settings, queue)
        with app.test_client() as client:
            yield Stack(emu, remote, settings, queue, client)


@pytest.fixture
def stack(tmp_path: Path, runner_image: str) -> Iterator[Stack]:
    files = {"dlgate.yml": FAST_CONFIG, "data/a.txt": "1\n", "model.py": "W = 1\n"}
    with _stack(tmp_path, runner_image, files) as s:
        yield s


def _feature(stack: Stack, branch: str, files: dict[str, str]) -> tuple[str, str]:
    base = stack.remote.work.sha("main")
    stack.remote.work.branch(branch, "main")
    head = stack.remote.commit(files, f"{branch} work")
    stack.remote.push(branch)
    stack.remote.work.checkout("main")
    return base, head


def test_pull_requests_get_check_runs_with_the_gates_verdict(stack: Stack) -> None:
    base, head = _feature(stack, "feature", {"model.py": "W = 2\n"})
    _b, mixed = _feature(stack, "mixed", {"model.py": "W = 3\n", "data/a.txt": "2\n"})
    ok = stack.deliver(
        "pull_request", pr_payload(stack.remote, number=1, head=head, base=base, head_ref="feature")
    )
    bad = stack.deliver(
        "pull_request",
        pr_payload(
            stack.remote, number=2, head=mixed, base=base, head_ref="mixed", action="synchronize"
        ),
    )
    stack.work(2)

    [run] = stack.runs(head)["dlgate/changes"]
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert run["details_url"] == f"http://dlgate.test/jobs/{ok}"
    assert run["external_id"] == f"dlgate:{head}:changes"
    [refused] = stack.runs(mixed)["dlgate/changes"]
    assert refused["conclusion"] == "failure"  # data and code together
    assert "data" in refused["output"]["summary"] and "model.py" in refused["output"]["summary"]
    assert set(stack.runs(head)) == {"dlgate/changes"}  # the configured stages only

    job = stack.job(ok)
    assert (job.state, job.conclusion, job.attempts) == (JobState.SUCCEEDED, "success", 1)
    assert stack.job(bad).conclusion == "failure"
    page = stack.client.get(f"/jobs/{ok}").get_data(as_text=True)
    assert "dlgate/changes" in page and "passed" in page
    metrics = stack.client.get("/metrics").get_data(as_text=True)
    assert 'dlgate_jobs{state="succeeded"} 2' in metrics


def test_push_tag_and_merge_group(stack: Stack) -> None:
    work = stack.remote.work
    before = work.sha("main")
    main = stack.remote.commit({"README.md": "hello\n"}, "docs")
    stack.remote.push("main")
    baseline = stack.deliver(
        "push", push_payload(stack.remote, ref="refs/heads/main", after=main, before=before)
    )
    work.git("tag", "v1.0.0")
    stack.remote.push("v1.0.0")
    release = stack.deliver(
        "push", push_payload(stack.remote, ref="refs/tags/v1.0.0", after=main, before="0" * 40)
    )
    queue_ref = "gh-readonly-queue/main/pr-7-" + main
    work.branch(queue_ref, "main")
    queued = stack.remote.commit({"model.py": "W = 7\n"}, "Merge pull request #7")
    stack.remote.push(queue_ref)
    work.checkout("main")
    group = stack.deliver(
        "merge_group",
        merge_group_payload(
            stack.remote, head=queued, base=main, head_ref=f"refs/heads/{queue_ref}"
        ),
    )
    # A push to the merge-queue branch is no baseline.
    raw = json.dumps(
        push_payload(stack.remote, ref=f"refs/heads/{queue_ref}", after=queued, before=main)
    ).encode()
    resp = stack.client.post("/webhook", data=raw, headers=delivery_headers("push", raw))
    assert resp.get_json()["status"] == "ignored"
    stack.work(3)

    for job_id, kind in ((baseline, "baseline"), (release, "release"), (group, "merge_group")):
        job = stack.job(job_id)
        assert job.state is JobState.SUCCEEDED, job.error
        assert json.loads(job.report_json)["kind"] == kind
    assert json.loads(stack.job(release).report_json)["ref"] == "v1.0.0"
    on_main = stack.runs(main)["dlgate/changes"]
    assert [r["status"] for r in on_main] == ["completed", "completed"]  # baseline + release
    [on_queue] = stack.runs(queued)["dlgate/changes"]
    assert on_queue["conclusion"] == "success"
    # The baseline and the release were recorded in the repository's MLflow store.
    assert (stack.settings.data_dir / "mlflow" / "octo__gated" / "mlflow.db").is_file()


def test_rerequested_check_runs_and_suites_run_again(stack: Stack) -> None:
    base, head = _feature(stack, "feature", {"model.py": "W = 2\n"})
    first = stack.deliver(
        "pull_request", pr_payload(stack.remote, number=3, head=head, base=base, head_ref="feature")
    )
    stack.work(1)
    again = stack.deliver(
        "check_run", check_run_payload(stack.remote, name="dlgate/changes", head=head)
    )
    stack.work(1)
    rerun = stack.job(again)
    assert rerun.id != first and rerun.spec.stages == ("changes",)
    assert (rerun.spec.kind, rerun.spec.pr, rerun.spec.base_sha) == ("pr", 3, base)
    runs = stack.runs(head)["dlgate/changes"]
    assert [r["status"] for r in runs] == ["completed", "completed"]  # a fresh run, like GitHub's
    suite = stack.deliver("check_suite", check_suite_payload(stack.remote, head=head))
    action = check_run_payload(
        stack.remote, name="dlgate/changes", head=head, action="requested_action"
    )
    action["requested_action"] = {"identifier": "rerun"}
    button = stack.deliver("check_run", action)
    stack.work(2)
    assert stack.job(suite).state is JobState.SUCCEEDED
    assert stack.job(button).state is JobState.SUCCEEDED
    assert len(stack.runs(head)["dlgate/changes"]) == 4


def test_the_gate_refusing_its_config_fails_every_check_run(stack: Stack) -> None:
    base, head = _feature(stack, "feature", {"model.py": "W = 2\n"})
    stack.remote.commit({"dlgate.yml": "version: 1\nstagez: [changes]\n"}, "typo")
    stack.remote.push("main")
    job_id = stack.deliver(
        "pull_request", pr_payload(stack.remote, number=4, head=head, base=base, head_ref="feature")
    )
    stack.work(1)
    job = stack.job(job_id)
    assert job.state is JobState.FAILED and "stagez" in job.error and "stages" in job.error
    runs = stack.runs(head)
    assert set(runs) == {f"dlgate/{s}" for s in STAGES}
    for [run] in runs.values():
        assert (run["status"], run["conclusion"]) == ("completed", "failure")
        assert "stagez" in run["output"]["summary"]


PROBE = r"""
import json, os, socket, sys
from pathlib import Path
found = {"env": dict(os.environ), "files": {}, "net": {}}
for path in sys.argv[3:]:
    found["files"][path] = Path(path).exists()
for host, port in (("127.0.0.1", int(sys.argv[2])), ("1.1.1.1", 443)):
    try:
        socket.create_connection((host, port), timeout=2).close()
        found["net"][host] = "connected"
    except OSError as exc:
        found["net"][host] = type(exc).__name__
try:
    found["pid1"] = Path("/proc/1/environ").read_bytes().decode(errors="replace")
except OSError as exc:
    found["pid1"] = type(exc).__name__
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "probe.json").write_text(json.dumps(found))
sys.exit(1)
"""


def test_pr_code_in_the_sandbox_finds_no_secrets_and_no_network(
    tmp_path: Path, runner_image: str
) -> None:
    key_file = tmp_path / "app-key.pem"
    key_file.write_text(ghemu.app_keypair()[0])
    config = ALL_STAGES + "pipeline:\n  train: python3 train.py {out} PORT PATHS\n"
    files = {"dlgate.yml": config, "train.py": "print('honest')\n", "model.py": "W = 1\n"}
    with _stack(tmp_path, runner_image, files) as stack:
        data_dir = stack.settings.data_dir.resolve()
        config = config.replace("PORT", str(stack.emu.port)).replace(
            "PATHS", f"{key_file} {data_dir}/queue.db /var/run/docker.sock"
        )
        stack.remote.commit({"dlgate.yml": config}, "probe paths")
        stack.remote.push("main")
        base, head = _feature(stack, "evil", {"train.py": PROBE})
        os.environ["DLGATE_CANARY"] = "worker-env-canary"  # the worker's own environment
        try:
            job_id = stack.deliver(
                "pull_request",
                pr_payload(stack.remote, number=5, head=head, base=base, head_ref="evil"),
            )
            stack.work(1)
        finally:
            del os.environ["DLGATE_CANARY"]
        [probe] = (stack.settings.data_dir / "jobs" / job_id).rglob("probe.json")
        found = json.loads(probe.read_text())
        env = found["env"]
        secret_words = ("GITHUB", "TOKEN", "KEY", "SECRET", "CANARY", "MLFLOW")
        leaked = [
            k
            for k in env
            if k in stack.settings.to_env() or any(w in k.upper() for w in secret_words)
        ]
        assert not leaked, env
        assert set(k for k in env if k.startswith("DLGATE_")) <= {"DLGATE_GIT_SHA", "DLGATE_SEED"}
        text = json.dumps(found)
        assert stack.settings.webhook_secret not in text
        assert "BEGIN PRIVATE KEY" not in text and "ghs_" not in text
        assert not any(found["files"].values()), found["files"]
        assert "connected" not in found["net"].values(), found["net"]
        assert "CANARY" not in found["pid1"]
        # And the gate still reported: the training command failed, so the PR is refused.
        assert stack.job(job_id).conclusion == "failure"


def _worker_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.to_env()}
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "dlgate.service.worker"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def test_a_worker_killed_mid_job_is_retried_and_leaves_one_run_per_stage(
    tmp_path: Path, runner_image: str
) -> None:
    files = {
        "dlgate.yml": ALL_STAGES + "pipeline:\n  train: python3 train.py {out} 8\n",
        "train.py": SLOW_TRAIN,
        "model.py": "W = 1\n",
    }
    with _stack(tmp_path, runner_image, files) as stack:
        base, head = _feature(stack, "feature", {"model.py": "W = 2\n"})
        job_id = stack.deliver(
            "pull_request",
            pr_payload(stack.remote, number=6, head=head, base=base, head_ref="feature"),
        )
        log = tmp_path / "worker.log"
        first = _worker_process(stack.settings, log)
        try:
            wait_for(lambda: len(stack.runs(head)) == 5, 120, "the five check runs to start")
            time.sleep(3)  # the gate is now inside its training command
            assert stack.job(job_id).state is JobState.RUNNING
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert all(r["status"] == "in_progress" for rs in stack.runs(head).values() for r in rs)
            second = _worker_process(stack.settings, log)
            try:
                wait_for(
                    lambda: stack.job(job_id).state is JobState.SUCCEEDED,
                    120,
                    f"the retried job to finish; log: {log}",
                )
            finally:
                second.terminate()
                second.wait(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
        job = stack.job(job_id)
        assert job.attempts == 2
        runs = stack.runs(head)
        assert sorted(runs) == sorted(f"dlgate/{s}" for s in STAGES)
        for name, [run] in runs.items():  # exactly one per stage
            assert run["status"] == "completed", name
        assert runs["dlgate/export"][0]["conclusion"] == "failure"  # the training exits 1
        assert runs["dlgate/changes"][0]["conclusion"] == "success"


def test_github_failing_at_random_loses_nothing(tmp_path: Path, runner_image: str) -> None:
    files = {
        "dlgate.yml": ALL_STAGES + "pipeline:\n  train: python3 train.py {out} 0\n",
        "train.py": SLOW_TRAIN,
        "model.py": "W = 1\n",
    }
    with _stack(tmp_path, runner_image, files) as stack:
        base, head = _feature(stack, "feature", {"model.py": "W = 2\n"})
        stack.emu.faults(
            rate=0.3,
            kinds=("500", "502", "403-secondary", "429", "lost"),
            match=r".*/check-runs.*",
            seed=7,
        )
        job_id = stack.deliver(
            "pull_request",
            pr_payload(stack.remote, number=8, head=head, base=base, head_ref="feature"),
        )
        stack.work(1)
        while stack.job(job_id).state is JobState.QUEUED:  # an attempt GitHub defeated
            stack.work(1)
        assert stack.job(job_id).state is JobState.SUCCEEDED
        assert stack.emu.injected, "no fault was injected"
        runs = stack.runs(head)
        assert sorted(runs) == sorted(f"dlgate/{s}" for s in STAGES)
        for name, [run] in runs.items():
            assert run["status"] == "completed", name


EXAMPLE = ROOT / "examples" / "digits"


@pytest.mark.slow
def test_a_full_gate_of_the_example_pipeline_in_the_sandbox(
    tmp_path: Path, runner_image: str
) -> None:
    with _stack(tmp_path, runner_image, {}, sandbox_memory="4g") as stack:
        work = stack.remote.work
        shutil.copytree(
            EXAMPLE,
            work.path,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "out"),
        )
        work.commit("the digits pipeline")
        stack.remote.push("main")
        model = (work.path / "model.py").read_text()
        base, head = _feature(stack, "tweak", {"model.py": model + "\n# a comment only\n"})
        job_id = stack.deliver(
            "pull_request",
            pr_payload(stack.remote, number=9, head=head, base=base, head_ref="tweak"),
        )
        stack.work(1)
        job = stack.job(job_id)
        assert job.state is JobState.SUCCEEDED, job.error
        report = json.loads(job.report_json)
        assert [s["name"] for s in report["stages"]] == list(STAGES)
        runs = stack.runs(head)
        for stage in report["stages"]:  # every check run says what the report says
            [run] = runs[f"dlgate/{stage['name']}"]
            assert run["status"] == "completed"
            assert run["conclusion"] == stage["conclusion"], stage["name"]
        assert runs["dlgate/changes"][0]["conclusion"] == "success"
        page = stack.client.get(f"/jobs/{job_id}").get_data(as_text=True)
        assert "dlgate/accuracy" in page
