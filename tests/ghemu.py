"""A local emulator of the GitHub REST endpoints dlgate uses, for tests and benchmarks.

GitHub cannot be reached from here, so PyGithub talks to this server through `base_url`, the
way it talks to GitHub Enterprise (`http://127.0.0.1:PORT/api/v3`). Every request is checked
against GitHub's own OpenAPI description (`github-openapi-subset.json`, shared fixtures): one
that violates it is answered 422 and recorded in `emu.violations`; every response is checked
too, and one that would violate it is an emulator bug (`EmulatorBug`, raised at exit).

    with GitHubEmulator() as emu:
        emu.add_repo("octo/demo", git_dir=tmp_repo)
        gh = github.Github(base_url=emu.base_url, auth=github.Auth.Token(emu.token),
                           retry=None, seconds_between_requests=None, seconds_between_writes=None)
        ...
        assert [r["conclusion"] for r in emu.check_runs("octo/demo")] == [...]

Contents, refs, compares and pull-request files come from a real git repository (`git_dir`);
check runs, statuses, comments, releases and tokens live in memory. `emu.faults(...)` makes a
fraction of requests fail the way GitHub does (5xx, secondary rate limits with `retry-after`,
a response lost after the write happened, a response slower than the client's timeout).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import json
import math
import os
import random
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import jsonschema
import jsonschema.exceptions
import jwt
import referencing
from referencing.jsonschema import DRAFT4

from dlgate import git as gitcmd
from dlgate.errors import GitError

JSON = Any
PREFIX = "/api/v3"  # GitHub Enterprise's REST prefix; PyGithub handles it like api.github.com
DOCS = "https://docs.github.com/rest"
FAULT_KINDS = ("500", "502", "503", "403-secondary", "429", "lost", "timeout")
_BEFORE = {"500", "502", "503", "403-secondary", "429"}  # refused before any state changes
DEFAULT_PERMISSIONS = {
    "checks": "write",
    "statuses": "write",
    "pull_requests": "write",
    "issues": "write",
    "contents": "write",
    "metadata": "read",
}
# operationId → the token permission it needs (GitHub's "Permissions required for GitHub Apps").
_NEEDS = {
    "checks/create": ("checks", "write"),
    "checks/update": ("checks", "write"),
    "checks/get": ("checks", "read"),
    "checks/list-for-ref": ("checks", "read"),
    "checks/list-annotations": ("checks", "read"),
    "repos/create-commit-status": ("statuses", "write"),
    "pulls/get": ("pull_requests", "read"),
    "pulls/list-files": ("pull_requests", "read"),
    "repos/compare-commits": ("contents", "read"),
    "repos/get-content": ("contents", "read"),
    "git/get-ref": ("contents", "read"),
    "issues/create-comment": ("issues", "write"),
    "issues/list-comments": ("issues", "read"),
    "issues/update-comment": ("issues", "write"),
    "repos/create-release": ("contents", "write"),
    "repos/get-release-by-tag": ("contents", "read"),
    "repos/get": ("metadata", "read"),
    "repos/get-commit": ("contents", "read"),
}
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's id of the empty tree (SHA-1)
_JWT_OPS = {"apps/create-installation-access-token", "apps/get-repo-installation"}

# Not in the subset (the 2021 description was trimmed to the operations listed in SOURCES.md),
# written from docs.github.com "List check run annotations" and its `check-annotation` schema.
_SUPPLEMENT: JSON = {
    "paths": {
        # PyGithub's `repo.get_commit(sha)` fetches this first (e.g. before `create_status`).
        "/repos/{owner}/{repo}/commits/{ref}": {
            "get": {
                "operationId": "repos/get-commit",
                "parameters": [
                    {"$ref": "#/components/parameters/owner"},
                    {"$ref": "#/components/parameters/repo"},
                    {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/commit"}}
                        }
                    }
                },
            }
        },
        "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations": {
            "get": {
                "operationId": "checks/list-annotations",
                "parameters": [
                    {"$ref": "#/components/parameters/owner"},
                    {"$ref": "#/components/parameters/repo"},
                    {"$ref": "#/components/parameters/check-run-id"},
                    {"$ref": "#/components/parameters/per-page"},
                    {"$ref": "#/components/parameters/page"},
                ],
                "responses": {
                    "200": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/check-annotation"},
                                }
                            }
                        }
                    }
                },
            }
        },
    },
    "schemas": {
        "check-annotation": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "start_line": {"type": "integer"},
                "end_line": {"type": "integer"},
                "start_column": {"type": "integer", "nullable": True},
                "end_column": {"type": "integer", "nullable": True},
                "annotation_level": {"type": "string", "nullable": True},
                "title": {"type": "string", "nullable": True},
                "message": {"type": "string", "nullable": True},
                "raw_details": {"type": "string", "nullable": True},
                "blob_href": {"type": "string"},
            },
            "required": [
                "path",
                "blob_href",
                "start_line",
                "end_line",
                "start_column",
                "end_column",
                "annotation_level",
                "title",
                "message",
                "raw_details",
            ],
        }
    },
}


def fixtures_dir() -> Path:
    """GitHub's fixtures: $DLGATE_GITHUB_FIXTURES, tests/fixtures/github, or ../shared/…."""
    here = Path(__file__).resolve().parent
    candidates = [here / "fixtures" / "github", here.parents[1] / "shared" / "fixtures" / "github"]
    if env := os.environ.get("DLGATE_GITHUB_FIXTURES"):
        candidates.insert(0, Path(env))
    for c in candidates:
        if (c / "github-openapi-subset.json").is_file():
            return c
    raise FileNotFoundError(
        "github-openapi-subset.json not found in "
        + ", ".join(map(str, candidates))
        + "; set DLGATE_GITHUB_FIXTURES to the folder that holds it"
    )


class EmulatorBug(AssertionError):
    """The emulator produced a response that GitHub's description does not allow."""


# ---------------------------------------------------------------------------- the description

_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    # jsonschema skips date-time without the optional rfc3339-validator; GitHub wants ISO 8601.
    return not isinstance(value, str) or (
        "T" in value and datetime.fromisoformat(value).tzinfo is not None
    )


@_FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    # RFC 3986 absolute URI: a scheme, then no whitespace (GitHub's `git:host/path` is one).
    return not isinstance(value, str) or bool(re.fullmatch(r"[A-Za-z][\w+.-]*:\S+", value))


