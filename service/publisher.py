"""Publish a report as GitHub check runs: one per stage, named `dlgate/<stage>`.

Shared by the Action and the webhook service (no Flask here). The lifecycle of a job is

    pub = Publisher(repo, head_sha, details_url=url)   # or Publisher((gh, "owner/name"), …)
    pub.start(STAGES)          # every stage `in_progress` as soon as the job begins
    pub.complete(report)       # conclusions, summaries, annotations
    # or, when the job dies:  pub.fail_all("the worker was killed")

Idempotent by design: each check run carries `external_id = "<prefix>:<sha>:<stage>"`, and
creation looks first (list the commit's runs by name) and reuses an open run with that id, so a
retried POST whose answer was lost, or a restarted job, never leaves two runs for one stage.
A completed run is never reopened: annotations can only be appended, never removed, so a new
attempt after a finished one (a re-run) gets a fresh run, as GitHub's own re-run does.

Retries are ours, not urllib3's: PyGithub's default `GithubRetry` resends a POST after a 5xx or
a dropped connection, which is how duplicate check runs happen, so the publisher builds its own
client from the caller's settings with `retry=None` and retries by itself: 5xx, dropped
connections, 429 and secondary-rate-limit 403s, waiting `retry-after` when GitHub gives one.
An annotation batch is re-sent only after checking the run's `annotations_count`, since a lost
answer may hide an update that went through. What still fails becomes `PublishError`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import github
import requests
from github.GithubException import GithubException
from github.Repository import Repository

from dlgate.errors import PublishError
from dlgate.render import markdown_stage
from dlgate.report import STAGES, Annotation, Conclusion, Level, Report, StageResult, Value

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_OUTPUT = 65_535  # GitHub's cap on output.summary and output.text, in characters
ANNOTATIONS_PER_REQUEST = 50  # GitHub's cap per create/update request; later updates append
MAX_ANNOTATION_BYTES = 64 * 1024
# A refusal is `failure`, never `neutral`: neutral satisfies a required check.
CONCLUSIONS = {
    Conclusion.SUCCESS: "success",
    Conclusion.FAILURE: "failure",
    Conclusion.SKIPPED: "skipped",
}
LEVELS = {Level.NOTICE: "notice", Level.WARNING: "warning", Level.FAILURE: "failure"}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries per request, the first included
    backoff_s: float = 1.0  # first wait after a 5xx or a dropped connection; doubles each try
    max_wait_s: float = 60.0  # cap on any single wait, a server's `retry-after` included
    secondary_wait_s: float = 60.0  # rate-limited without `retry-after`: GitHub says ≥ 60 s

    def backoff(self, attempt: int) -> float:
        # Jittered so that the workers a GitHub outage hit together do not return together.
        return self.backoff_s * 2.0**attempt * random.uniform(0.5, 1.0)


@dataclass
class _Run:
    id: int
    annotations: int  # how many GitHub holds for this run
    completed: bool = False


# The button the webhook service answers (`check_run.requested_action`, identifier `rerun`).
RERUN_ACTIONS = [
    {"label": "Re-run", "description": "Run this dlgate stage again", "identifier": "rerun"}
]


class Publisher:
    def __init__(
        self,
        repo: Repository | tuple[github.Github, str],
        head_sha: str,
        *,
        details_url: str | None = None,
        external_id_prefix: str = "dlgate",
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(repo, tuple):
            requester, self.full_name = repo[0].requester, repo[1]
        else:
            requester, self.full_name = repo.requester, repo.full_name
        # Lazy: objects are addressed by URL without fetching them first (no GET of the repo
        # or the commit before each write). retry=None: see the module docstring.
        client = github.Github(**{**requester.kwargs, "lazy": True, "retry": None})
        self._repo = client.get_repo(self.full_name)
        self._commit = self._repo.get_commit(head_sha)
        self.head_sha = head_sha
        self.details_url = details_url
        self.prefix = external_id_prefix
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._runs: dict[str, _Run] = {}

    @property
    def check_run_ids(self) -> dict[str, int]:
        """stage → the id of its check run, for the stages this publisher has touched."""
        return {stage: run.id for stage, run in self._runs.items()}

    def external_id(self, stage: str) -> str:
        return f"{self.prefix}:{self.head_sha}:{stage}"

    # -- the lifecycle

    def start(self, stages: Sequence[str]) -> None:
        """Mark every stage `in_progress` (creating or reusing its check run)."""
        for stage in stages:
            if stage not in self._runs:
                self._runs[stage] = self._open(stage)

    def complete(self, report: Report) -> None:
        """Complete every started stage and every stage of the report. A started stage the
        report lacks is a `failure` ("stage did not run"). Every stage is attempted even when
        one fails; the failures are raised together at the end."""
        names = [*self._runs, *(s.name for s in report.stages if s.name not in self._runs)]
        errors = []
        for name in names:
            stage = report.stage(name)
            try:
                if stage is None:
                    self._finish(
                        name,
                        "failure",
                        "stage did not run",
                        f"The `{name}` stage was started but the report has no result for it, "
                        "so the gate cannot pass it. See the job's log.",
                    )
                else:
                    self._finish_stage(report, stage)
            except PublishError as e:
                errors.append(str(e))
        if errors:
            raise PublishError("\n".join(errors))

    def fail_all(self, reason: str, stages: Sequence[str] | None = None) -> None:
        """For a job that crashed: complete as `failure` every check run it left open, so none
        stays `in_progress` forever. Without `stages`: the stages this publisher started, or,
        in a fresh process, the open runs of every known stage."""
        names = list(stages if stages is not None else (self._runs or STAGES))
        errors = []
        for name in names:
            try:
                if name not in self._runs:
                    found = self._lookup(name)
                    if found is None:
                        continue  # nothing open for this stage
                    self._runs[name] = found
                self._finish(
                    name,
                    "failure",
                    "dlgate did not finish",
                    f"The job stopped before this stage could report: {reason}\n\n"
                    "Re-run the job; if it fails again, see its log.",
                )
            except PublishError as e:
                errors.append(str(e))
        if errors:
            raise PublishError("\n".join(errors))

    # -- check runs

    def _find(self, stage: str) -> _Run | None:
        """The newest open run of ours for `stage` on this commit, if any."""
        runs = self._commit.get_check_runs(check_name=f"dlgate/{stage}", filter="all")
        ext = self.external_id(stage)
        mine = [r for r in runs if r.external_id == ext and r.status != "completed"]
        if not mine:
            return None
        newest = max(mine, key=lambda r: r.id)
        return _Run(newest.id, newest.output.annotations_count)

    def _lookup(self, stage: str) -> _Run | None:
        return self._call(f"find check run dlgate/{stage}", lambda _retrying: self._find(stage))

    def _open(self, stage: str) -> _Run:
        def attempt(_retrying: bool) -> _Run:
            # Looking before every create, retries included, is what makes a lost answer safe.
            found = self._find(stage)
            if found is not None:
                return found
            fields: dict[str, Any] = {}
            if self.details_url:
                fields["details_url"] = self.details_url
            run = self._repo.create_check_run(
                name=f"dlgate/{stage}",
                head_sha=self.head_sha,
                external_id=self.external_id(stage),
                status="in_progress",
                started_at=datetime.now(UTC),
                output={"title": "running", "summary": f"dlgate is running the `{stage}` stage."},
                **fields,
            )
            return _Run(run.id, 0)

        return self._call(f"create check run dlgate/{stage}", attempt)

    def _finish_stage(self, report: Report, stage: StageResult) -> None:
        conclusion = CONCLUSIONS[stage.conclusion]
        annotations = [a for c in stage.checks for a in c.annotations]
        self._finish(
            stage.name,
            conclusion,
            stage.title or conclusion,
            markdown_stage(report, stage.name),
            text=stage_text(stage),
            annotations=annotations,
        )

    def _finish(
        self,
        stage: str,
        conclusion: str,
        title: str,
        summary: str,
        *,
        text: str = "",
        annotations: Sequence[Annotation] = (),
    ) -> None:
        """Complete the stage's run: the first 50 annotations go with the conclusion, the rest
        in further updates of 50 each."""
        run = self._runs.get(stage)
        if run is None:
            run = self._runs[stage] = self._open(stage)
        if run.completed:
            return  # completing twice would append the annotations twice
        output: dict[str, Any] = {"title": title, "summary": fit(summary, self.details_url)}
        if text:
            output["text"] = fit(text, self.details_url)
        items = [annotation_json(a) for a in annotations]
        step = ANNOTATIONS_PER_REQUEST
        for i in range(0, max(len(items), 1), step):
            fields: dict[str, Any] = {"output": dict(output)}
            if items:
                fields["output"]["annotations"] = items[i : i + step]
            if i == 0:
                fields.update(
                    conclusion=conclusion, completed_at=datetime.now(UTC), actions=RERUN_ACTIONS
                )
            self._update(stage, run, fields, len(items[i : i + step]))
        run.completed = True

    def _update(self, stage: str, run: _Run, fields: dict[str, Any], added: int) -> None:
        target = run.annotations + added

        def attempt(retrying: bool) -> None:
            # Annotations append: after a failure that may hide a success, count before resending.
            if retrying and added and self._annotation_count(run.id) >= target:
                return
            self._repo.get_check_run(run.id).edit(**fields)

        self._call(f"update check run dlgate/{stage} ({run.id})", attempt)
        run.annotations = target

    def _annotation_count(self, run_id: int) -> int:
        return self._repo.get_check_run(run_id).output.annotations_count

    # -- retries and errors

    def _call(self, what: str, attempt: Callable[[bool], T]) -> T:
        """Run `attempt(retrying)` until it succeeds, retrying what GitHub says is transient."""
        policy = self.retry
        last: Exception | None = None
        failure = ""
        for n in range(policy.attempts):
            try:
                return attempt(n > 0)
            except GithubException as e:
                wait = self._wait(e, n)
                if wait is None:
                    raise PublishError(self._explain(what, e)) from e
                last, failure = e, f"HTTP {e.status} ({_message(e)})"
            except requests.RequestException as e:  # dropped connection, timeout
                wait, last, failure = policy.backoff(n), e, f"no answer ({type(e).__name__})"
            if n + 1 < policy.attempts:
                log.warning("%s: %s; retrying in %.1f s", what, failure, wait)
                self._sleep(wait)
        raise PublishError(
            f"could not {what} on {self.full_name}@{self.head_sha[:7]}: {failure}, "
            f"{policy.attempts} times in a row; check https://www.githubstatus.com and re-run "
            "the job"
        ) from last

    def _wait(self, e: GithubException, attempt: int) -> float | None:
        """Seconds to wait before retrying `e`, or None when retrying cannot help."""
        policy = self.retry
        headers = {k.lower(): str(v) for k, v in (e.headers or {}).items()}
        retry_after = _number(headers.get("retry-after"))
        exhausted = headers.get("x-ratelimit-remaining") == "0"
        limited = e.status == 429 or (
            e.status == 403
            and (retry_after is not None or exhausted or "rate limit" in _message(e).lower())
        )
        if e.status >= 500:
            wait = policy.backoff(attempt)
        elif not limited:
            return None
        elif retry_after is not None:
            wait = retry_after
        elif exhausted and (reset := _number(headers.get("x-ratelimit-reset"))) is not None:
            wait = reset - time.time() + 1  # primary limit: until the window resets
        else:
            wait = policy.secondary_wait_s
        return min(max(wait, policy.backoff(attempt)), policy.max_wait_s)

    def _explain(self, what: str, e: GithubException) -> str:
        hint = {
            401: "the token is invalid or expired; check the credentials dlgate runs with",
            403: "the token may not write check runs: a pull request from a fork gets a "
            "read-only GITHUB_TOKEN; give the workflow `permissions: checks: write`, or run "
            "dlgate as a GitHub App",
            404: f"{self.full_name} was not found, or the token cannot see it",
            422: "GitHub refused the request as invalid; this is a dlgate bug, please report it "
            "with this message",
        }.get(e.status, "see the message above")
        return (
            f"could not {what} on {self.full_name}@{self.head_sha[:7]}: GitHub answered "
            f"HTTP {e.status} ({_message(e)}); {hint}"
        )


def _message(e: GithubException) -> str:
    data = e.data
    if isinstance(data, dict):
        return str(data.get("message", "")) or json.dumps(data)[:200]
    return str(data)[:200]


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------- check-run output


def annotation_json(a: Annotation) -> dict[str, Any]:
    """A dlgate annotation as GitHub's check-run annotation object."""
    start = max(a.start_line, 1)
    out: dict[str, Any] = {
        "path": a.path.removeprefix("./").lstrip("/"),
        "start_line": start,
        "end_line": max(a.end_line or start, start),
        "annotation_level": LEVELS[a.level],
        "message": _clip_bytes(a.message or a.title or "(no message)", MAX_ANNOTATION_BYTES),
    }
    if a.title:
        out["title"] = a.title[:255]
    return out


