"""A real `mlflow server` process for tests of the remote baseline store.

Use the session fixture by importing it into a conftest or a test module
(`from mlflow_server import mlflow_server`), or start one yourself:

    with running_server(tmp_path / "mlflow") as server:
        store = Store.open(server.uri)

The server keeps its runs in SQLite and serves artifacts itself (`--artifacts-destination`),
so clients upload and download them over HTTP as they would against a team's server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MLFLOW = Path(sys.executable).with_name("mlflow")
_START_TIMEOUT_S = 90.0  # a cold start on a busy 2-core machine takes ~7-15 s


@dataclass(frozen=True)
class MlflowServer:
    uri: str  # http://127.0.0.1:PORT
    root: Path  # backend database, artifacts and the server's log
    startup_s: float  # from launch until /health answered

    @property
    def log(self) -> Path:
        return self.root / "server.log"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(root: Path) -> Iterator[MlflowServer]:
    """Start `mlflow server` on a free local port, wait until it answers, stop it after."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        str(MLFLOW), "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    # The job runner starts seven huey consumers for MLflow's GenAI jobs; dlgate uses none.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    started = time.monotonic()
    with (root / "server.log").open("wb") as log:
        # Its own process group, so stopping it also stops the uvicorn workers it spawns.
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        uri = f"http://127.0.0.1:{port}"
        _wait_ready(proc, uri, root / "server.log")
        yield MlflowServer(uri=uri, root=root, startup_s=time.monotonic() - started)
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], uri: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"mlflow server at {uri} not ready after {_START_TIMEOUT_S:.0f} s:\n{_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    # Whatever of the group outlived the main process (a uvicorn worker) is killed too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real MLflow tracking server for the whole test session."""
    with running_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server