def _nullable(node: JSON) -> JSON:
    """OpenAPI 3.0's `nullable: true` → JSON Schema (jsonschema does not know `nullable`)."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items()}
    if out.pop("nullable", False) is not True:
        return out
    if "$ref" in out:  # siblings of $ref are ignored in 3.0, so wrap
        return {"anyOf": [{"$ref": out["$ref"]}, {"type": "null"}]}
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    if isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        return out
    return {"anyOf": [out, {"type": "null"}]}


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    id: str
    regex: re.Pattern[str]
    params: tuple[JSON, ...]
    body: str | None  # JSON pointer of the request body schema
    body_required: bool
    responses: Mapping[str, str | None]  # status → pointer of the JSON schema (None: no body)


class Spec:
    """GitHub's OpenAPI subset, with `$ref`s resolved by `referencing` for jsonschema."""

    URI = "urn:github-openapi-subset"

    def __init__(self, document: Mapping[str, Any]) -> None:
        doc = copy.deepcopy(dict(document))
        doc["paths"].update(_SUPPLEMENT["paths"])
        doc["components"]["schemas"].update(_SUPPLEMENT["schemas"])
        self.doc: JSON = _nullable(doc)
        resource = DRAFT4.create_resource(self.doc)
        self._registry: referencing.Registry[Any] = referencing.Registry().with_resource(
            self.URI, resource
        )
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self.operations = [
            self._operation(method, template, op)
            for template, item in self.doc["paths"].items()
            for method, op in item.items()
            if method in ("get", "post", "patch", "put", "delete")
        ]

    def resolve(self, node: JSON, pointer: str) -> tuple[JSON, str]:
        while isinstance(node, dict) and "$ref" in node:
            pointer = node["$ref"].removeprefix("#")
            node = self.doc
            for part in pointer.strip("/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer

    def _operation(self, method: str, template: str, op: JSON) -> Operation:
        base = f"/paths/{_esc(template)}/{method}"
        params = tuple(self.resolve(p, "")[0] for p in op.get("parameters", []))
        multi = {p["name"] for p in params if p.get("x-multi-segment")}
        regex = re.sub(
            r"\{(\w+)\}",
            lambda m: f"(?P<{m[1]}>.+)" if m[1] in multi else f"(?P<{m[1]}>[^/]+)",
            template,
        )
        body, body_ptr = self.resolve(op.get("requestBody"), f"{base}/requestBody")
        responses: dict[str, str | None] = {}
        for status, described in op.get("responses", {}).items():
            resp, ptr = self.resolve(described, f"{base}/responses/{status}")
            has_json = "application/json" in resp.get("content", {})
            responses[status] = f"{ptr}/content/application~1json/schema" if has_json else None
        return Operation(
            method=method.upper(),
            template=template,
            id=op["operationId"],
            regex=re.compile(regex),
            params=params,
            body=f"{body_ptr}/content/application~1json/schema" if body else None,
            body_required=bool(body and body.get("required")),
            responses=responses,
        )

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations:
            if op.method == method and (m := op.regex.fullmatch(path)):
                return op, m.groupdict()
        return None

    def errors(self, pointer: str, instance: JSON) -> list[str]:
        if pointer not in self._validators:
            self._validators[pointer] = jsonschema.Draft4Validator(
                {"$ref": f"{self.URI}#{pointer}"},
                registry=self._registry,
                format_checker=_FORMATS,
            )
        out = []
        for e in self._validators[pointer].iter_errors(instance):
            msg = f"{e.json_path}: {e.message}"
            if e.context:  # anyOf/oneOf: say which branch came closest and why it failed
                best = jsonschema.exceptions.best_match(e.context)
                if best is not None:
                    msg += f" ({best.json_path}: {best.message})"
            out.append(msg)
        return out

    def param_errors(self, op: Operation, values: Mapping[str, str], where: str) -> list[str]:
        out = []
        for p in op.params:
            if p["in"] != where:
                continue
            if p["name"] not in values:
                if p.get("required"):
                    out.append(f"{where} parameter {p['name']} is required")
                continue
            raw = values[p["name"]]
            value: JSON = raw
            kind = p.get("schema", {}).get("type")
            if kind == "integer":
                value = int(raw) if re.fullmatch(r"-?\d+", raw) else raw
            elif kind == "boolean":
                value = {"true": True, "false": False}.get(raw, raw)
            validator = jsonschema.Draft4Validator(p.get("schema", {}), format_checker=_FORMATS)
            out += [
                f"{where} parameter {p['name']}={raw!r}: {e.message}"
                for e in validator.iter_errors(value)
            ]
        return out


@functools.cache
def load_spec() -> Spec:
    path = fixtures_dir() / "github-openapi-subset.json"
    return Spec(json.loads(path.read_text(encoding="utf-8")))


def app_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) of an RSA key for a test GitHub App; one per process."""
    return _keypair()


@functools.cache
def _keypair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


# ---------------------------------------------------------------------------- records and state


@dataclass(frozen=True)
class Violation:
    method: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.message}"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # without the /api/v3 prefix
    query: Mapping[str, str]
    body: JSON
    status: int  # what was (or would have been) answered; 0 for a lost response
    fault: str | None


@dataclass
class _Faults:
    rate: float
    kinds: tuple[str, ...]
    rng: random.Random
    retry_after: int
    delay_s: float
    match: re.Pattern[str] | None
    remaining: int | None


@dataclass
class _Token:
    permissions: dict[str, str]
    repos: set[str] | None  # None: every repository
    login: str
    expires_at: datetime | None = None
    remaining: int = 5000
    reset: int = 0


@dataclass
class _Pull:
    number: int
    id: int
    head: str
    base: str
    title: str
    body: str
    user: str
    head_repo: str
    state: str
    draft: bool


@dataclass
class _Repo:
    full_name: str
    id: int
    default_branch: str
    private: bool
    git_dir: Path | None
    installation_id: int
    check_runs: dict[int, JSON] = field(default_factory=dict)
    annotations: dict[int, list[JSON]] = field(default_factory=dict)
    statuses: list[JSON] = field(default_factory=list)
    comments: dict[int, tuple[int, JSON]] = field(default_factory=dict)  # id → (issue, comment)
    pulls: dict[int, _Pull] = field(default_factory=dict)
    releases: list[JSON] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]


@dataclass
class _Call:
    op: Operation
    params: dict[str, str]
    query: dict[str, str]
    body: JSON
    path: str
    repo: _Repo | None
    token: _Token | None


@dataclass
class _Reply:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)


class _Refusal(Exception):
    """A GitHub error answer. `violation`: the client sent what GitHub's rules forbid."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: Sequence[JSON] = (),
        violation: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors)
        self.violation = violation
        self.headers = dict(headers or {})


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, ident: int) -> str:
    return base64.b64encode(f"{len(kind):02d}:{kind}{ident}".encode()).decode()


# ---------------------------------------------------------------------------- the emulator


