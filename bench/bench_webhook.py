"""Webhook acknowledgement latency under load, next to a bare Flask endpoint in the same run.

Both apps run under gunicorn exactly as `dlgate serve` runs the service (gthread workers); a
second process sends GitHub's `pull_request.opened` payload, signed, each delivery with its own
id, open-loop at a fixed rate over fresh loopback connections (as GitHub connects), first to
the bare endpoint, then to the service, which stores every delivery in its SQLite queue (no
worker runs, so the queue only grows). Afterwards the queue is counted: every delivery that
was acknowledged must be in it.

    .venv/bin/python bench/bench_webhook.py [--rate 200] [--seconds 30]

Targets: p99 < 50 ms, service p50 and p99 ≤ 2x the bare endpoint's, zero deliveries lost.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "github" / "webhooks" / "pull_request.opened.json"
SECRET = "bench-secret"


def bare_app() -> Any:
    """The baseline: a Flask endpoint that reads the body and answers 200."""
    from flask import Flask, request

    app = Flask("bare")

    @app.post("/webhook")
    def webhook() -> tuple[str, int]:
        request.get_data()
        return "", 200

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _gunicorn(
    app: str, port: int, env: dict[str, str], chdir: Path, log: Path
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--chdir",
        str(chdir),
        "--log-level",
        "warning",
        app,
    ]
    with log.open("wb") as sink:  # the service logs each delivery; keep them off the figures
        return subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)


def _wait_up(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not start")


def _send(port: int, body: bytes, delivery: str, at: float) -> tuple[float, int, str]:
    delay = at - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sig,
        "Content-Type": "application/json",
    }
    start = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/webhook", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        status = resp.status
        conn.close()
    except OSError:
        status = 0
    return time.perf_counter() - start, status, delivery


def load(port: int, rate: float, seconds: float, out: Any) -> None:
    """The load generator (runs in its own process): open-loop, `rate` deliveries a second."""
    body = FIXTURE.read_bytes()
    n = int(rate * seconds)
    t0 = time.perf_counter() + 0.5
    with ThreadPoolExecutor(max_workers=64) as pool:
        futures = [
            pool.submit(_send, port, body, str(uuid.uuid4()), t0 + i / rate) for i in range(n)
        ]
        results = [f.result() for f in futures]
    out.put(results)


def _run_load(port: int, rate: float, seconds: float) -> list[tuple[float, int, str]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=load, args=(port, rate, seconds, out))
    proc.start()
    results: list[tuple[float, int, str]] = out.get(timeout=seconds + 120)
    proc.join()
    return results


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=200.0, help="deliveries per second")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each run")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    import ghemu

    with tempfile.TemporaryDirectory(prefix="dlgate-bench-") as tmp:
        env = {
            **os.environ,
            "DLGATE_APP_ID": "1",
            "DLGATE_PRIVATE_KEY": ghemu.app_keypair()[0],
            "DLGATE_WEBHOOK_SECRET": SECRET,
            "DLGATE_DATA_DIR": tmp,
            "DLGATE_SANDBOX": "local",
            "PYTHONPATH": str(ROOT / "bench"),
        }
        bare_port, service_port = _free_port(), _free_port()
        logs = Path(tmp)
        bare = _gunicorn(
            "bench_webhook:bare_app()", bare_port, env, ROOT / "bench", logs / "bare.log"
        )
        service = _gunicorn(
            "dlgate.service.app:app_from_env()", service_port, env, ROOT, logs / "service.log"
        )
        try:
            _wait_up(bare_port)
            _wait_up(service_port)
            for port in (bare_port, service_port):  # warm both up
                _run_load(port, 20, 1)
            before = _queued(Path(tmp))
            bare_results = _run_load(bare_port, args.rate, args.seconds)
            service_results = _run_load(service_port, args.rate, args.seconds)
            stored = _queued(Path(tmp)) - before
        finally:
            for proc in (bare, service):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    return _report(args, bare_results, service_results, stored)


def _queued(data_dir: Path) -> set[str]:
    import sqlite3

    db = sqlite3.connect(data_dir / "queue.db")
    try:
        return {row[0] for row in db.execute("SELECT delivery FROM jobs")}
    finally:
        db.close()


def _report(
    args: argparse.Namespace,
    bare: list[tuple[float, int, str]],
    service: list[tuple[float, int, str]],
    stored: set[str],
) -> int:
    def figures(results: list[tuple[float, int, str]]) -> tuple[float, float, int]:
        ok = [lat for lat, status, _ in results if 200 <= status < 300]
        return _pct(ok, 50), _pct(ok, 99), len(results) - len(ok)

    b50, b99, b_err = figures(bare)
    s50, s99, s_err = figures(service)
    acked = {d for _, status, d in service if status == 202}
    lost = len(acked - stored)
    n = int(args.rate * args.seconds)
    print(
        f"bench_webhook: {n} deliveries at {args.rate:.0f}/s for {args.seconds:.0f} s "
        f"each, from a second process over loopback"
    )
    print(f"  bare Flask endpoint  p50 {b50:6.2f} ms   p99 {b99:6.2f} ms   errors {b_err}")
    print(f"  dlgate /webhook      p50 {s50:6.2f} ms   p99 {s99:6.2f} ms   errors {s_err}")
    r50, r99 = s50 / b50, s99 / b99
    checks = [
        (f"p99 {s99:.2f} ms < 50 ms", s99 < 50),
        (f"overhead p50 {r50:.2f}x, p99 {r99:.2f}x ≤ 2x", max(r50, r99) <= 2.0),
        (
            f"acknowledged {len(acked)}, stored {len(acked & stored)}, lost {lost}",
            lost == 0 and s_err == 0,
        ),
    ]
    for text, ok in checks:
        print(f"  {'ok    ' if ok else 'MISSED'} {text}")
    print(
        json.dumps(
            {
                "bare_p50_ms": round(b50, 3),
                "bare_p99_ms": round(b99, 3),
                "service_p50_ms": round(s50, 3),
                "service_p99_ms": round(s99, 3),
                "ratio_p50": round(r50, 2),
                "ratio_p99": round(r99, 2),
                "acknowledged": len(acked),
                "lost": lost,
            }
        )
    )
    # Latency depends on the machine's load; a lost delivery is a bug.
    return 0 if lost == 0 and s_err == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
