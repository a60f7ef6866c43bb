"""The webhook app through Flask's test client, with the real SQLite queue: signatures, size
and format limits, de-duplication, health, metrics and the job page."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import ghemu
import pytest
from flask.testing import FlaskClient
from service_support import SECRET, delivery_headers, payload

from dlgate.report import Outcome
from dlgate.service.app import create_app, signature, verify
from dlgate.service.events import JobSpec
from dlgate.service.queue import JobState, SqliteQueue
from dlgate.service.settings import MAX_BODY_BYTES, Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    private, _ = ghemu.app_keypair()
    return Settings(app_id=1, private_key=private, webhook_secret=SECRET, data_dir=tmp_path)


@pytest.fixture
def queue(settings: Settings) -> SqliteQueue:
    return SqliteQueue(settings.data_dir / "queue.db")


@pytest.fixture
def client(settings: Settings, queue: SqliteQueue) -> Iterator[FlaskClient]:
    app = create_app(settings, queue)
    app.testing = True
    with app.test_client() as c:
        yield c


def _post(client: FlaskClient, event: str, body: bytes, **headers: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    h = delivery_headers(event, body)
    h.update(headers)
    h = {k: v for k, v in h.items() if v != "-"}
    resp = client.post("/webhook", data=body, headers=h)
    return resp.status_code, resp.get_json(silent=True) or {}


def _jobs(queue: SqliteQueue) -> int:
    return sum(queue.stats().by_state.values())


def test_githubs_published_test_vector() -> None:
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature("It's a Secret to Everybody", b"Hello, World!") == expected
    assert verify("It's a Secret to Everybody", b"Hello, World!", expected)


def test_a_signed_pull_request_is_queued(client: FlaskClient, queue: SqliteQueue) -> None:
    body = json.dumps(payload("pull_request.opened")).encode()
    status, answer = _post(client, "pull_request", body)
    assert status == 202 and answer["status"] == "queued"
    job = queue.get(answer["job"])
    assert job is not None and job.state is JobState.QUEUED
    assert job.spec.kind == "pr" and job.spec.pr == 2
    assert answer["url"] == f"http://localhost:8080/jobs/{job.id}"


@pytest.mark.parametrize("bad", ["wrong", "missing", "truncated", "other-secret", "sha1"])
def test_bad_signatures_are_refused_and_nothing_is_queued(
    client: FlaskClient, queue: SqliteQueue, bad: str
) -> None:
    body = json.dumps(payload("pull_request.opened")).encode()
    good = delivery_headers("pull_request", body)["X-Hub-Signature-256"]
    header = {
        "wrong": "sha256=" + "0" * 64,
        "missing": "-",
        "truncated": good[:-8],
        "other-secret": delivery_headers("pull_request", body, secret="nope")[
            "X-Hub-Signature-256"
        ],
        "sha1": "sha1=" + good[7:47],
    }[bad]
    status, answer = _post(client, "pull_request", body, **{"X-Hub-Signature-256": header})
    assert status == 401
    assert "DLGATE_WEBHOOK_SECRET" in answer["error"]
    assert _jobs(queue) == 0


def test_a_body_changed_after_signing_is_refused(client: FlaskClient, queue: SqliteQueue) -> None:
    body = json.dumps(payload("pull_request.opened")).encode()
    headers = delivery_headers("pull_request", body)
    resp = client.post("/webhook", data=body.replace(b'"opened"', b'"closed"'), headers=headers)
    assert resp.status_code == 401 and _jobs(queue) == 0


def test_over_25_mb_is_refused_before_reading(client: FlaskClient, queue: SqliteQueue) -> None:
    body = b"{" + b" " * MAX_BODY_BYTES + b"}"
    status, answer = _post(client, "pull_request", body)
    assert status == 413 and "at most" in answer["error"]
    assert _jobs(queue) == 0


def test_over_25_mb_streamed_without_a_length_is_refused(
    client: FlaskClient, queue: SqliteQueue
) -> None:
    # What a server hands the app for a chunked request: no Content-Length, a terminated input.
    headers = delivery_headers("pull_request", b"")
    resp = client.post(
        "/webhook",
        input_stream=io.BytesIO(b" " * (MAX_BODY_BYTES + 10)),
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert resp.status_code == 413
    assert _jobs(queue) == 0


def test_malformed_json_is_400(client: FlaskClient, queue: SqliteQueue) -> None:
    assert _post(client, "pull_request", b'{"action": "opened",')[0] == 400
    assert _post(client, "pull_request", b'["a list"]')[0] == 400
    status, answer = _post(client, "pull_request", b'{"action": "opened"}')
    assert status == 400 and "pull_request payload lacks" in answer["error"]
    assert _jobs(queue) == 0


def test_missing_event_or_delivery_headers_are_400(client: FlaskClient) -> None:
    body = b"{}"
    assert _post(client, "ping", body, **{"X-GitHub-Event": "-"})[0] == 400
    assert _post(client, "ping", body, **{"X-GitHub-Delivery": "-"})[0] == 400


def test_unknown_and_uninteresting_events_are_acknowledged_and_ignored(
    client: FlaskClient, queue: SqliteQueue
) -> None:
    status, answer = _post(client, "star", b'{"action": "created"}')
    assert status == 200 and answer["status"] == "ignored"
    status, answer = _post(client, "release", json.dumps(payload("release.published")).encode())
    assert status == 200 and answer["status"] == "ignored"
    status, answer = _post(client, "ping", b'{"zen": "Keep it logically awesome."}')
    assert status == 200 and "awesome" in answer["reason"]
    assert _jobs(queue) == 0


def test_a_redelivery_is_acknowledged_not_run_again_unless_it_failed(
    client: FlaskClient, queue: SqliteQueue
) -> None:
    body = json.dumps(payload("pull_request.synchronize")).encode()
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    first = _post(client, "pull_request", body, **{"X-GitHub-Delivery": delivery})
    again = _post(client, "pull_request", body, **{"X-GitHub-Delivery": delivery})
    assert first[0] == 202 and again[0] == 200
    assert again[1] == {"status": "duplicate", "job": first[1]["job"], "state": "queued"}
    assert _jobs(queue) == 1
    # The job runs and fails: a redelivery runs it again, under the same job.
    lease = queue.claim("w", 30)
    assert lease is not None
    queue.finish(lease.job.id, "w", JobState.FAILED, error="clone failed")
    third = _post(client, "pull_request", body, **{"X-GitHub-Delivery": delivery})
    assert third[0] == 202 and third[1]["job"] == first[1]["job"]
    job = queue.get(first[1]["job"])
    assert job is not None and job.state is JobState.QUEUED and job.attempts == 0
    # Once it succeeded, a redelivery is acknowledged only.
    lease = queue.claim("w", 30)
    assert lease is not None
    queue.finish(lease.job.id, "w", JobState.SUCCEEDED, conclusion="success")
    fourth = _post(client, "pull_request", body, **{"X-GitHub-Delivery": delivery})
    assert fourth[0] == 200 and fourth[1]["state"] == "succeeded"
    assert _jobs(queue) == 1


def test_healthz_and_metrics(client: FlaskClient, queue: SqliteQueue) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    for n in range(3):
        _post(
            client,
            "pull_request",
            json.dumps(payload("pull_request.opened")).encode(),
            **{"X-GitHub-Delivery": f"d{n}"},
        )
    lease = queue.claim("w", 30)
    assert lease is not None
    queue.finish(lease.job.id, "w", JobState.SUCCEEDED, conclusion="success")
    text = client.get("/metrics").get_data(as_text=True)
    assert "dlgate_queue_depth 2\n" in text
    assert 'dlgate_jobs{state="succeeded"} 1\n' in text
    assert 'dlgate_jobs{state="queued"} 2\n' in text
    assert 'dlgate_job_duration_seconds_bucket{le="10"} 1\n' in text
    assert "dlgate_job_duration_seconds_count 1\n" in text


def test_the_job_page_renders_the_report(
    client: FlaskClient, queue: SqliteQueue, settings: Settings
) -> None:
    from dlgate.report import CheckResult, Report, Revision, StageResult

    spec = JobSpec(
        kind="pr",
        repo="o/r",
        installation_id=1,
        clone_url="u",
        default_branch="main",
        head_sha="a" * 40,
        base_sha="b" * 40,
        pr=5,
    )
    job = queue.submit("d-page", spec).job
    assert client.get(f"/jobs/{job.id}").status_code == 200  # queued: no report yet
    report = Report(
        kind="pr",
        repo="/job/repo",
        head=Revision("h", "a" * 40),
        base=Revision("b", "b" * 40),
        merge_base="b" * 40,
        baseline=None,
        started_at="2024-01-01T00:00:00+00:00",
        duration_s=1.0,
        dlgate_version="0",
        stages=(
            StageResult(
                "data",
                (
                    CheckResult(
                        "data.gallery",
                        Outcome.WARN,
                        "<script>x</script> 2 odd",
                        artifacts=("gallery/a.png", "stats.json"),
                    ),
                ),
                "2 odd samples",
            ),
        ),
    )
    lease = queue.claim("w", 30)
    assert lease is not None
    queue.finish(
        job.id, "w", JobState.SUCCEEDED, conclusion="success", report_json=report.to_json()
    )
    out = settings.data_dir / "jobs" / job.id / "attempt-1" / "out"
    (out / "gallery").mkdir(parents=True)
    (out / "gallery" / "a.png").write_bytes(b"\x89PNG fake")
    html = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "dlgate/data" in html and "2 odd samples" in html
    assert "&lt;script&gt;" in html and "<script>x" not in html  # escaped
    assert f'<img src="/jobs/{job.id}/artifacts/gallery/a.png"' in html
    with client.get(f"/jobs/{job.id}/artifacts/gallery/a.png") as image:
        assert image.data == b"\x89PNG fake"
    assert client.get(f"/jobs/{job.id}/artifacts/../../queue.db").status_code == 404
    assert client.get("/jobs/nope").status_code == 404
