"""One attempt at one job: authenticate, clone, read the config, run the gate, publish.

`Executor.attempt(job, attempt, final)` returns a `Result` and never raises for what a job can
meet (GitHub refusing, a clone failing, the gate crashing): every such failure is classified as
worth retrying or not, and when no attempt follows, the job's check runs are completed as
failures with the reason, so none stays `in_progress`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dlgate.config import CONFIG_FILE, load_text
from dlgate.errors import ConfigError, PublishError
from dlgate.report import STAGES, Report
from dlgate.service.events import JobSpec
from dlgate.service.github import Installation, installation
from dlgate.service.publisher import Publisher
from dlgate.service.queue import Job, JobState
from dlgate.service.sandbox import Sandbox, Workspace
from dlgate.service.settings import Settings

log = logging.getLogger(__name__)

REPORT = "report.json"


@dataclass(frozen=True)
class Result:
    state: JobState
    conclusion: str = ""
    error: str = ""
    report_json: str = ""
    retry: bool = False  # a transient failure: another attempt may succeed


class JobFailure(Exception):
    """An attempt cannot finish; `retry` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.data_dir / "jobs" / job_id


def out_dir(settings: Settings, job: Job) -> Path:
    """Where the job's last attempt wrote its report and artifacts (served by the app)."""
    return job_dir(settings, job.id) / f"attempt-{max(job.attempts, 1)}" / "out"


class Executor:
    def __init__(self, settings: Settings, sandbox: Sandbox) -> None:
        self.settings = settings
        self.sandbox = sandbox

    def attempt(self, job: Job, attempt: int, final: bool) -> Result:
        spec = job.spec
        where = job_dir(self.settings, job.id) / f"attempt-{attempt}"
        publisher: Publisher | None = None
        stages: tuple[str, ...] = spec.stages or STAGES
        try:
            self.sandbox.cleanup(job.id)  # a killed earlier attempt's container
            inst = self._installation(spec)
            publisher = Publisher(
                (inst.client, spec.repo),
                spec.head_sha,
                details_url=self.settings.details_url(job.id),
            )
            ws = self._prepare(where, spec, inst)
            stages = self._stages(ws, spec)
            publisher.start(stages)
            report = self._gate(job, ws)
            publisher.complete(report)
            return Result(
                JobState.SUCCEEDED, conclusion=report.conclusion.value, report_json=report.to_json()
            )
        except JobFailure as exc:
            return self._failed(
                job, attempt, final, str(exc), retry=exc.retry, publisher=publisher, stages=stages
            )
        except ConfigError as exc:
            return self._failed(
                job,
                attempt,
                final,
                f"invalid configuration: {exc}",
                retry=False,
                publisher=publisher,
                stages=stages,
            )
        except PublishError as exc:
            return self._failed(
                job,
                attempt,
                final,
                f"GitHub refused an update: {exc}",
                retry=True,
                publisher=publisher,
                stages=stages,
            )
        except Exception as exc:  # the one boundary: a worker survives what it runs
            log.exception("job %s attempt %d: internal error", job.id, attempt)
            return self._failed(
                job,
                attempt,
                final,
                f"dlgate's worker broke ({type(exc).__name__}: {exc}); please report it",
                retry=True,
                publisher=publisher,
                stages=stages,
            )
        finally:
            # The clone is big and rebuilt by any next attempt; the output stays for the page.
            shutil.rmtree(where / "repo", ignore_errors=True)

    def fail_abandoned(self, job: Job, reason: str) -> None:
        """Complete the check runs that a job whose worker died left `in_progress`."""
        try:
            inst = self._installation(job.spec)
            Publisher(
                (inst.client, job.spec.repo),
                job.spec.head_sha,
                details_url=self.settings.details_url(job.id),
            ).fail_all(reason)
        except (JobFailure, PublishError) as exc:
            log.error("job %s: could not complete its check runs: %s", job.id, exc)

    # -- the steps

    def _installation(self, spec: JobSpec) -> Installation:
        import github

        try:
            inst = installation(self.settings, spec.installation_id)
            inst.token()  # fails here, with a clear cause, rather than mid-clone
            return inst
        except github.GithubException as exc:
            retry = exc.status >= 500 or exc.status in (403, 429)
            raise JobFailure(
                f"the App could not authenticate as installation {spec.installation_id} "
                f"(HTTP {exc.status}); check DLGATE_APP_ID, the private key and that the App "
                f"is installed on {spec.repo}",
                retry=retry,
            ) from None
        except OSError as exc:  # requests' connection errors are OSErrors
            raise JobFailure(
                f"GitHub cannot be reached at {self.settings.github_api_url}: {exc}", retry=True
            ) from None

    def _prepare(self, where: Path, spec: JobSpec, inst: Installation) -> Workspace:
        if where.exists():
            shutil.rmtree(where)
        repo, out, conf = where / "repo", where / "out", where / "config"
        out.mkdir(parents=True)
        conf.mkdir()
        url = self._clone_url(spec.repo, spec.clone_url)
        header = inst.git_auth_header() if url.startswith("https://") else ""
        _git(where, "clone", "--quiet", "--no-checkout", url, str(repo), header=header)
        for sha, what in ((spec.head_sha, "head"), (spec.base_sha, "base")):
            if sha and not _has(repo, sha):
                self._fetch_missing(repo, spec, sha, header)
                if not _has(repo, sha):
                    raise JobFailure(
                        f"the {what} commit {sha[:7]} is not in {spec.repo} (was "
                        "the branch force-pushed?)",
                        retry=False,
                    )
        config = None
        text = _show(repo, f"origin/{spec.default_branch}", CONFIG_FILE)
        if text is not None:
            config = conf / CONFIG_FILE
            config.write_bytes(text)
        return Workspace(repo=repo, out=out, config=config, mlflow=self._mlflow_dir(spec))

    def _clone_url(self, full_name: str, payload_url: str) -> str:
        template = self.settings.clone_url_template
        if not template:
            return payload_url
        owner, _, name = full_name.partition("/")
        return template.format(full_name=full_name, owner=owner, name=name)

    def _fetch_missing(self, repo: Path, spec: JobSpec, sha: str, header: str) -> None:
        # GitHub serves a PR's head (a fork's too) as refs/pull/N/head of the base repository.
        refs = [f"+refs/pull/{spec.pr}/head:refs/remotes/origin/pr/{spec.pr}"] if spec.pr else []
        for ref in (*refs, sha):
            if _git(repo, "fetch", "--quiet", "origin", ref, header=header, check=False) == 0:
                return

    def _mlflow_dir(self, spec: JobSpec) -> Path | None:
        if self.settings.tracking_uri:
            return None
        folder = self.settings.data_dir / "mlflow" / spec.repo.replace("/", "__")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _stages(self, ws: Workspace, spec: JobSpec) -> tuple[str, ...]:
        if spec.stages:
            return spec.stages
        if ws.config is None:
            return STAGES
        config = load_text(
            ws.config.read_text(encoding="utf-8"), source=f"{CONFIG_FILE} @ {spec.default_branch}"
        )
        return tuple(s for s in STAGES if s in config.stages)

    def _gate(self, job: Job, ws: Workspace) -> Report:
        outcome = self.sandbox.run(
            job.id,
            lambda w: command(job.spec, w, self.settings),
            ws,
            timeout_s=self.settings.job_timeout_s,
            env={},
        )
        (ws.out.parent / "gate.log").write_text(outcome.log, encoding="utf-8")
        tail = "\n".join(outcome.log.strip().splitlines()[-15:])
        if outcome.timed_out:
            raise JobFailure(
                f"the gate took longer than {self.settings.job_timeout_s:.0f} s "
                "(DLGATE_JOB_TIMEOUT) and was stopped",
                retry=False,
            )
        if outcome.oom_killed:
            raise JobFailure(
                f"the gate ran out of memory ({self.settings.sandbox_memory}, "
                "DLGATE_SANDBOX_MEMORY)",
                retry=False,
            )
        if outcome.exit_code == 2:
            raise JobFailure(
                f"the gate refused its configuration or arguments:\n{tail}", retry=False
            )
        if outcome.exit_code not in (0, 1):
            raise JobFailure(f"the gate crashed (exit {outcome.exit_code}):\n{tail}", retry=True)
        path = ws.out / REPORT
        try:
            return Report.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise JobFailure(
                f"the gate exited {outcome.exit_code} without a readable report "
                f"({type(exc).__name__}: {exc}):\n{tail}",
                retry=True,
            ) from None

    def _failed(
        self,
        job: Job,
        attempt: int,
        final: bool,
        reason: str,
        *,
        retry: bool,
        publisher: Publisher | None,
        stages: tuple[str, ...],
    ) -> Result:
        log.warning("job %s attempt %d: %s", job.id, attempt, reason)
        if retry and not final:
            return Result(JobState.QUEUED, error=reason, retry=True)
        if publisher is None:
            self.fail_abandoned(job, reason)
        else:
            try:
                if not publisher.check_run_ids:
                    # It failed before any check run existed (e.g. a broken dlgate.yml): make
                    # them, so the PR shows why instead of waiting for checks that never come.
                    publisher.start(stages)
                publisher.fail_all(reason, stages)
            except PublishError as exc:
                log.error("job %s: could not complete its check runs: %s", job.id, exc)
        return Result(JobState.FAILED, error=reason)


