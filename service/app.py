"""The webhook service: `create_app(settings)` (Flask) and `serve(host, port)` (`dlgate serve`).

    POST /webhook                    verify, route, enqueue, answer — in milliseconds
    GET  /healthz                    200 when the queue answers
    GET  /metrics                    Prometheus text: queue depth, jobs by state, durations
    GET  /jobs/<id>                  the job's report page (the check runs' details URL)
    GET  /jobs/<id>/artifacts/<p>    its plots, gallery and files

The signature is checked on the raw body, in constant time, before anything parses it; what
fails it gets 401 and queues nothing. GitHub waits 10 s for an answer and never redelivers by
itself, so the handler only routes and writes the job to the durable queue; an answer of 2xx
means the job is stored. `serve` runs gunicorn for the app and `DLGATE_WORKERS` job workers,
restarting a worker that dies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from flask import Flask, Response, abort, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from dlgate.service.events import Ignored, JobSpec, PayloadError, route
from dlgate.service.jobs import out_dir
from dlgate.service.page import render_job
from dlgate.service.queue import Queue, QueueUnavailable, Stats, open_queue
from dlgate.service.settings import MAX_BODY_BYTES, Settings, SettingsError

log = logging.getLogger("dlgate.service")

SIGNATURE_HEADER = "X-Hub-Signature-256"


def signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    # compare_digest over the whole header: a missing, truncated or wrong one fails alike,
    # in time that does not depend on how much of it matched.
    return hmac.compare_digest(signature(secret, body).encode(), (header or "").encode())


def create_app(settings: Settings, queue: Queue | None = None) -> Flask:
    app = Flask("dlgate.service")
    # Werkzeug answers 413 past this, whether the size comes in Content-Length or the body
    # streams (chunked) beyond it.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    if queue is None:
        queue = open_queue(settings.queue, settings.max_attempts, settings.job_timeout_s)
    app.extensions["dlgate"] = {"settings": settings, "queue": queue}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.description), exc.code or 500

    _webhook_routes(app, settings, queue)
    _status_routes(app, settings, queue)
    return app


def _webhook_routes(app: Flask, settings: Settings, q: Queue) -> None:
    def lookup(repo: str, head_sha: str) -> JobSpec | None:
        job = q.latest_for(repo, head_sha)
        return job.spec if job else None

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        delivery = request.headers.get("X-GitHub-Delivery", "")
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            abort(413, f"payloads are at most {MAX_BODY_BYTES} bytes")
        body = request.get_data(cache=False)
        if not verify(settings.webhook_secret, body, request.headers.get(SIGNATURE_HEADER)):
            log.warning("delivery %s: bad or missing signature; refused", delivery or "-")
            abort(
                401,
                f"{SIGNATURE_HEADER} is missing or does not match the body; check "
                "that the App's webhook secret is DLGATE_WEBHOOK_SECRET",
            )
        event = request.headers.get("X-GitHub-Event", "")
        if not event or not delivery:
            abort(400, "X-GitHub-Event and X-GitHub-Delivery are required")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            abort(400, f"the body is not JSON: {exc}")
        if not isinstance(payload, dict):
            abort(400, "the body is not a JSON object")
        try:
            routed = route(event, payload, lookup)
        except PayloadError as exc:
            abort(400, str(exc))
        if isinstance(routed, Ignored):
            log.info("delivery %s: %s ignored: %s", delivery, event, routed.reason)
            return jsonify(status="ignored", reason=routed.reason), 200
        try:
            submitted = q.submit(delivery, routed)
        except QueueUnavailable as exc:
            log.error("delivery %s: queue unavailable: %s", delivery, exc)
            abort(503, "the job queue is unavailable; redeliver this delivery later")
        job = submitted.job
        if submitted.duplicate:
            log.info("delivery %s: already %s as job %s", delivery, job.state.value, job.id)
            return jsonify(status="duplicate", job=job.id, state=job.state.value), 200
        log.info("delivery %s: job %s queued: %s", delivery, job.id, routed.title)
        return jsonify(status="queued", job=job.id, url=settings.details_url(job.id)), 202


def _status_routes(app: Flask, settings: Settings, q: Queue) -> None:
    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            q.ping()
        except QueueUnavailable as exc:
            return jsonify(status="unavailable", error=str(exc)), 503
        return jsonify(status="ok"), 200

    @app.get("/metrics")
    def metrics() -> Response:
        try:
            text = prometheus(q.stats())
        except QueueUnavailable as exc:
            abort(503, str(exc))
        return Response(text, mimetype="text/plain; version=0.0.4")

    @app.get("/jobs/<job_id>")
    def job_page(job_id: str) -> Response:
        job = q.get(job_id)
        if job is None:
            abort(404, f"no job {job_id}")
        gate_log = out_dir(settings, job).parent / "gate.log"
        text = gate_log.read_text(encoding="utf-8", errors="replace") if gate_log.is_file() else ""
        html = render_job(job, lambda name: f"/jobs/{job_id}/artifacts/{name}", text)
        return Response(html, mimetype="text/html")

    @app.get("/jobs/<job_id>/artifacts/<path:name>")
    def artifact(job_id: str, name: str) -> Response:
        job = q.get(job_id)
        if job is None:
            abort(404, f"no job {job_id}")
        # send_from_directory refuses paths that leave the folder.
        return send_from_directory(out_dir(settings, job).resolve(), name)


def prometheus(stats: Stats) -> str:
    lines = [
        "# HELP dlgate_queue_depth Jobs waiting for a worker.",
        "# TYPE dlgate_queue_depth gauge",
        f"dlgate_queue_depth {stats.depth}",
        "# HELP dlgate_jobs Jobs by state.",
        "# TYPE dlgate_jobs gauge",
        *(f'dlgate_jobs{{state="{s}"}} {n}' for s, n in sorted(stats.by_state.items())),
        "# HELP dlgate_job_duration_seconds Time from a job's last start to its end.",
        "# TYPE dlgate_job_duration_seconds histogram",
        *(f'dlgate_job_duration_seconds_bucket{{le="{b:g}"}} {n}' for b, n in stats.buckets),
        f'dlgate_job_duration_seconds_bucket{{le="+Inf"}} {stats.duration_count}',
        f"dlgate_job_duration_seconds_sum {stats.duration_sum:.3f}",
        f"dlgate_job_duration_seconds_count {stats.duration_count}",
    ]
    return "\n".join(lines) + "\n"


def app_from_env() -> Flask:
    """The WSGI app gunicorn loads (`dlgate.service.app:app_from_env()`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    return create_app(Settings.from_env())


def serve(host: str, port: int) -> int:
    """`dlgate serve`: gunicorn with the app, and the job workers. Returns the exit code."""
    settings = Settings.from_env()  # SettingsError → `dlgate serve` exits 2 with the message
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.sandbox == "docker" and settings.workers:
        from dlgate.service.sandbox import DockerSandbox

        try:
            DockerSandbox(image=settings.sandbox_image).check()
        except RuntimeError as exc:
            raise SettingsError(str(exc)) from None
    open_queue(
        settings.queue, settings.max_attempts, settings.job_timeout_s
    ).ping()  # creates the SQLite file
    env = {**os.environ, **settings.to_env()}
    web_cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(settings.web_workers),
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--timeout",
        "30",
        "--access-logfile",
        "-",
        "dlgate.service.app:app_from_env()",
    ]
    worker_cmd = [sys.executable, "-m", "dlgate.service.worker"]
    return _Supervisor(web_cmd, worker_cmd, settings.workers, env).run()


