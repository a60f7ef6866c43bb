"""`dlgate serve` as an operator runs it: gunicorn, the supervised job workers, and the service
image built from the local base, each answering /healthz and handling a signed delivery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ghemu
import pytest
from service_support import (
    FAST_CONFIG,
    INSTALLATION,
    Remote,
    completed_runs,
    delivery_headers,
    emulator,
    free_port,
    make_remote,
    make_settings,
    pr_payload,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _post(url: str, event: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    raw = json.dumps(body).encode()
    req = urllib.request.Request(url, data=raw, headers=delivery_headers(event, raw))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextmanager
def _gated(tmp_path: Path) -> Iterator[tuple[ghemu.GitHubEmulator, Remote, str, str]]:
    remotes = tmp_path / "remotes"
    remote = make_remote(remotes, "octo/served", {"dlgate.yml": FAST_CONFIG, "m.py": "1\n"})
    base = remote.work.sha("main")
    remote.work.branch("feature", "main")
    head = remote.commit({"m.py": "2\n"})
    remote.push("feature")
    with emulator() as emu:
        emu.add_repo("octo/served", git_dir=remote.bare, installation_id=INSTALLATION)
        yield emu, remote, base, head


def _handles_a_delivery(
    url: str, emu: ghemu.GitHubEmulator, remote: Remote, base: str, head: str
) -> None:
    wait_for(lambda: _get(f"{url}/healthz") == 200, 60, f"{url}/healthz")
    status, answer = _post(
        f"{url}/webhook",
        "pull_request",
        pr_payload(remote, number=1, head=head, base=base, head_ref="feature"),
    )
    assert status == 202, answer

    def done() -> bool:
        runs = completed_runs(emu, remote.full_name, head).get("dlgate/changes", [])
        return bool(runs) and runs[0]["status"] == "completed"

    wait_for(done, 120, "the check run to complete")
    [run] = completed_runs(emu, remote.full_name, head)["dlgate/changes"]
    assert run["conclusion"] == "success"
    assert _get(f"{url}/jobs/{answer['job']}") == 200
    assert _get(f"{url}/metrics") == 200


def test_dlgate_serve_runs_gunicorn_and_workers(tmp_path: Path) -> None:
    with _gated(tmp_path) as (emu, remote, base, head):
        port = free_port()
        settings = make_settings(
            tmp_path / "data", emu, tmp_path / "remotes", sandbox="local", workers=1, web_workers=1
        )
        env = {**os.environ, **settings.to_env()}
        with (tmp_path / "serve.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dlgate", "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _handles_a_delivery(f"http://127.0.0.1:{port}", emu, remote, base, head)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]


@pytest.mark.docker
def test_the_service_image_starts_and_handles_a_signed_delivery(tmp_path: Path) -> None:
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no Docker engine (scripts/system-deps.sh starts one)")
    build = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), "service"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    image = (ROOT / "build" / "images" / "service.tag").read_text().strip()
    with _gated(tmp_path) as (emu, remote, base, head):
        port = free_port()
        settings = make_settings(
            Path("/var/lib/dlgate"),
            emu,
            Path("/remotes"),
            sandbox="local",
            workers=1,
            web_workers=1,
        )
        env = settings.to_env()
        name = f"dlgate-service-test-{port}"
        args = ["docker", "run", "--detach", "--rm", "--name", name, "--network", "host"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        args += [
            "--volume",
            f"{tmp_path / 'remotes'}:/remotes:ro",
            image,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        subprocess.run(args, check=True, capture_output=True)
        try:
            whoami = subprocess.run(
                ["docker", "exec", name, "id", "-u"], capture_output=True, text=True, check=True
            ).stdout.strip()
            assert whoami != "0"  # the service runs as a non-root user
            _handles_a_delivery(f"http://127.0.0.1:{port}", emu, remote, base, head)
        finally:
            logs = subprocess.run(
                ["docker", "logs", name], capture_output=True, text=True, check=False
            )
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
            print(logs.stdout[-2000:], logs.stderr[-2000:])
