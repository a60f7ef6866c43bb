"""`dlgate action`: the GitHub Action's step.

Reads what the runner provides (`GITHUB_EVENT_NAME`, the event payload at `GITHUB_EVENT_PATH`,
`GITHUB_WORKSPACE`, …) and the action's inputs (`INPUT_*`, set by `action.yml`), asks
`actionplan.plan` what the event wants (gate a pull request or a merge queue, record a baseline
or a release, publish a fork's report), runs the gate, and reports where a workflow run shows
it: the step summary, step outputs, workflow-command annotations (`workflow.py`), and check
runs through the publisher.

Publishing never decides the verdict: a read-only token (a fork's pull request) gets a notice,
and the gate, the summary and the exit code stay the same.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlgate import gate, git, render, workflow
from dlgate.actionplan import Plan, plan
from dlgate.cli import ExitCode
from dlgate.errors import ConfigError, DlgateError, PublishError, UsageError
from dlgate.report import STAGES, Report


@dataclass(frozen=True)
class Settings:
    """The runner's variables and the action's inputs, read once."""

    event: str
    payload: Mapping[str, Any]
    repository: str  # owner/name
    sha: str
    workspace: Path
    repo_path: str  # where the repository is checked out, relative to the workspace
    api_url: str
    run_url: str  # the workflow run's page: the check runs' details link
    token: str
    summary_file: Path | None
    output_file: Path | None
    config: str  # repository-relative config file, read from the base revision
    stages: tuple[str, ...]
    tracking_uri: str  # the `tracking-uri` input
    mlflow_env: str  # MLFLOW_TRACKING_URI
    store: Path | None  # folder of the SQLite store the Actions cache keeps (action.yml)
    publish: bool
    report: Path | None  # workflow_run: the downloaded report to publish
    out: Path
    throttle: bool  # PyGithub's pacing between requests (GitHub's advice); off in tests

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise UsageError(
                    f"{name} is not set: `dlgate action` runs as a step of a GitHub Actions "
                    "workflow (see docs/action.md); on your own machine use `dlgate run`"
                )
            return value

        event, event_path = need("GITHUB_EVENT_NAME"), Path(need("GITHUB_EVENT_PATH"))
        try:
            payload = json.loads(event_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the event payload {event_path}: {exc}") from None
        if not isinstance(payload, dict):
            raise UsageError(f"the event payload {event_path} is not a JSON object")
        workspace = Path(env.get("GITHUB_WORKSPACE") or ".")
        runner_temp = env.get("RUNNER_TEMP", "")
        default_out = Path(runner_temp) / "dlgate" if runner_temp else workspace / ".dlgate/action"
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        run_id = env.get("GITHUB_RUN_ID", "")
        return cls(
            event=event,
            payload=payload,
            repository=need("GITHUB_REPOSITORY"),
            sha=env.get("GITHUB_SHA", ""),
            workspace=workspace,
            repo_path=env.get("INPUT_PATH", "").strip() or ".",
            api_url=env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
            run_url=f"{server}/{need('GITHUB_REPOSITORY')}/actions/runs/{run_id}" if run_id else "",
            token=env.get("INPUT_TOKEN", "").strip() or env.get("GITHUB_TOKEN", "").strip(),
            summary_file=_path(env.get("GITHUB_STEP_SUMMARY")),
            output_file=_path(env.get("GITHUB_OUTPUT")),
            config=env.get("INPUT_CONFIG", "").strip(),
            stages=_stages(env.get("INPUT_STAGES", "")),
            tracking_uri=env.get("INPUT_TRACKING_URI", "").strip(),
            mlflow_env=env.get("MLFLOW_TRACKING_URI", "").strip(),
            store=_path(env.get("DLGATE_STORE")),
            publish=_flag("the `publish-checks` input", env.get("INPUT_PUBLISH_CHECKS", "true")),
            report=_path(env.get("INPUT_REPORT")),
            out=_path(env.get("INPUT_OUT")) or default_out,
            throttle=_flag("DLGATE_GITHUB_THROTTLE", env.get("DLGATE_GITHUB_THROTTLE", "true")),
        )


def _path(value: str | None) -> Path | None:
    return Path(value.strip()) if value and value.strip() else None


def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on", ""):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise UsageError(f"{name} must be true or false, not {value!r}")


def _stages(value: str) -> tuple[str, ...]:
    names = tuple(n for n in re.split(r"[\s,]+", value) if n)
    for name in names:
        if name not in STAGES:
            raise UsageError(
                f"unknown stage {name!r} in the `stages` input; stages are {', '.join(STAGES)}"
            )
    return names


# ---------------------------------------------------------------------------- the step


def main() -> int:
    """`dlgate action`: exit 0 passed (or nothing to do), 1 refused, 2 usage or configuration
    error, 3 internal error (publishing included)."""
    logging.basicConfig(level=logging.WARNING, format="dlgate: %(message)s", stream=sys.stderr)
    settings: Settings | None = None
    try:
        settings = Settings.from_env(os.environ)
        return run(settings)
    except DlgateError as exc:
        # A workflow command too, so that the reason heads the run's page, not only the log.
        workflow.command("error", str(exc), title="dlgate")
        if settings is not None:
            workflow.append_summary(
                settings.summary_file, f"## 💥 dlgate could not run\n\n```\n{exc}\n```\n"
            )
            workflow.write_outputs(settings.output_file, {"conclusion": "failure"})
        print(f"dlgate: error: {exc}", file=sys.stderr)
        return exc.exit_code


def run(settings: Settings) -> int:
    what = plan(settings.event, settings.payload, settings.sha)
    if what.kind == "skip":
        workflow.command("notice", what.reason, title="dlgate")
        workflow.write_outputs(settings.output_file, {"conclusion": "skipped", "kind": "none"})
        return 0
    if what.kind == "publish":
        return _publish_report(settings, what)
    repo = git.toplevel(settings.workspace / settings.repo_path)
    for rev, role in ((what.head, "head"), (what.base, "base")):
        if rev is not None:
            _require_commit(repo, rev, role)
    merge_base = git.merge_base(repo, what.base, what.head) if what.base else None
    config_rev = merge_base or git.resolve(repo, what.head)
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    publisher = _publisher(settings, what)
    try:
        config_file = _config_file(repo, settings.config, config_rev, out)
        config = gate.load_config(repo, config_rev, config_file)
    except ConfigError as exc:
        if publisher is not None:
            publisher.start(STAGES)
            publisher.fail(f"invalid configuration: {exc}")
        raise
    chosen = settings.stages or config.stages
    stages = tuple(s for s in STAGES if s in chosen)
    tracking_uri = (
        settings.tracking_uri
        or config.baseline.tracking_uri
        or settings.mlflow_env
        or (f"sqlite:///{settings.store.resolve() / 'mlflow.db'}" if settings.store else None)
    )
    if publisher is not None:
        publisher.start(stages)
    request = gate.Request(
        repo=repo,
        head=what.head,
        base=what.base,
        kind=what.kind,
        config_file=config_file,
        stages=stages,
        out=out,
        tracking_uri=tracking_uri,
        ref=what.ref,
        pr=what.pr,
    )
    try:
        with workflow.group(f"dlgate: {what.kind} run"), workflow.untrusted_output():
            report = (
                _release(request, settings)
                if what.kind == "release"
                else gate.run(request, _progress)
            )
    except BaseException as exc:
        if publisher is not None:  # never leave a check run in_progress
            publisher.fail(f"{type(exc).__name__}: {exc}")
        raise
    code = _report(settings, report, out)
    if publisher is not None and not publisher.complete(report) and report.passed:
        return ExitCode.INTERNAL  # GitHub never heard the verdict: the job must not look green
    return code


def _release(request: gate.Request, settings: Settings) -> Report:
    """A release through `dlgate.release`, which reuses the tagged commit's recorded run
    (only the accuracy stage runs then, unless the `stages` input says otherwise) and renders
    the accuracy-per-release table."""
    from dlgate.release import release

    reports: list[Report] = []

    def keep(report: Report) -> int:
        reports.append(report)
        return ExitCode.PASSED  # the verdict is decided by the caller, from the report

    common = {
        "repo": request.repo,
        "config_file": request.config_file,
        "stages": settings.stages,
        "out": request.out,
        "tracking_uri": request.tracking_uri,
    }
    release(request.repo, request.ref, common, _progress, keep)
    return reports[0]


def _require_commit(repo: Path, rev: str, role: str) -> None:
    try:
        git.resolve(repo, rev)
    except DlgateError:
        raise UsageError(
            f"the {role} commit {rev[:12]} is not in the checkout at {repo}; check out the "
            "whole history (actions/checkout with `fetch-depth: 0`)"
        ) from None


def _config_file(repo: Path, config: str, rev: str, out: Path) -> Path | None:
    """The `config` input read from the base revision (a PR cannot loosen its own gate),
    copied into the output folder; None: the gate reads dlgate.yml there itself."""
    if not config or config in ("dlgate.yml", "./dlgate.yml"):
        return None
    blob = git.show(repo, rev, config.removeprefix("./"))
    if blob is None:
        raise ConfigError(
            f"not found at {rev[:7]}, the revision the gate reads its configuration from (so "
            "that a pull request cannot loosen its own gate); merge the file first, or leave "
            "the `config` input empty to use dlgate.yml",
            file=config,
        )
    target = out / "config" / Path(config).name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(blob)
    return target


def _progress(message: str) -> None:
    print(message, flush=True)


def _report(settings: Settings, report: Report, out: Path) -> int:
    """Summary, outputs, annotations and the terminal view; returns the exit code."""
    from dlgate.cli import write_views

    summary_md = out / "summary.md"
    write_views(report, json_path=out / "report.json", markdown_path=summary_md)
    workflow.append_summary(
        settings.summary_file, summary_md.read_text(encoding="utf-8"), settings.run_url
    )
    outputs = {
        "conclusion": report.conclusion.value,
        "kind": report.kind,
        "report": str(out / "report.json"),
        "report-dir": str(out),
        "baseline-sha": (report.baseline.sha or "") if report.baseline else "",
        "metrics": json.dumps(dict(report.metrics), sort_keys=True),
    }
    for stage in report.stages:
        outputs[f"{stage.name}-conclusion"] = stage.conclusion.value
    for name, value in report.metrics.items():
        outputs.setdefault(name.replace("_", "-"), f"{value:.6g}")
    workflow.write_outputs(settings.output_file, outputs)
    prefix = "" if settings.repo_path in ("", ".") else settings.repo_path.strip("/") + "/"
    workflow.annotate(report, prefix)
    with workflow.untrusted_output():
        print(render.terminal(report), end="", flush=True)
    return ExitCode.PASSED if report.passed else ExitCode.REFUSED


# ---------------------------------------------------------------------------- check runs


class _Checks:
    """The publisher, as the Action uses it: a token that cannot write (a fork's pull
    request) turns publishing off with a notice; other failures are reported, not raised."""

    def __init__(self, settings: Settings, plan: Plan, sha: str) -> None:
        from github import Auth, Consts, Github

        from dlgate.service.publisher import Publisher

        # GitHub asks for pauses between requests against its secondary rate limits;
        # PyGithub's defaults follow that advice. DLGATE_GITHUB_THROTTLE=false drops them.
        client = Github(
            base_url=settings.api_url,
            auth=Auth.Token(settings.token),
            timeout=30,
            seconds_between_requests=Consts.DEFAULT_SECONDS_BETWEEN_REQUESTS
            if settings.throttle
            else None,
            seconds_between_writes=Consts.DEFAULT_SECONDS_BETWEEN_WRITES
            if settings.throttle
            else None,
        )
        self.publisher = Publisher(
            (client, settings.repository), sha, details_url=settings.run_url or None
        )
        self.fork = plan.fork
        self.enabled = True

    def _call(self, what: str, action: Callable[[], None]) -> bool:
        """False when GitHub refused what it should have taken (an error is printed); a token
        that cannot write turns publishing off instead, which is no failure."""
        if not self.enabled:
            return True
        try:
            action()
            return True
        except PublishError as exc:
            if _read_only(exc):
                self.enabled = False
                why = (
                    "a pull request from a fork gets a read-only token; publish them with the "
                    "workflow_run pattern (docs/action.md)"
                    if self.fork
                    else "give the job `permissions: checks: write`"
                )
                workflow.command(
                    "notice" if self.fork else "warning",
                    f"check runs not published: the token cannot write them ({why}). The "
                    "verdict is in the step summary and the job's result.",
                    title="dlgate",
                )
                return True
            workflow.command("error", f"{what}: {exc}", title="dlgate")
            return False

    def start(self, stages: tuple[str, ...]) -> None:
        self._call("starting the check runs", lambda: self.publisher.start(stages))

    def complete(self, report: Report) -> bool:
        return self._call("publishing the check runs", lambda: self.publisher.complete(report))

    def fail(self, reason: str) -> None:
        self._call("completing the check runs", lambda: self.publisher.fail_all(reason))


def _read_only(exc: PublishError) -> bool:
    from github.GithubException import GithubException

    cause = exc.__cause__
    if not isinstance(cause, GithubException) or cause.status != 403:
        return False
    headers = {k.lower() for k in (cause.headers or {})}
    return "retry-after" not in headers and "rate limit" not in str(cause.data).lower()


def _publisher(settings: Settings, plan: Plan) -> _Checks | None:
    if not settings.publish or plan.checks_on is None:
        return None
    if not settings.token:
        workflow.command(
            "notice",
            "no token (the `token` input or GITHUB_TOKEN): check runs are not published",
            title="dlgate",
        )
        return None
    return _Checks(settings, plan, plan.checks_on)


def _publish_report(settings: Settings, what: Plan) -> int:
    """workflow_run: publish a report that an unprivileged pull_request run made. The report
    is untrusted data: it must be a valid report for the very commit GitHub says was run."""
    import jsonschema

    from dlgate.report import validate

    path = settings.report
    if path is None:
        raise UsageError("on workflow_run, pass the downloaded report.json as the `report` input")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        validate(document)
        report = Report.from_dict(document)
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "the document"
        raise UsageError(f"{path} is not a dlgate report: {where}: {exc.message}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a dlgate report: {exc}") from None
    if report.kind != "pr" or report.head.sha != what.head:
        raise UsageError(
            f"refusing to publish {path}: it is a {report.kind} report for "
            f"{report.head.sha[:12]}, but the workflow run gated the pull request head "
            f"{what.head[:12]}"
        )
    workflow.append_summary(settings.summary_file, render.markdown(report), settings.run_url)
    workflow.write_outputs(
        settings.output_file, {"conclusion": report.conclusion.value, "kind": "publish"}
    )
    checks = _publisher(settings, what)
    if checks is not None and not checks.complete(report):
        return ExitCode.INTERNAL
    return ExitCode.PASSED