class GitHubEmulator:
    """See the module docstring. Thread-safe; one server per instance."""

    def __init__(
        self,
        *,
        app_id: int = 1,
        app_slug: str = "dlgate",
        app_public_key: str | None = None,
        rate_limit: int = 5000,
        spec: Spec | None = None,
    ) -> None:
        self.spec = spec or load_spec()
        self.app_id = app_id
        self.app_slug = app_slug
        self.app_public_key = app_public_key
        self.rate_limit = rate_limit
        self.violations: list[Violation] = []
        self.requests: list[Recorded] = []
        self.injected: list[Recorded] = []
        self.bugs: list[str] = []
        self._repos: dict[str, _Repo] = {}
        self._tokens: dict[str, _Token] = {}
        self._ids = iter(range(1000, 10**9))
        self._faults: _Faults | None = None
        self._latency_s = 0.0
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.token = self.add_token(login="github-actions[bot]")

    # -- lifecycle

    def start(self) -> GitHubEmulator:
        server = _Server((self.host, 0), _Handler)
        server.emulator = self
        self._server, self.port = server, server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="ghemu", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GitHubEmulator:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()
        if exc_type is None:
            self.raise_for_problems()

    def raise_for_problems(self) -> None:
        """Fail when a response was invalid or a request violated the description and the test
        did not take the violation (`take_violations()`) to assert on it."""
        if self.bugs:
            raise EmulatorBug("\n".join(self.bugs))
        if self.violations:
            raise AssertionError(
                "requests violated GitHub's description:\n"
                + "\n".join(f"  {v}" for v in self.violations)
            )

    def take_violations(self) -> list[Violation]:
        with self._lock:
            taken, self.violations = self.violations, []
            return taken

    @property
    def base_url(self) -> str:
        """What PyGithub's `base_url` should be."""
        return f"http://{self.host}:{self.port}{PREFIX}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- seeding

    def add_repo(
        self,
        full_name: str,
        *,
        git_dir: Path | None = None,
        default_branch: str = "main",
        private: bool = False,
        installation_id: int = 1,
    ) -> None:
        """A repository. With `git_dir`, contents/refs/compare/pull files come from that real
        repository and head SHAs must exist in it; without, any SHA is accepted."""
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", full_name):
            raise ValueError(f"repository names are owner/name, got {full_name!r}")
        with self._lock:
            self._repos[full_name] = _Repo(
                full_name, next(self._ids), default_branch, private, git_dir, installation_id
            )

    def add_pull(
        self,
        full_name: str,
        number: int,
        *,
        head: str,
        base: str,
        title: str = "A pull request",
        body: str = "",
        user: str = "octocat",
        head_repo: str | None = None,
        state: str = "open",
        draft: bool = False,
    ) -> None:
        """A pull request whose `head` and `base` are revisions in the repository's `git_dir`
        (resolved when asked, so new commits move it). `head_repo` makes it a fork's PR."""
        with self._lock:
            repo = self._repos[full_name]
            if repo.git_dir is None:
                raise ValueError(f"{full_name} has no git_dir; pull requests need one")
            repo.pulls[number] = _Pull(
                number,
                next(self._ids),
                head,
                base,
                title,
                body,
                user,
                head_repo or full_name,
                state,
                draft,
            )

    def add_token(
        self,
        token: str | None = None,
        *,
        permissions: Mapping[str, str] | None = None,
        repos: Sequence[str] | None = None,
        login: str = "dlgate[bot]",
    ) -> str:
        """Register a token (default: a new `ghs_…`). A fork PR's GITHUB_TOKEN is
        `permissions={k: "read" for k in DEFAULT_PERMISSIONS}`."""
        token = token or "ghs_" + secrets.token_urlsafe(27)
        with self._lock:
            self._tokens[token] = _Token(
                dict(DEFAULT_PERMISSIONS if permissions is None else permissions),
                set(repos) if repos is not None else None,
                login,
                reset=int(time.time()) + 3600,
                remaining=self.rate_limit,
            )
        return token

    # -- faults

    def faults(
        self,
        rate: float = 0.3,
        kinds: Sequence[str] = ("500", "502", "403-secondary", "429"),
        *,
        seed: int = 0,
        retry_after: int = 1,
        delay_s: float = 2.0,
        match: str | None = None,
        times: int | None = None,
    ) -> None:
        """Fail `rate` of the requests (those whose "METHOD /path" matches the regex `match`),
        at most `times` in all, with a kind drawn from `kinds`:
        `500`/`502`/`503` and `403-secondary`/`429` (with `retry-after: {retry_after}`) are
        answered before anything changes; `lost` does the work, then drops the connection
        unanswered; `timeout` does the work and answers only after `delay_s`."""
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"fault kinds are {FAULT_KINDS}, got {sorted(unknown) or kinds}")
        with self._lock:
            self._faults = _Faults(
                rate,
                tuple(kinds),
                random.Random(seed),
                retry_after,
                delay_s,
                re.compile(match) if match else None,
                times,
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = None

    def latency(self, seconds: float) -> None:
        """Delay every answer by `seconds` (a slow GitHub)."""
        self._latency_s = seconds

    # -- inspection (copies of the objects GitHub would return)

    def check_runs(
        self, full_name: str, *, head_sha: str | None = None, name: str | None = None
    ) -> list[JSON]:
        with self._lock:
            runs = self._repos[full_name].check_runs.values()
            return [
                copy.deepcopy(r)
                for r in runs
                if (head_sha is None or r["head_sha"] == head_sha)
                and (name is None or r["name"] == name)
            ]

    def annotations(self, full_name: str, check_run_id: int) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(self._repos[full_name].annotations.get(check_run_id, []))

    def statuses(self, full_name: str) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(self._repos[full_name].statuses)

    def comments(self, full_name: str, issue_number: int | None = None) -> list[JSON]:
        with self._lock:
            items = self._repos[full_name].comments.values()
            return [copy.deepcopy(c) for n, c in items if issue_number in (None, n)]

    def releases(self, full_name: str) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(self._repos[full_name].releases)

    def count(self, method: str, path_regex: str = ".*") -> int:
        """How many requests matching `method` and `path_regex` arrived (faulted ones too)."""
        rx = re.compile(path_regex)
        return sum(1 for r in self.requests if r.method == method and rx.fullmatch(r.path))

    # -- dispatch (called by the HTTP handler threads)

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[_Reply | None, float]:
        """The answer (None: drop the connection) and how long to wait before sending it."""
        split = urlsplit(target)
        path = unquote(split.path).removeprefix(PREFIX)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        with self._lock:
            body: JSON = None
            fault: str | None = None
            try:
                body = json.loads(raw) if raw else None
                reply, fault = self._dispatch(method, path, query, headers, body)
            except _Refusal as r:
                reply = self._error(r.status, r.message, r.errors)
                reply.headers.update(r.headers)
                if r.violation:
                    self.violations.append(Violation(method, path, r.message))
            except json.JSONDecodeError as e:
                reply = self._error(400, "Problems parsing JSON")
                self.violations.append(Violation(method, path, f"body is not JSON: {e}"))
            except Exception as e:  # an emulator bug: answer 500 and fail the test at exit
                self.bugs.append(f"{method} {path}: {type(e).__name__}: {e}")
                reply = self._error(500, f"emulator bug: {e}")
            status = 0 if fault == "lost" else reply.status
            record = Recorded(method, path, query, body, status, fault)
            self.requests.append(record)
            if fault:
                self.injected.append(record)
            delay = self._latency_s + (
                self._faults.delay_s if fault == "timeout" and self._faults else 0.0
            )
        return (None if fault == "lost" else reply), delay

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str], body: JSON
    ) -> tuple[_Reply, str | None]:
        """Route, authenticate, validate, maybe inject a fault, answer. `body`: None if absent."""
        found = self.spec.match(method, path)
        if found is None:
            raise _Refusal(
                404,
                f"Not Found (not an operation of the described API: {method} {path})",
                violation=True,
            )
        op, params = found
        token = self._authenticate(op, headers)
        problems = self.spec.param_errors(op, params, "path")
        problems += self.spec.param_errors(op, query, "query")
        if op.body is not None and (body is not None or op.body_required):
            problems += self.spec.errors(op.body, body)
        elif body is not None and op.body is None:
            problems.append("this operation takes no request body")
        if problems:
            raise _Refusal(
                422,
                "Invalid request.\n\n" + "\n".join(problems),
                errors=[{"code": "invalid", "message": p} for p in problems],
                violation=True,
            )
        repo = self._repo(params, token) if "owner" in params else None
        fault = self._draw_fault(method, path)
        if fault in _BEFORE:
            return self._fault_reply(fault), fault
        handler: Callable[[_Call], _Reply] = getattr(self, "_" + re.sub(r"\W", "_", op.id))
        reply = handler(_Call(op, params, query, body, path, repo, token))
        if token is not None:
            reply.headers.update(self._rate_headers(token))
        self._check_response(op, reply)
        return reply, fault

    def _authenticate(self, op: Operation, headers: Mapping[str, str]) -> _Token | None:
        scheme, _, credential = headers.get("Authorization", "").partition(" ")
        if op.id in _JWT_OPS:
            self._verify_jwt(scheme, credential)
            return None
        token = self._tokens.get(credential) if scheme.lower() in ("token", "bearer") else None
        if token is None:
            raise _Refusal(401, "Bad credentials" if credential else "Requires authentication")
        if token.expires_at is not None and token.expires_at < _now():
            raise _Refusal(401, "Bad credentials")
        if token.remaining <= 0 and time.time() < token.reset:
            raise _Refusal(
                403,
                "API rate limit exceeded for installation ID 1.",
                headers=self._rate_headers(token),
            )
        if time.time() >= token.reset:
            token.remaining, token.reset = self.rate_limit, int(time.time()) + 3600
        token.remaining -= 1
        perm, level = _NEEDS[op.id]
        granted = token.permissions.get(perm)
        if op.id.startswith("issues/") and granted != "write":
            granted = token.permissions.get("pull_requests", granted)  # PR comments
        if granted is None or (level == "write" and granted != "write"):
            raise _Refusal(403, "Resource not accessible by integration")
        return token

    def _verify_jwt(self, scheme: str, credential: str) -> None:
        if scheme != "Bearer" or not credential:
            raise _Refusal(401, "A JSON web token could not be decoded")
        if self.app_public_key is None:
            raise _Refusal(401, "emulator: pass app_public_key= to accept app JWTs")
        try:
            if jwt.get_unverified_header(credential).get("alg") != "RS256":
                raise _Refusal(401, "A JSON web token could not be decoded (alg must be RS256)")
            claims = jwt.decode(
                credential,
                self.app_public_key,
                algorithms=["RS256"],
                options={"require": ["exp", "iat", "iss"]},
                leeway=60,  # GitHub tolerates clock drift; PyGithub backdates iat by 60 s
            )
        except jwt.PyJWTError as e:
            raise _Refusal(401, f"A JSON web token could not be decoded: {e}") from None
        if str(claims["iss"]) != str(self.app_id):
            raise _Refusal(401, f"'Issuer' claim ('iss') must be {self.app_id}")
        if int(claims["exp"]) - int(claims["iat"]) > 660:
            raise _Refusal(401, "'Expiration time' claim ('exp') is too far in the future")

    def _repo(self, params: Mapping[str, str], token: _Token | None) -> _Repo:
        full = f"{params['owner']}/{params['repo']}"
        repo = self._repos.get(full)
        if repo is None or (token and token.repos is not None and full not in token.repos):
            raise _Refusal(404, "Not Found")
        return repo

    def _draw_fault(self, method: str, path: str) -> str | None:
        f = self._faults
        if f is None or f.remaining == 0:
            return None
        if f.match is not None and not f.match.search(f"{method} {path}"):
            return None
        if f.rng.random() >= f.rate:
            return None
        if f.remaining is not None:
            f.remaining -= 1
        return f.rng.choice(f.kinds)

    def _fault_reply(self, kind: str) -> _Reply:
        if kind in ("403-secondary", "429"):
            reply = self._error(
                int(kind[:3]),
                "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again.",
            )
            reply.headers["retry-after"] = str(self._faults.retry_after if self._faults else 60)
            return reply
        return self._error(
            int(kind),
            {"500": "Server Error", "502": "Server Error"}.get(kind, "Service Unavailable"),
        )

    def _rate_headers(self, token: _Token) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(token.remaining, 0)),
            "x-ratelimit-used": str(self.rate_limit - max(token.remaining, 0)),
            "x-ratelimit-reset": str(token.reset),
            "x-ratelimit-resource": "core",
        }

    def _error(self, status: int, message: str, errors: Sequence[JSON] = ()) -> _Reply:
        body: JSON = {"message": message, "documentation_url": DOCS}
        if errors:
            body["errors"] = list(errors)
        return _Reply(status, body)

    def _check_response(self, op: Operation, reply: _Reply) -> None:
        key = str(reply.status)
        if key in op.responses:
            pointer = op.responses[key]
        elif reply.status >= 400:
            pointer = "/components/schemas/basic-error"  # GitHub's shape for any error
        else:
            raise EmulatorBug(f"{op.id} may not answer {reply.status}")
        if pointer is None:
            if reply.body is not None:
                raise EmulatorBug(f"{op.id} {key} has no body in the description")
            return
        if problems := self.spec.errors(pointer, reply.body):
            raise EmulatorBug(f"{op.id} {key} response: " + "; ".join(problems[:5]))

    # -- object builders

    def _user(self, login: str, kind: str = "User") -> JSON:
        api, web = self.base_url, self.web_url
        u = f"{api}/users/{quote(login)}"
        ident = 1 + sum(map(ord, login))
        return {
            "login": login,
            "id": ident,
            "node_id": _node_id(kind, ident),
            "avatar_url": f"{web}/avatars/{quote(login)}",
            "gravatar_id": "",
            "url": u,
            "html_url": f"{web}/{quote(login)}",
            "followers_url": f"{u}/followers",
            "following_url": f"{u}/following{{/other_user}}",
            "gists_url": f"{u}/gists{{/gist_id}}",
            "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{u}/subscriptions",
            "organizations_url": f"{u}/orgs",
            "repos_url": f"{u}/repos",
            "events_url": f"{u}/events{{/privacy}}",
            "received_events_url": f"{u}/received_events",
            "type": kind,
            "site_admin": False,
        }

    def _example(self, name: str, full_name: str = "octocat/Hello-World") -> JSON:
        """GitHub's example object with its URLs pointed at this server."""
        text = json.dumps(self.spec.doc["components"]["examples"][name]["value"])
        text = text.replace("https://api.github.com", self.base_url)
        text = text.replace("https://uploads.github.com", self.base_url)
        text = text.replace("https://github.com", self.web_url)
        text = text.replace("octocat/Hello-World", full_name)
        return json.loads(text)

    def _repo_json(self, repo: _Repo | str) -> JSON:
        full = repo if isinstance(repo, str) else repo.full_name
        known = self._repos.get(full)
        out = self._example("full-repository-default-response", full)
        out.update(
            id=known.id if known else 1 + sum(map(ord, full)),
            name=full.split("/")[1],
            full_name=full,
            owner=self._user(full.split("/")[0]),
            private=bool(known and known.private),
            visibility="private" if known and known.private else "public",
            default_branch=known.default_branch if known else "main",
            fork=known is None,
            description="",
            mirror_url=None,
        )
        for key in ("parent", "source", "template_repository"):  # not a fork, not a template
            out.pop(key, None)
        out["node_id"] = _node_id("Repository", out["id"])
        return out

    def _app_json(self) -> JSON:
        app = self._example("check-run")["app"]
        app.update(id=self.app_id, slug=self.app_slug, name=self.app_slug)
        app["node_id"] = _node_id("Integration", self.app_id)
        return app

    def _git(self, repo: _Repo, *args: str) -> str:
        if repo.git_dir is None:
            raise _Refusal(404, "Not Found")
        return gitcmd.git(repo.git_dir, *args)

    def _sha(self, repo: _Repo, rev: str) -> str:
        if repo.git_dir is None:
            raise _Refusal(404, "Not Found")
        try:
            return gitcmd.resolve(repo.git_dir, rev)
        except GitError:
            raise _Refusal(404, "Not Found") from None

    def _commit_json(self, repo: _Repo, sha: str) -> JSON:
        fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
        h, tree, parents, an, ae, ad, cn, ce, cd, msg = self._git(
            repo, "show", "-s", f"--format={fmt}", sha
        ).split("\0", 9)
        api, web, full = self.base_url, self.web_url, repo.full_name

        def utc(t: str) -> str:
            return _iso(datetime.fromisoformat(t))

        return {
            "url": f"{api}/repos/{full}/commits/{h}",
            "sha": h,
            "node_id": _node_id("Commit", int(h[:8], 16)),
            "html_url": f"{web}/{full}/commit/{h}",
            "comments_url": f"{api}/repos/{full}/commits/{h}/comments",
            "commit": {
                "url": f"{api}/repos/{full}/git/commits/{h}",
                "author": {"name": an, "email": ae, "date": utc(ad)},
                "committer": {"name": cn, "email": ce, "date": utc(cd)},
                "message": msg.rstrip("\n"),
                "comment_count": 0,
                "tree": {"sha": tree, "url": f"{api}/repos/{full}/git/trees/{tree}"},
            },
            "author": None,  # GitHub: null when the e-mail maps to no GitHub account
            "committer": None,
            "parents": [
                {
                    "sha": p,
                    "url": f"{api}/repos/{full}/commits/{p}",
                    "html_url": f"{web}/{full}/commit/{p}",
                }
                for p in parents.split()
            ],
        }

    def _diff_json(self, repo: _Repo, base: str, head: str) -> list[JSON]:
        assert repo.git_dir is not None
        counts: dict[str, tuple[int, int]] = {}
        parts = self._git(repo, "diff", "--numstat", "-z", "-M", base, head).split("\0")
        i = 0
        while i < len(parts) and parts[i]:
            added, deleted, path = parts[i].split("\t", 2)
            if not path:  # a rename: "a\td\t\0old\0new"
                path, i = parts[i + 2], i + 3
            else:
                i += 1
            counts[path] = (
                int(added) if added != "-" else 0,
                int(deleted) if deleted != "-" else 0,
            )
        blobs = {**gitcmd.blob_ids(repo.git_dir, base), **gitcmd.blob_ids(repo.git_dir, head)}
        words = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied"}
        api, web, full = self.base_url, self.web_url, repo.full_name
        out = []
        for change in gitcmd.changed_files(repo.git_dir, base, head):
            add, rem = counts.get(change.path, (0, 0))
            entry: JSON = {
                "sha": blobs.get(change.path, "0" * 40),
                "filename": change.path,
                "status": words.get(change.status, "changed"),
                "additions": add,
                "deletions": rem,
                "changes": add + rem,
                "blob_url": f"{web}/{full}/blob/{head}/{quote(change.path)}",
                "raw_url": f"{web}/{full}/raw/{head}/{quote(change.path)}",
                "contents_url": f"{api}/repos/{full}/contents/{quote(change.path)}?ref={head}",
            }
            if change.old_path:
                entry["previous_filename"] = change.old_path
            out.append(entry)
        return out

    def _check_run_json(self, repo: _Repo, run: JSON) -> JSON:
        """The stored run as GitHub answers it (`pull_requests`: open PRs whose head it is)."""
        out = copy.deepcopy(run)
        out["pull_requests"] = [
            {
                "url": f"{self.base_url}/repos/{repo.full_name}/pulls/{p.number}",
                "id": p.id,
                "number": p.number,
                "head": {
                    "ref": p.head,
                    "sha": self._sha(repo, p.head),
                    "repo": {
                        "id": repo.id,
                        "url": run["url"].split("/check-runs")[0],
                        "name": repo.full_name.split("/")[1],
                    },
                },
                "base": {
                    "ref": p.base,
                    "sha": self._sha(repo, p.base),
                    "repo": {
                        "id": repo.id,
                        "url": run["url"].split("/check-runs")[0],
                        "name": repo.full_name.split("/")[1],
                    },
                },
            }
            for p in repo.pulls.values()
            if p.state == "open"
            and p.head_repo == repo.full_name
            and self._sha(repo, p.head) == run["head_sha"]
        ]
        return out

    def _page(self, items: list[JSON], call: _Call) -> tuple[list[JSON], dict[str, str]]:
        per_page = min(int(call.query.get("per_page", 30)), 100)
        page = max(int(call.query.get("page", 1)), 1)
        last = max(1, math.ceil(len(items) / per_page))
        links = []

        def url(n: int) -> str:
            return f"{self.base_url}{quote(call.path)}?" + urlencode({**call.query, "page": n})

        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            links += [f'<{url(1)}>; rel="first"', f'<{url(page - 1)}>; rel="prev"']
        headers = {"Link": ", ".join(links)} if links else {}
        return items[(page - 1) * per_page : page * per_page], headers

    # -- operations: check runs

    def _checks_create(self, call: _Call) -> _Reply:
        repo, b = call.repo, call.body
        assert repo is not None
        self._require_commit(repo, b["head_sha"])
        ident = next(self._ids)
        url = f"{self.base_url}/repos/{repo.full_name}/check-runs/{ident}"
        run: JSON = {
            "id": ident,
            "head_sha": b["head_sha"],
            "node_id": _node_id("CheckRun", ident),
            "external_id": b.get("external_id", ""),
            "url": url,
            "html_url": f"{self.web_url}/{repo.full_name}/runs/{ident}",
            "details_url": b.get("details_url", f"{self.web_url}/apps/{self.app_slug}"),
            "status": "queued",
            "conclusion": None,
            "started_at": b.get("started_at", _iso(_now())),
            "completed_at": None,
            "output": {
                "title": None,
                "summary": None,
                "text": None,
                "annotations_count": 0,
                "annotations_url": f"{url}/annotations",
            },
            "name": b["name"],
            "check_suite": {"id": 1 + sum(map(ord, b["head_sha"]))},
            "app": self._app_json(),
            "pull_requests": [],
        }
        repo.check_runs[ident] = run
        repo.annotations[ident] = []
        self._apply_update(repo, run, b)
        reply = _Reply(201, self._check_run_json(repo, run))
        reply.headers["Location"] = url
        return reply

    def _checks_update(self, call: _Call) -> _Reply:
        repo = call.repo
        assert repo is not None
        run = repo.check_runs.get(int(call.params["check_run_id"]))
        if run is None:
            raise _Refusal(404, "Not Found")
        self._apply_update(repo, run, call.body)
        return _Reply(200, self._check_run_json(repo, run))

    def _apply_update(self, repo: _Repo, run: JSON, b: JSON) -> None:
        for key in ("name", "details_url", "external_id", "started_at", "actions"):
            if key in b:
                run[key] = b[key]
        if b.get("status") in ("queued", "in_progress"):
            run.update(status=b["status"], conclusion=None, completed_at=None)
        if "conclusion" in b:  # GitHub: a conclusion completes the run
            run.update(status="completed", conclusion=b["conclusion"])
            run["completed_at"] = b.get("completed_at", _iso(_now()))
        out = b.get("output", {})
        for key in ("title", "summary", "text"):
            if key in out:
                run["output"][key] = out[key]
        for a in out.get("annotations", []):
            problem = self._annotation_problem(a)
            if problem:
                raise _Refusal(422, f"Invalid annotation: {problem}", violation=True)
        for a in out.get("annotations", []):
            repo.annotations[run["id"]].append(
                {
                    "path": a["path"],
                    "start_line": a["start_line"],
                    "end_line": a["end_line"],
                    "start_column": a.get("start_column"),
                    "end_column": a.get("end_column"),
                    "annotation_level": a["annotation_level"],
                    "title": a.get("title"),
                    "message": a["message"],
                    "raw_details": a.get("raw_details"),
                    "blob_href": f"{self.web_url}/{repo.full_name}/blob/{run['head_sha']}/"
                    + quote(a["path"]),
                }
            )
        run["output"]["annotations_count"] = len(repo.annotations[run["id"]])

    @staticmethod
    def _annotation_problem(a: JSON) -> str | None:
        # Rules GitHub states in the description's prose rather than its schema.
        if a["start_line"] < 1 or a["end_line"] < a["start_line"]:
            return f"{a['path']}: lines {a['start_line']}-{a['end_line']} are not a range"
        if ("start_column" in a or "end_column" in a) and a["start_line"] != a["end_line"]:
            return f"{a['path']}: columns are only allowed on a single line"
        if len(a.get("title", "")) > 255:
            return f"{a['path']}: title is longer than 255 characters"
        for key in ("message", "raw_details"):
            if len(a.get(key, "").encode()) > 64 * 1024:
                return f"{a['path']}: {key} is larger than 64 KB"
        return None

    def _require_commit(self, repo: _Repo, sha: str) -> None:
        if repo.git_dir is None:
            ok = bool(re.fullmatch(r"[0-9a-f]{40}", sha))
        else:
            ok = gitcmd.git(repo.git_dir, "cat-file", "-t", sha, check=False).strip() == "commit"
        if not ok:
            raise _Refusal(422, f"No commit found for SHA: {sha}", violation=True)

    def _checks_get(self, call: _Call) -> _Reply:
        assert call.repo is not None
        run = call.repo.check_runs.get(int(call.params["check_run_id"]))
        if run is None:
            raise _Refusal(404, "Not Found")
        return _Reply(200, self._check_run_json(call.repo, run))

    def _checks_list_for_ref(self, call: _Call) -> _Reply:
        repo, q = call.repo, call.query
        assert repo is not None
        ref = call.params["ref"]
        sha = ref if repo.git_dir is None else self._sha(repo, ref)
        runs = [r for r in repo.check_runs.values() if r["head_sha"] == sha]
        runs = [r for r in runs if q.get("check_name") in (None, r["name"])]
        runs = [r for r in runs if q.get("status") in (None, r["status"])]
        if q.get("app_id") not in (None, str(self.app_id)):
            runs = []
        if q.get("filter", "latest") == "latest":  # the newest run of each name
            runs = list({r["name"]: r for r in sorted(runs, key=lambda r: r["id"])}.values())
        runs.sort(key=lambda r: -r["id"])
        page, headers = self._page(runs, call)
        body = {
            "total_count": len(runs),
            "check_runs": [self._check_run_json(repo, r) for r in page],
        }
        return _Reply(200, body, headers)

    def _checks_list_annotations(self, call: _Call) -> _Reply:
        assert call.repo is not None
        ident = int(call.params["check_run_id"])
        if ident not in call.repo.check_runs:
            raise _Refusal(404, "Not Found")
        page, headers = self._page(call.repo.annotations[ident], call)
        return _Reply(200, copy.deepcopy(page), headers)

    # -- operations: statuses, pulls, compare, comments

    def _repos_create_commit_status(self, call: _Call) -> _Reply:
        repo, b = call.repo, call.body
        assert repo is not None
        self._require_commit(repo, call.params["sha"])
        ident = next(self._ids)
        now = _iso(_now())
        status = {
            "url": f"{self.base_url}/repos/{repo.full_name}/statuses/{call.params['sha']}",
            "avatar_url": f"{self.web_url}/avatars/{self.app_slug}",
            "id": ident,
            "node_id": _node_id("StatusContext", ident),
            "state": b["state"],
            # The description types both as plain strings (real GitHub sends null).
            "description": b.get("description", ""),
            "target_url": b.get("target_url", ""),
            "context": b.get("context", "default"),
            "created_at": now,
            "updated_at": now,
            "creator": self._user(call.token.login if call.token else "ghost", "Bot"),
        }
        repo.statuses.append(status)
        return _Reply(201, copy.deepcopy(status), {"Location": status["url"]})

    def _repos_get_commit(self, call: _Call) -> _Reply:
        repo = call.repo
        assert repo is not None
        sha = self._sha(repo, call.params["ref"])  # 404 without a git_dir
        out = self._commit_json(repo, sha)
        parent = out["parents"][0]["sha"] if out["parents"] else _EMPTY_TREE
        out["files"] = self._diff_json(repo, parent, sha)
        add = sum(f["additions"] for f in out["files"])
        rem = sum(f["deletions"] for f in out["files"])
        out["stats"] = {"additions": add, "deletions": rem, "total": add + rem}
        return _Reply(200, out)

    def _pull(self, call: _Call) -> tuple[_Repo, _Pull]:
        assert call.repo is not None
        pull = call.repo.pulls.get(int(call.params["pull_number"]))
        if pull is None:
            raise _Refusal(404, "Not Found")
        return call.repo, pull

    def _pulls_get(self, call: _Call) -> _Reply:
        repo, p = self._pull(call)
        head, base = self._sha(repo, p.head), self._sha(repo, p.base)
        merge_base = gitcmd.merge_base(repo.git_dir, base, head) if repo.git_dir else base
        files = self._diff_json(repo, merge_base, head)
        out = self._example("pull-request", repo.full_name)
        api = f"{self.base_url}/repos/{repo.full_name}"
        head_owner = p.head_repo.split("/")[0]
        out.update(
            id=p.id,
            node_id=_node_id("PullRequest", p.id),
            number=p.number,
            state=p.state,
            title=p.title,
            body=p.body,
            draft=p.draft,
            user=self._user(p.user),
            url=f"{api}/pulls/{p.number}",
            html_url=f"{self.web_url}/{repo.full_name}/pull/{p.number}",
            issue_url=f"{api}/issues/{p.number}",
            comments_url=f"{api}/issues/{p.number}/comments",
            statuses_url=f"{api}/statuses/{head}",
            head={
                "label": f"{head_owner}:{p.head}",
                "ref": p.head,
                "sha": head,
                "user": self._user(head_owner),
                "repo": self._repo_json(p.head_repo),
            },
            base={
                "label": f"{repo.owner}:{p.base}",
                "ref": p.base,
                "sha": base,
                "user": self._user(repo.owner),
                "repo": self._repo_json(repo),
            },
            labels=[],
            milestone=None,
            assignee=None,
            assignees=[],
            requested_reviewers=[],
            requested_teams=[],
            merged=False,
            merged_at=None,
            merged_by=None,
            closed_at=None,
            merge_commit_sha=None,
            commits=int(self._git(repo, "rev-list", "--count", f"{merge_base}..{head}")),
            additions=sum(f["additions"] for f in files),
            deletions=sum(f["deletions"] for f in files),
            changed_files=len(files),
        )
        return _Reply(200, out)

    def _pulls_list_files(self, call: _Call) -> _Reply:
        repo, p = self._pull(call)
        assert repo.git_dir is not None
        head = self._sha(repo, p.head)
        merge_base = gitcmd.merge_base(repo.git_dir, self._sha(repo, p.base), head)
        page, headers = self._page(self._diff_json(repo, merge_base, head)[:3000], call)
        return _Reply(200, page, headers)

    def _repos_compare_commits(self, call: _Call) -> _Reply:
        repo = call.repo
        assert repo is not None
        m = re.fullmatch(r"(.+?)\.\.\.?(.+)", call.params["basehead"])
        if m is None:
            raise _Refusal(404, "Not Found")
        base, head = self._sha(repo, m[1]), self._sha(repo, m[2])  # 404 without a git_dir
        assert repo.git_dir is not None
        merge_base = gitcmd.merge_base(repo.git_dir, base, head)
        ahead = self._git(repo, "rev-list", "--reverse", f"{merge_base}..{head}").split()
        behind = int(self._git(repo, "rev-list", "--count", f"{merge_base}..{base}"))
        status = (
            "identical"
            if not ahead and not behind
            else "behind"
            if not ahead
            else "ahead"
            if not behind
            else "diverged"
        )
        full, web = repo.full_name, self.web_url
        body = {
            "url": f"{self.base_url}/repos/{full}/compare/{m[1]}...{m[2]}",
            "html_url": f"{web}/{full}/compare/{m[1]}...{m[2]}",
            "permalink_url": f"{web}/{full}/compare/{base}...{head}",
            "diff_url": f"{web}/{full}/compare/{m[1]}...{m[2]}.diff",
            "patch_url": f"{web}/{full}/compare/{m[1]}...{m[2]}.patch",
            "base_commit": self._commit_json(repo, base),
            "merge_base_commit": self._commit_json(repo, merge_base),
            "status": status,
            "ahead_by": len(ahead),
            "behind_by": behind,
            "total_commits": len(ahead),
            "commits": [self._commit_json(repo, c) for c in ahead[:250]],
            "files": self._diff_json(repo, merge_base, head)[:300],
        }
        return _Reply(200, body)

    def _issue_comment_json(self, repo: _Repo, issue: int, ident: int, body: str) -> JSON:
        api, now = f"{self.base_url}/repos/{repo.full_name}", _iso(_now())
        return {
            "id": ident,
            "node_id": _node_id("IssueComment", ident),
            "url": f"{api}/issues/comments/{ident}",
            "html_url": f"{self.web_url}/{repo.full_name}/pull/{issue}#issuecomment-{ident}",
            "body": body,
            "user": None,
            "created_at": now,
            "updated_at": now,
            "issue_url": f"{api}/issues/{issue}",
            "author_association": "NONE",
        }

    def _issues_create_comment(self, call: _Call) -> _Reply:
        repo, issue = call.repo, int(call.params["issue_number"])
        assert repo is not None
        if issue not in repo.pulls:
            raise _Refusal(404, "Not Found")
        ident = next(self._ids)
        comment = self._issue_comment_json(repo, issue, ident, call.body["body"])
        comment["user"] = self._user(call.token.login if call.token else "ghost", "Bot")
        repo.comments[ident] = (issue, comment)
        return _Reply(201, copy.deepcopy(comment), {"Location": comment["url"]})

    def _issues_list_comments(self, call: _Call) -> _Reply:
        repo, issue = call.repo, int(call.params["issue_number"])
        assert repo is not None
        if issue not in repo.pulls:
            raise _Refusal(404, "Not Found")
        since = call.query.get("since", "")
        items = [c for n, c in repo.comments.values() if n == issue and c["updated_at"] >= since]
        page, headers = self._page(items, call)
        return _Reply(200, copy.deepcopy(page), headers)

    def _issues_update_comment(self, call: _Call) -> _Reply:
        assert call.repo is not None
        found = call.repo.comments.get(int(call.params["comment_id"]))
        if found is None:
            raise _Refusal(404, "Not Found")
        found[1].update(body=call.body["body"], updated_at=_iso(_now()))
        return _Reply(200, copy.deepcopy(found[1]))

    # -- operations: apps

    def _apps_create_installation_access_token(self, call: _Call) -> _Reply:
        inst = int(call.params["installation_id"])
        repos = sorted(r.full_name for r in self._repos.values() if r.installation_id == inst)
        if not repos:
            raise _Refusal(404, "Not Found")
        b = call.body or {}
        asked = b.get("permissions") or DEFAULT_PERMISSIONS
        if any(DEFAULT_PERMISSIONS.get(k) not in (v, "write") for k, v in asked.items()):
            raise _Refusal(
                422,
                "The permissions requested are not granted to this installation.",
                violation=True,
            )
        names = b.get("repositories")
        if names is not None:
            repos = [r for r in repos if r.split("/")[1] in names]
        token = self.add_token(permissions=asked, repos=repos, login=f"{self.app_slug}[bot]")
        expires = _now() + timedelta(hours=1)
        self._tokens[token].expires_at = expires
        body = {
            "token": token,
            "expires_at": _iso(expires),
            "permissions": asked,
            "repository_selection": "selected",
        }
        return _Reply(201, body)

    def _apps_get_repo_installation(self, call: _Call) -> _Reply:
        repo = call.repo
        assert repo is not None
        out = self._example("installation")
        inst = repo.installation_id
        out.update(
            id=inst,
            app_id=self.app_id,
            app_slug=self.app_slug,
            account=self._user(repo.owner),
            target_id=self._user(repo.owner)["id"],
            target_type="User",
            access_tokens_url=f"{self.base_url}/app/installations/{inst}/access_tokens",
            repositories_url=f"{self.base_url}/installation/repositories",
            html_url=f"{self.web_url}/settings/installations/{inst}",
            permissions=dict(DEFAULT_PERMISSIONS),
            events=["check_run", "check_suite", "merge_group", "pull_request", "push"],
        )
        return _Reply(200, out)

    # -- operations: repository, contents, refs, releases

    def _repos_get(self, call: _Call) -> _Reply:
        assert call.repo is not None
        return _Reply(200, self._repo_json(call.repo))

    def _repos_get_content(self, call: _Call) -> _Reply:
        repo = call.repo
        assert repo is not None
        ref = call.query.get("ref", repo.default_branch)
        path = call.params["path"].strip("/")
        sha = self._sha(repo, ref)  # 404 without a git_dir
        assert repo.git_dir is not None
        kind = gitcmd.git(repo.git_dir, "cat-file", "-t", f"{sha}:{path}", check=False).strip()
        if kind not in ("blob", "tree"):
            raise _Refusal(404, "Not Found")
        if kind == "tree":
            listing = self._git(repo, "ls-tree", "-l", "-z", f"{sha}:{path}").split("\0")
            items = []
            for entry in filter(None, listing):
                meta, name = entry.split("\t", 1)
                _mode, otype, oid, size = meta.split()
                child = f"{path}/{name}" if path else name
                item = self._content_json(repo, ref, child, oid, 0 if size == "-" else int(size))
                item["type"] = "dir" if otype == "tree" else "file"
                items.append(item)
            return _Reply(200, items)
        assert repo.git_dir is not None
        oid = self._git(repo, "rev-parse", f"{sha}:{path}").strip()
        data = gitcmd.show(repo.git_dir, sha, path) or b""
        out = self._content_json(repo, ref, path, oid, len(data))
        encoded = base64.b64encode(data).decode()
        # GitHub wraps base64 content at 60 characters.
        out.update(
            type="file",
            encoding="base64",
            content="\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n",
        )
        return _Reply(200, out)

    def _content_json(self, repo: _Repo, ref: str, path: str, oid: str, size: int) -> JSON:
        api, web, full = self.base_url, self.web_url, repo.full_name
        self_url = f"{api}/repos/{full}/contents/{quote(path)}?ref={quote(ref)}"
        git_url = f"{api}/repos/{full}/git/blobs/{oid}"
        html = f"{web}/{full}/blob/{quote(ref)}/{quote(path)}"
        return {
            "type": "file",
            "size": size,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": oid,
            "url": self_url,
            "git_url": git_url,
            "html_url": html,
            "download_url": f"{web}/{full}/raw/{quote(ref)}/{quote(path)}",
            "_links": {"self": self_url, "git": git_url, "html": html},
        }

    def _git_get_ref(self, call: _Call) -> _Reply:
        repo, ref = call.repo, call.params["ref"].removeprefix("refs/")
        assert repo is not None
        if repo.git_dir is None:
            raise _Refusal(404, "Not Found")
        oid = gitcmd.git(
            repo.git_dir, "rev-parse", "--verify", "--quiet", f"refs/{ref}", check=False
        ).strip()
        if not oid:
            raise _Refusal(404, "Not Found")
        kind = self._git(repo, "cat-file", "-t", oid).strip()
        api = f"{self.base_url}/repos/{repo.full_name}"
        body = {
            "ref": f"refs/{ref}",
            "node_id": _node_id("Ref", int(oid[:8], 16)),
            "url": f"{api}/git/refs/{ref}",
            "object": {"type": kind, "sha": oid, "url": f"{api}/git/{kind}s/{oid}"},
        }
        return _Reply(200, body)

    def _release_json(self, repo: _Repo, b: JSON) -> JSON:
        ident = next(self._ids)
        out = self._example("release", repo.full_name)
        api = f"{self.base_url}/repos/{repo.full_name}"
        now = _iso(_now())
        out.update(
            id=ident,
            node_id=_node_id("Release", ident),
            url=f"{api}/releases/{ident}",
            html_url=f"{self.web_url}/{repo.full_name}/releases/tag/{b['tag_name']}",
            assets_url=f"{api}/releases/{ident}/assets",
            upload_url=f"{api}/releases/{ident}/assets{{?name,label}}",
            tarball_url=f"{api}/tarball/{b['tag_name']}",
            zipball_url=f"{api}/zipball/{b['tag_name']}",
            tag_name=b["tag_name"],
            target_commitish=b.get("target_commitish", repo.default_branch),
            name=b.get("name", b["tag_name"]),
            body=b.get("body", ""),
            draft=b.get("draft", False),
            prerelease=b.get("prerelease", False),
            created_at=now,
            published_at=None if b.get("draft") else now,
            author=self._user(f"{self.app_slug}[bot]", "Bot"),
            assets=[],
        )
        out.pop("discussion_url", None)
        return out

    def _repos_create_release(self, call: _Call) -> _Reply:
        repo, b = call.repo, call.body
        assert repo is not None
        if any(r["tag_name"] == b["tag_name"] for r in repo.releases):
            raise _Refusal(
                422,
                "Validation Failed",
                errors=[{"resource": "Release", "code": "already_exists", "field": "tag_name"}],
            )
        if repo.git_dir is not None:  # GitHub tags target_commitish when the tag is new
            tag = f"refs/tags/{b['tag_name']}"
            exists = gitcmd.git(repo.git_dir, "rev-parse", "--verify", "--quiet", tag, check=False)
            if not exists.strip():
                target = self._sha(repo, b.get("target_commitish", repo.default_branch))
                self._git(repo, "tag", b["tag_name"], target)
        release = self._release_json(repo, b)
        repo.releases.append(release)
        return _Reply(201, copy.deepcopy(release), {"Location": release["url"]})

    def _repos_get_release_by_tag(self, call: _Call) -> _Reply:
        assert call.repo is not None
        for r in call.repo.releases:
            if r["tag_name"] == call.params["tag"]:
                return _Reply(200, copy.deepcopy(r))
        raise _Refusal(404, "Not Found")


# ---------------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler sleeping out a `timeout` fault must not block close()
    block_on_close = False
    emulator: GitHubEmulator

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a client hanging up is not a bug; the rest is
            self.emulator.bugs.append(f"HTTP layer: {type(error).__name__}: {error}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' connection pool expects
    timeout = 30
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

    def _serve(self) -> None:
        assert isinstance(self.server, _Server)
        emu = self.server.emulator
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply, delay = emu.handle(self.command, self.path, dict(self.headers.items()), raw)
        if delay:
            time.sleep(delay)
        try:
            if reply is None:  # a lost response: the work is done, the answer never arrives
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
            self.send_header("X-GitHub-Request-Id", secrets.token_hex(8).upper())
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout fault); nothing to answer
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the client hung up first (lost/timeout faults)
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the emulator's record is `emu.requests`


def running(**kwargs: Any) -> Iterator[GitHubEmulator]:
    """The body of a pytest fixture: a started emulator, checked for violations at teardown."""
    with GitHubEmulator(**kwargs) as emu:
        yield emu