def _clip_bytes(text: str, limit: int) -> str:
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode(errors="ignore")


def fit(markdown: str, details_url: str | None, limit: int = MAX_OUTPUT) -> str:
    """`markdown` cut to `limit` characters at a line end, with open code fences and
    `<details>` blocks closed, and a note pointing to the full report."""
    if len(markdown) <= limit:
        return markdown
    where = (
        f"[the full report]({details_url})"
        if details_url
        else ("the full report (`report.json` among the job's artifacts)")
    )
    note = (
        f"\n\n---\n✂️ Truncated: GitHub shows at most {limit:,} characters here "
        f"(this was {len(markdown):,}). See {where}."
    )
    budget = limit - len(note)
    while True:
        cut = markdown[:budget]
        if (nl := cut.rfind("\n")) > budget // 2:
            cut = cut[:nl]
        closers = "\n```" if cut.count("```") % 2 else ""
        closers += "\n</details>" * max(0, cut.count("<details") - cut.count("</details>"))
        out = cut + closers + note
        if len(out) <= limit:
            return out
        budget -= len(out) - limit


def stage_text(stage: StageResult) -> str:
    """The check run's details (`output.text`): each check's measurements as a table."""
    out: list[str] = []
    for c in stage.checks:
        if not c.measurements:
            continue
        out += [f"#### `{c.id}` — {c.outcome.value}", "", "| measurement | value |", "|---|---|"]
        out += [f"| {k} | {_cell(v)} |" for k, v in c.measurements.items()]
        out.append("")
    return "\n".join(out)


def _cell(value: Value) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list | dict):
        text = json.dumps(value)
        text = text if len(text) <= 200 else text[:199] + "…"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")
