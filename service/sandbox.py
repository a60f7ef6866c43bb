"""Where the gate runs: a Docker container (default) or a local child process (development).

The pull request's code is untrusted: its training command and model factory run inside the
gate. The Docker sandbox gives it no network, no secrets (the container's environment is built
here from nothing), CPU, memory, process and time limits, a read-only root file system, and
only the job's folders mounted. The local sandbox runs `python -m dlgate` as a child of the
worker with a scrubbed environment; it isolates nothing else and must not run untrusted code.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

LABEL = "org.dlgate.job"  # every sandbox container carries its job id under this label
SANDBOX_UID = 10001  # the runner image's `dlgate` user
LOG_TAIL = 200  # lines of the gate's output kept for the job page and failure messages


@dataclass(frozen=True)
class Workspace:
    """The folders of one attempt, as the gate sees them (host paths, or container paths)."""

    repo: Path  # the clone, gated in place (the gate adds worktrees under .git)
    out: Path  # reports and artifacts
    config: Path | None  # dlgate.yml from the default branch, if it has one
    mlflow: Path | None  # the folder of the SQLite MLflow store, when the URI is not a server


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    log: str  # the last LOG_TAIL lines of stdout and stderr
    duration_s: float
    timed_out: bool = False
    oom_killed: bool = False


Command = Callable[[Workspace], Sequence[str]]  # the dlgate arguments, given the paths


class Sandbox(Protocol):
    def run(
        self,
        job_id: str,
        command: Command,
        ws: Workspace,
        *,
        timeout_s: float,
        env: Mapping[str, str],
    ) -> Outcome: ...

    def cleanup(self, job_id: str) -> None:
        """Remove what an earlier, killed attempt of `job_id` may have left running."""


def _base_env(extra: Mapping[str, str]) -> dict[str, str]:
    # Built from nothing: the worker's own environment holds the App's key and secrets.
    return {"LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **extra}


@dataclass
class DockerSandbox:
    image: str = "dlgate-runner:latest"
    cpus: float = 2.0
    memory: str = "4g"
    network: str = "none"
    pids_limit: int = 1024
    tmp_size: str = "2g"
    _client: Any = field(default=None, repr=False)

    def client(self) -> Any:
        if self._client is None:
            import docker

            self._client = docker.from_env()
        return self._client

    def check(self) -> None:
        """Fail at start-up, with what to do, when the engine or the image is missing."""
        import docker.errors

        try:
            self.client().images.get(self.image)
        except docker.errors.ImageNotFound:
            raise RuntimeError(
                f"the sandbox image {self.image} does not exist; build it with "
                "scripts/build-images.sh or set DLGATE_SANDBOX_IMAGE"
            ) from None
        except docker.errors.DockerException as exc:
            raise RuntimeError(
                f"the Docker engine cannot be reached ({exc}); start dockerd, "
                "or set DLGATE_SANDBOX=local for development"
            ) from None

    def _user(self, ws: Workspace) -> str:
        # The container runs as the owner of the job's files: the worker's own uid, or, when
        # the worker is root, the image's unprivileged user (the files are handed to it).
        if os.getuid() != 0:
            return f"{os.getuid()}:{os.getgid()}"
        for folder in (ws.repo.parent, ws.mlflow):
            if folder is not None:
                _chown_tree(folder, SANDBOX_UID)
        return f"{SANDBOX_UID}:{SANDBOX_UID}"

    def run(
        self,
        job_id: str,
        command: Command,
        ws: Workspace,
        *,
        timeout_s: float,
        env: Mapping[str, str],
    ) -> Outcome:
        import docker.errors
        import requests

        inside = Workspace(
            repo=Path("/job/repo"),
            out=Path("/job/out"),
            config=Path("/job/config/dlgate.yml") if ws.config else None,
            mlflow=Path("/mlflow") if ws.mlflow else None,
        )
        volumes = {
            str(ws.repo.resolve()): {"bind": "/job/repo", "mode": "rw"},
            str(ws.out.resolve()): {"bind": "/job/out", "mode": "rw"},
        }
        if ws.config is not None:
            volumes[str(ws.config.parent.resolve())] = {"bind": "/job/config", "mode": "ro"}
        if ws.mlflow is not None:
            volumes[str(ws.mlflow.resolve())] = {"bind": "/mlflow", "mode": "rw"}
        client = self.client()
        started = time.monotonic()
        container = client.containers.create(
            self.image,
            command=list(command(inside)),
            user=self._user(ws),
            environment=_base_env({**env, "HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib"}),
            working_dir="/job",
            volumes=volumes,
            network_mode=self.network,
            nano_cpus=int(self.cpus * 1e9),
            mem_limit=self.memory,
            memswap_limit=self.memory,  # no swap: the memory limit is the limit
            pids_limit=self.pids_limit,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs={"/tmp": f"rw,exec,size={self.tmp_size}"},
            labels={LABEL: job_id},
            detach=True,
        )
        timed_out = False
        try:
            container.start()
            try:
                status = container.wait(timeout=timeout_s)
                exit_code = int(status.get("StatusCode", 3))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                container.kill()
                exit_code = int(container.wait(timeout=30).get("StatusCode", 137))
            container.reload()
            oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
            text = container.logs(stdout=True, stderr=True, tail=LOG_TAIL).decode(errors="replace")
        finally:
            try:
                container.remove(force=True)
            except docker.errors.DockerException as exc:  # already gone; nothing to keep
                log.warning("removing sandbox container of job %s: %s", job_id, exc)
        return Outcome(exit_code, text, time.monotonic() - started, timed_out, oom)

    def cleanup(self, job_id: str) -> None:
        for container in self.client().containers.list(
            all=True, filters={"label": f"{LABEL}={job_id}"}
        ):
            log.info("removing sandbox container %s left by job %s", container.short_id, job_id)
            container.remove(force=True)


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


@dataclass
class LocalSandbox:
    """The gate as a child process of the worker. For development only: the pull request's
    code runs with the worker's rights and network (it does not see the worker's secrets)."""

    python: str = sys.executable
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    def run(
        self,
        job_id: str,
        command: Command,
        ws: Workspace,
        *,
        timeout_s: float,
        env: Mapping[str, str],
    ) -> Outcome:
        child_env = _base_env(
            {**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ws.out.parent)}
        )
        started = time.monotonic()
        log_path = ws.out.parent / "gate.log"
        with log_path.open("wb") as sink:
            proc = subprocess.Popen(
                [self.python, "-m", "dlgate", *command(ws)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=ws.out.parent,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (one syscall, no locks)
            )
            timed_out = False
            try:
                exit_code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, 9)
                exit_code = proc.wait()
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return Outcome(
            exit_code, "\n".join(lines[-LOG_TAIL:]), time.monotonic() - started, timed_out
        )

    def cleanup(self, job_id: str) -> None:
        pass  # a killed worker's gate dies with it (_die_with_parent)


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child must not import


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the kernel kills the gate when the worker dies, even by kill -9, so a
    # retried job never races the gate of its lost attempt. Only a syscall runs in the child.
    _LIBC.prctl(1, signal.SIGKILL)


def make_sandbox(kind: str, *, image: str, cpus: float, memory: str, network: str) -> Sandbox:
    if kind == "local":
        return LocalSandbox()
    return DockerSandbox(image=image, cpus=cpus, memory=memory, network=network)