class _Supervisor:
    """Runs gunicorn and the workers as children; restarts a worker that dies, stops all when
    gunicorn stops or on SIGTERM/SIGINT."""

    def __init__(self, web: list[str], worker: list[str], n: int, env: dict[str, str]) -> None:
        self.web_cmd, self.worker_cmd, self.n, self.env = web, worker, n, env
        self.stopping = False

    def run(self) -> int:
        def stop(_sig: int, _frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        web = subprocess.Popen(self.web_cmd, env=self.env)
        workers: list[subprocess.Popen[Any]] = [self._worker() for _ in range(self.n)]
        code = 0
        try:
            while not self.stopping:
                if (rc := web.poll()) is not None:
                    print(f"dlgate serve: gunicorn exited with {rc}", file=sys.stderr)
                    code = rc or 3
                    break
                for i, w in enumerate(workers):
                    if w.poll() is not None:
                        print(
                            f"dlgate serve: worker {w.pid} exited with {w.returncode}; "
                            "restarting it",
                            file=sys.stderr,
                        )
                        time.sleep(1)  # a worker that cannot start must not spin
                        workers[i] = self._worker()
                time.sleep(0.5)
        finally:
            for proc in (web, *workers):
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 30
            for proc in (web, *workers):
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        return code

    def _worker(self) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.worker_cmd, env=self.env)