def command(spec: JobSpec, ws: Workspace, settings: Settings) -> list[str]:
    """The `dlgate` arguments that gate `spec` in `ws` (paths as the sandbox sees them)."""
    uri = settings.tracking_uri or f"sqlite:///{ws.mlflow}/mlflow.db"
    common = [
        "--repo",
        str(ws.repo),
        "--json",
        str(ws.out / REPORT),
        "--out",
        str(ws.out),
        "--tracking-uri",
        uri,
    ]
    if ws.config is not None:
        common += ["--config", str(ws.config)]
    for stage in spec.stages:
        common += ["--stage", stage]
    if spec.kind == "baseline":
        return ["baseline", *common, "--rev", spec.head_sha, "--ref", spec.ref]
    if spec.kind == "release":
        return ["release", *common, "--tag", spec.ref]
    args = ["run", *common, "--base", spec.base_sha, "--head", spec.head_sha, "--kind", spec.kind]
    if spec.pr is not None:
        args += ["--pr", str(spec.pr)]
    return args


_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def _git(cwd: Path, *args: str, header: str = "", check: bool = True) -> int:
    pre = ["-c", f"http.extraHeader={header}"] if header else []  # this command only
    proc = subprocess.run(
        ["git", *pre, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **_GIT_ENV},
        check=False,
    )
    if check and proc.returncode != 0:
        raise JobFailure(f"git {args[0]} failed: {proc.stderr.strip()[-500:]}", retry=True)
    return proc.returncode


def _has(repo: Path, sha: str) -> bool:
    return _git(repo, "cat-file", "-e", f"{sha}^{{commit}}", check=False) == 0


def _show(repo: Path, rev: str, path: str) -> bytes | None:
    proc = subprocess.run(
        ["git", "show", f"{rev}:{path}"],
        cwd=repo,
        capture_output=True,
        env={**os.environ, **_GIT_ENV},
        check=False,
    )
    return proc.stdout if proc.returncode == 0 else None
