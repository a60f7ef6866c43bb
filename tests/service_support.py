"""Helpers for the webhook service's tests: signed deliveries made from GitHub's own payload
examples, gated repositories behind a local "remote", settings pointing at the emulator, and a
redis-server in a temporary folder.

The payloads are GitHub's (`../shared/fixtures/github/webhooks/`), re-signed with the test
secret; only the fields that must match the scratch repository (names, shas, refs, numbers,
installation) are rewritten.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ghemu
from conftest import GitRepo, run_git

from dlgate.service.settings import Settings

SECRET = "It's a Secret to Everybody (test)"
WEBHOOKS = ghemu.fixtures_dir() / "webhooks"
INSTALLATION = 7

# A gate that runs in about a second: the change policy only.
FAST_CONFIG = "version: 1\nstages: [changes]\n"


def payload(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((WEBHOOKS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(
    event: str, body: bytes, *, delivery: str | None = None, secret: str = SECRET
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
    }


@dataclass
class Remote:
    """A repository as GitHub would hold it: a bare repo (what workers clone and what the
    emulator reads) and a working clone the test commits in and pushes from."""

    full_name: str
    bare: Path
    work: GitRepo

    def push(self, *refspecs: str) -> None:
        self.work.git("push", "--quiet", "--force", "origin", *refspecs)

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for path, text in files.items():
            self.work.write(path, text)
        return self.work.commit(message)


def make_remote(root: Path, full_name: str, files: dict[str, str]) -> Remote:
    """`root/<owner>/<name>.git` with one commit of `files` on main."""
    bare = root / f"{full_name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    run_git(bare.parent, "init", "--quiet", "--bare", "--initial-branch=main", bare.name)
    work = GitRepo.init(root / "work" / full_name)
    for path, text in files.items():
        work.write(path, text)
    work.commit("initial")
    work.git("remote", "add", "origin", str(bare))
    work.git("push", "--quiet", "origin", "main")
    return Remote(full_name, bare, work)


def _repository(remote: Remote, template: dict[str, Any]) -> dict[str, Any]:
    owner, name = remote.full_name.split("/")
    repo = copy.deepcopy(template)
    repo.update(
        full_name=remote.full_name,
        name=name,
        default_branch="main",
        clone_url=f"https://github.com/{remote.full_name}.git",
    )
    repo["owner"]["login"] = owner
    return repo


def pr_payload(
    remote: Remote, *, number: int, head: str, base: str, head_ref: str, action: str = "opened"
) -> dict[str, Any]:
    p = payload("pull_request.opened")
    p["action"] = action
    p["number"] = number
    p["installation"] = {"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    p["repository"] = _repository(remote, p["repository"])
    pr = p["pull_request"]
    pr["number"] = number
    pr["head"].update(sha=head, ref=head_ref)
    pr["base"].update(sha=base, ref="main")
    pr["head"]["repo"] = copy.deepcopy(p["repository"])
    pr["base"]["repo"] = copy.deepcopy(p["repository"])
    return p


def push_payload(remote: Remote, *, ref: str, after: str, before: str) -> dict[str, Any]:
    p = payload("push.new-branch")
    p.update(ref=ref, after=after, before=before, created=False, deleted=False)
    p["installation"] = {"id": INSTALLATION}
    p["repository"] = _repository(remote, p["repository"])
    return p


def merge_group_payload(remote: Remote, *, head: str, base: str, head_ref: str) -> dict[str, Any]:
    p = payload("merge_group.checks_requested")
    p["installation"] = {"id": INSTALLATION}
    p["repository"] = _repository(remote, p["repository"])
    p["merge_group"].update(
        head_sha=head, base_sha=base, head_ref=head_ref, base_ref="refs/heads/main"
    )
    return p


def check_run_payload(
    remote: Remote, *, name: str, head: str, action: str = "rerequested"
) -> dict[str, Any]:
    p = payload("check_run.rerequested")
    p["action"] = action
    p["installation"] = {"id": INSTALLATION}
    p["repository"] = _repository(remote, p["repository"])
    p["check_run"].update(name=name, head_sha=head)
    p["check_run"]["check_suite"].update(head_sha=head, head_branch="feature")
    return p


def check_suite_payload(remote: Remote, *, head: str) -> dict[str, Any]:
    p = payload("check_suite.rerequested")
    p["installation"] = {"id": INSTALLATION}
    p["repository"] = _repository(remote, p["repository"])
    p["check_suite"].update(head_sha=head, head_branch="feature", pull_requests=[])
    return p


def make_settings(
    data_dir: Path, emu: ghemu.GitHubEmulator, remotes: Path, **overrides: Any
) -> Settings:
    private, _public = ghemu.app_keypair()
    values: dict[str, Any] = {
        "app_id": emu.app_id,
        "private_key": private,
        "webhook_secret": SECRET,
        "data_dir": data_dir,
        "github_api_url": emu.base_url,
        "public_url": "http://dlgate.test",
        "clone_url_template": f"file://{remotes}/{{full_name}}.git",
        "lease_s": 3.0,
        "job_timeout_s": 300.0,
        "sandbox_memory": "2g",
        **overrides,
    }
    return Settings(**values)


def emulator() -> ghemu.GitHubEmulator:
    _private, public = ghemu.app_keypair()
    return ghemu.GitHubEmulator(app_id=4242, app_public_key=public)


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def completed_runs(emu: ghemu.GitHubEmulator, full_name: str, head: str) -> dict[str, list[Any]]:
    """check-run name → its runs on `head`, for the dlgate ones."""
    out: dict[str, list[Any]] = {}
    for run in emu.check_runs(full_name, head_sha=head):
        out.setdefault(run["name"], []).append(run)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RedisServer:
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # Persistent as the docs require: every write is in the append-only file before the
        # client hears back, so a restart loses nothing.
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._up, 10, "redis-server to accept connections", 0.05)

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        import pytest

        pytest.skip("redis-server is not installed (scripts/system-deps.sh installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    server = RedisServer(free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
