"""The service's settings: one frozen object, read from the environment and validated once.

Nothing reads the environment after start-up; `Settings.from_env()` reports every problem at
once, each with what to set, and `dlgate serve` exits 2 on them (`SettingsError` is a
`UsageError`). The table of variables is in docs/service.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from dlgate.errors import UsageError

T = TypeVar("T")

Sandbox = Literal["docker", "local"]
SANDBOXES: tuple[Sandbox, ...] = ("docker", "local")

# GitHub caps webhook payloads at 25 MB; anything bigger is not from GitHub.
MAX_BODY_BYTES = 25 * 1024 * 1024

_MEMORY = re.compile(r"^[1-9][0-9]*[bkmg]?$")


class SettingsError(UsageError):
    """The service's configuration is incomplete or invalid; the message says what to set."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass(frozen=True)
class Settings:
    app_id: int
    private_key: str  # PEM text of the App's private key
    webhook_secret: str
    data_dir: Path = Path(".dlgate/service")
    workers: int = 2  # job worker processes `dlgate serve` starts
    web_workers: int = 2  # gunicorn worker processes
    queue_url: str = ""  # empty: sqlite:///<data_dir>/queue.db
    tracking_uri: str = ""  # empty: one SQLite MLflow store per repository under data_dir
    sandbox: Sandbox = "docker"
    sandbox_image: str = "dlgate-runner:latest"
    sandbox_cpus: float = 2.0
    sandbox_memory: str = "4g"
    sandbox_network: str = "none"
    job_timeout_s: float = 3600.0
    max_attempts: int = 3
    lease_s: float = 60.0  # a running job whose worker stops heartbeating is retried after this
    github_api_url: str = "https://api.github.com"
    public_url: str = "http://localhost:8080"  # where GitHub users reach the report pages
    clone_url_template: str = ""  # e.g. "file:///srv/git/{full_name}.git"; empty: the payload's
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise SettingsError(_message(problems), problems)

    @property
    def queue(self) -> str:
        """The queue URL in force: the setting, else the embedded SQLite file."""
        return self.queue_url or f"sqlite:///{(self.data_dir / 'queue.db').resolve()}"

    def details_url(self, job_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/jobs/{job_id}"

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.app_id <= 0:
            out.append("DLGATE_APP_ID must be the App's numeric id (a positive integer)")
        if not self.webhook_secret:
            out.append(
                "DLGATE_WEBHOOK_SECRET is empty: set it to the webhook secret entered when the "
                "GitHub App was created"
            )
        key_problem = _check_private_key(self.private_key)
        if key_problem:
            out.append(key_problem)
        if self.workers < 0:
            out.append("DLGATE_WORKERS must be 0 or more (0: run workers elsewhere)")
        if self.web_workers < 1:
            out.append("DLGATE_WEB_WORKERS must be 1 or more")
        if not self.queue.startswith(("sqlite:///", "redis://", "rediss://", "unix://")):
            out.append(
                f"DLGATE_QUEUE_URL = {self.queue_url!r} is not a queue URL: use "
                "sqlite:///path/queue.db (one machine) or redis://host:6379/0 (several)"
            )
        if self.sandbox not in SANDBOXES:
            out.append(f"DLGATE_SANDBOX = {self.sandbox!r}: use one of {', '.join(SANDBOXES)}")
        if self.sandbox_cpus <= 0:
            out.append("DLGATE_SANDBOX_CPUS must be a positive number of CPUs")
        if not _MEMORY.match(self.sandbox_memory.lower()):
            out.append(
                f"DLGATE_SANDBOX_MEMORY = {self.sandbox_memory!r}: use a size like 4g or 512m"
            )
        if self.job_timeout_s <= 0:
            out.append("DLGATE_JOB_TIMEOUT must be a positive number of seconds")
        if self.max_attempts < 1:
            out.append("DLGATE_MAX_ATTEMPTS must be 1 or more")
        if self.lease_s < 1:
            out.append("DLGATE_LEASE_SECONDS must be at least 1")
        for name, url in (
            ("DLGATE_GITHUB_API_URL", self.github_api_url),
            ("DLGATE_PUBLIC_URL", self.public_url),
        ):
            if not url.startswith(("http://", "https://")):
                out.append(f"{name} = {url!r} must be an http(s) URL")
        if self.clone_url_template and "{full_name}" not in self.clone_url_template:
            out.append(
                "DLGATE_CLONE_URL_TEMPLATE must contain {full_name} (e.g. "
                "file:///srv/git/{full_name}.git)"
            )
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; all problems are reported in one error."""
        env = dict(os.environ if env is None else env)
        problems: list[str] = []
        reader = _Reader(env, problems)
        app_id = reader.get("DLGATE_APP_ID", int, 0, required="the App's numeric id")
        private_key = reader.secret(
            "DLGATE_PRIVATE_KEY", "the App's private key (PEM), from the App's settings page"
        )
        webhook_secret = reader.secret(
            "DLGATE_WEBHOOK_SECRET", "the webhook secret entered when the App was created"
        )
        try:
            settings = cls(
                app_id=app_id,
                private_key=private_key,
                webhook_secret=webhook_secret,
                data_dir=reader.get("DLGATE_DATA_DIR", Path, Path(".dlgate/service")),
                workers=reader.get("DLGATE_WORKERS", int, 2),
                web_workers=reader.get("DLGATE_WEB_WORKERS", int, 2),
                queue_url=reader.get("DLGATE_QUEUE_URL", str, ""),
                tracking_uri=reader.get("MLFLOW_TRACKING_URI", str, ""),
                sandbox=reader.get("DLGATE_SANDBOX", str, "docker"),  # type: ignore[arg-type]
                sandbox_image=reader.get("DLGATE_SANDBOX_IMAGE", str, "dlgate-runner:latest"),
                sandbox_cpus=reader.get("DLGATE_SANDBOX_CPUS", float, 2.0),
                sandbox_memory=reader.get("DLGATE_SANDBOX_MEMORY", str, "4g"),
                sandbox_network=reader.get("DLGATE_SANDBOX_NETWORK", str, "none"),
                job_timeout_s=reader.get("DLGATE_JOB_TIMEOUT", float, 3600.0),
                max_attempts=reader.get("DLGATE_MAX_ATTEMPTS", int, 3),
                lease_s=reader.get("DLGATE_LEASE_SECONDS", float, 60.0),
                github_api_url=reader.get("DLGATE_GITHUB_API_URL", str, "https://api.github.com"),
                public_url=reader.get("DLGATE_PUBLIC_URL", str, "http://localhost:8080"),
                clone_url_template=reader.get("DLGATE_CLONE_URL_TEMPLATE", str, ""),
                environ=env,
            )
        except SettingsError as exc:
            # Problems the reader found (unreadable values, missing secrets) come first.
            named = {p.split()[0] for p in problems}  # one message per variable
            problems += [p for p in exc.problems if p.split()[0] not in named]
            raise SettingsError(_message(problems), problems) from None
        if problems:
            raise SettingsError(_message(problems), problems)
        return settings

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these settings (handed to worker processes)."""
        return {
            "DLGATE_APP_ID": str(self.app_id),
            "DLGATE_PRIVATE_KEY": self.private_key,
            "DLGATE_WEBHOOK_SECRET": self.webhook_secret,
            "DLGATE_DATA_DIR": str(self.data_dir),
            "DLGATE_WORKERS": str(self.workers),
            "DLGATE_WEB_WORKERS": str(self.web_workers),
            "DLGATE_QUEUE_URL": self.queue_url,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "DLGATE_SANDBOX": self.sandbox,
            "DLGATE_SANDBOX_IMAGE": self.sandbox_image,
            "DLGATE_SANDBOX_CPUS": str(self.sandbox_cpus),
            "DLGATE_SANDBOX_MEMORY": self.sandbox_memory,
            "DLGATE_SANDBOX_NETWORK": self.sandbox_network,
            "DLGATE_JOB_TIMEOUT": str(self.job_timeout_s),
            "DLGATE_MAX_ATTEMPTS": str(self.max_attempts),
            "DLGATE_LEASE_SECONDS": str(self.lease_s),
            "DLGATE_GITHUB_API_URL": self.github_api_url,
            "DLGATE_PUBLIC_URL": self.public_url,
            "DLGATE_CLONE_URL_TEMPLATE": self.clone_url_template,
        }


class _Reader:
    def __init__(self, env: Mapping[str, str], problems: list[str]) -> None:
        self.env = env
        self.problems = problems

    def get(self, name: str, kind: Callable[[str], T], default: T, *, required: str = "") -> T:
        raw = self.env.get(name, "").strip()
        if not raw:
            if required:
                self.problems.append(f"{name} is not set: set it to {required}")
            return default
        try:
            return kind(raw)
        except ValueError:
            what = {int: "an integer", float: "a number"}.get(kind, "a valid value")  # type: ignore[call-overload]
            self.problems.append(f"{name} = {raw!r} is not {what}")
            return default

    def secret(self, name: str, what: str) -> str:
        """`NAME` or `NAME_FILE` (a path to read it from, e.g. a Docker secret)."""
        value = self.env.get(name, "")
        path = self.env.get(f"{name}_FILE", "").strip()
        if value and path:
            self.problems.append(f"both {name} and {name}_FILE are set: keep one")
            return ""
        if path:
            try:
                return Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.problems.append(f"{name}_FILE = {path!r} cannot be read ({exc.strerror})")
                return ""
        if not value.strip():
            self.problems.append(f"{name} is not set: set it (or {name}_FILE) to {what}")
        return value.strip()


def _check_private_key(pem: str) -> str:
    if not pem:
        return "DLGATE_PRIVATE_KEY is empty: set it (or DLGATE_PRIVATE_KEY_FILE) to the App's key"
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        return (
            f"DLGATE_PRIVATE_KEY is not a PEM private key ({exc}); download the key from the "
            "App's settings page and pass the whole file, BEGIN and END lines included"
        )
    return ""


def _message(problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"the webhook service cannot start; fix its settings (docs/service.md):\n{lines}"
