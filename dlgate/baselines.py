"""Baselines in MLflow: one run per gated commit, found again by its git sha.

A run carries tags (`dlgate.sha`, `dlgate.ref`, `dlgate.kind`, `dlgate.pr`, `dlgate.tag`,
`dlgate.conclusion`), the headline metrics, and artifacts under `dlgate/` (the report, per-sample
predictions, dataset statistics, the ONNX model). The default store is an embedded SQLite
database in `<repo>/.dlgate/`; a team points `--tracking-uri` / `MLFLOW_TRACKING_URI` at an
MLflow server instead.

Only `MlflowClient` is used, never MLflow's fluent API and its global active run, so several
stores can be open in one process. Every MLflow, SQLAlchemy, HTTP and file-system error is
translated into `BaselineError` here, with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from dlgate import git
from dlgate.errors import BaselineError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

KINDS = ("baseline", "pr", "release", "merge_group")
ARTIFACT_DIR = "dlgate"  # every artifact dlgate logs lives under this run folder
REPORT = "report.json"

# A baseline run is recorded after its commit was made; this much clock skew between the
# machine that committed and the one that recorded is tolerated (see `find_baseline`).
_CLOCK_SKEW_S = 24 * 3600
_PROBE_TIMEOUT_S = 10.0
_PAGE = 1000
_SHA = re.compile(r"[0-9a-f]{40}")
_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+.*)?")
_NO_MAPPING: Mapping[str, Any] = MappingProxyType({})


def default_tracking_uri(repo: Path) -> str:
    """`$MLFLOW_TRACKING_URI` if set, else the embedded store `<repo>/.dlgate/mlflow.db`.

    The `.dlgate/` folder is created here with a `.gitignore` of its own, so the store never
    shows up as untracked files in the user's repository."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    folder = repo.resolve() / ".dlgate"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# dlgate's local baseline store\n*\n")
    except OSError as exc:
        raise BaselineError(
            f"cannot create the local baseline store in {folder}: {exc.strerror}; make the "
            "repository writable or pass --tracking-uri"
        ) from None
    return f"sqlite:///{folder / 'mlflow.db'}"


@dataclass(frozen=True)
class RunRecord:
    """One recorded run, as read back from the store."""

    run_id: str
    sha: str
    kind: str
    ref: str
    pr: int | None
    tag: str | None
    metrics: dict[str, float]
    start_time: datetime  # UTC
    artifact_uri: str
    conclusion: str | None = None  # the report's overall conclusion, if one was recorded

    @property
    def label(self) -> str:
        """How a report names the run: `main @ abc1234`, `v1.4.0 @ abc1234`."""
        return f"{_short_ref(self.tag or self.ref)} @ {self.sha[:7]}"


class Store:
    """An MLflow experiment holding dlgate's runs. Open with `Store.open`; close (or use as a
    context manager) to remove the files `download` fetched."""

    def __init__(self, client: MlflowClient, tracking_uri: str, experiment_id: str) -> None:
        self._client = client
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self._downloads: Path | None = None

    @classmethod
    def open(cls, tracking_uri: str, experiment: str = "dlgate") -> Store:
        """Connect to the store at `tracking_uri`, creating `experiment` there if needed."""
        from mlflow import MlflowClient

        _quiet_mlflow()  # after the import: importing mlflow configures its loggers

        artifact_location = None
        db = _sqlite_path(tracking_uri)
        if db is not None:
            artifact_location = _prepare_sqlite(db, tracking_uri)
        elif tracking_uri.startswith(("http://", "https://")):
            _probe(tracking_uri)
        with _translated(tracking_uri, "opening the store"):
            # Constructing the client runs the SQLite migrations on a fresh database.
            client = MlflowClient(tracking_uri=tracking_uri)
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                exp_id = _create_experiment(client, experiment, artifact_location)
            elif exp.lifecycle_stage == "deleted":
                raise BaselineError(
                    f"the MLflow experiment {experiment!r} in {tracking_uri} is deleted; restore "
                    f"it (`mlflow experiments restore --experiment-id {exp.experiment_id}`) or "
                    "delete it for good (`mlflow gc`)"
                )
            else:
                exp_id = exp.experiment_id
        return cls(client, tracking_uri, exp_id)

    def close(self) -> None:
        if self._downloads is not None:
            shutil.rmtree(self._downloads, ignore_errors=True)
            self._downloads = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def record(
        self,
        *,
        sha: str,
        kind: str,
        ref: str,
        metrics: Mapping[str, float],
        report_json: str,
        json_artifacts: Mapping[str, Any] = _NO_MAPPING,
        files: Mapping[str, Path] = _NO_MAPPING,
        pr: int | None = None,
        tag: str | None = None,
        params: Mapping[str, str] = _NO_MAPPING,
    ) -> RunRecord:
        """Record one gated commit as a finished run. `json_artifacts` are serialized to JSON,
        `files` copied; both are named relative to the run's `dlgate/` folder. A run that fails
        half-way is marked FAILED, so lookups never see it."""
        _check_sha(sha)
        if kind not in KINDS:
            raise ValueError(f"unknown run kind {kind!r}; expected one of {', '.join(KINDS)}")
        for name in (*json_artifacts, *files):
            _check_name(name)
        for name, path in files.items():
            if not path.is_file():
                raise ValueError(f"artifact {name!r}: {path} is not a file")
        conclusion = json.loads(report_json).get("conclusion")
        tags = {
            "dlgate.sha": sha,
            "dlgate.ref": ref,
            "dlgate.kind": kind,
            "mlflow.source.git.commit": sha,  # MLflow's UI shows this as the run's commit
        }
        if pr is not None:
            tags["dlgate.pr"] = str(pr)
        if tag is not None:
            tags["dlgate.tag"] = tag
        if conclusion is not None:
            tags["dlgate.conclusion"] = str(conclusion)
        name = f"{kind} {_short_ref(tag or ref)}@{sha[:7]}"
        from mlflow.entities import Metric, Param

        with _translated(self.tracking_uri, f"recording the {kind} run of {sha[:7]}"):
            run = self._client.create_run(self.experiment_id, tags=tags, run_name=name)
            run_id = run.info.run_id
            try:
                now = int(time.time() * 1000)
                self._client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                    params=[Param(k, str(v)) for k, v in params.items()],
                )
                self._upload(run_id, report_json, json_artifacts, files)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._terminate(run_id, "FAILED")
                raise
            self._terminate(run_id, "FINISHED")
            return _record(self._client.get_run(run_id))

    def _upload(
        self,
        run_id: str,
        report_json: str,
        json_artifacts: Mapping[str, Any],
        files: Mapping[str, Path],
    ) -> None:
        # Stage everything in one folder and upload it in one call.
        with tempfile.TemporaryDirectory(prefix="dlgate-record-") as tmp:
            root = Path(tmp)
            (root / REPORT).write_text(report_json, encoding="utf-8")
            for name, value in json_artifacts.items():
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(value, allow_nan=True), encoding="utf-8")
            for name, path in files.items():
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            self._client.log_artifacts(run_id, str(root), artifact_path=ARTIFACT_DIR)

    def _terminate(self, run_id: str, status: str) -> None:
        # For a server store MLflow prints "View run … at: URL" to stdout; the CLI's output is
        # its own. (MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT would need a global env change.)
        with contextlib.redirect_stdout(io.StringIO()):
            self._client.set_terminated(run_id, status=status)

    def tag_run(self, run: RunRecord, key: str, value: str) -> None:
        with _translated(self.tracking_uri, f"tagging run {run.run_id}"):
            self._client.set_tag(run.run_id, key, value)

    def register_model(
        self,
        run: RunRecord,
        name: str,
        onnx_path_in_run: str,
        *,
        tags: Mapping[str, str] = _NO_MAPPING,
        alias: str | None = None,
    ) -> str:
        """Register the run's ONNX file (named relative to its `dlgate/` folder, like
        `model.onnx`) as a new version of registered model `name`; returns the version."""
        _check_name(onnx_path_in_run)
        source = f"{run.artifact_uri.rstrip('/')}/{ARTIFACT_DIR}/{onnx_path_in_run}"
        version_tags = {"dlgate.sha": run.sha, "dlgate.kind": run.kind, **tags}
        if run.tag:
            version_tags.setdefault("dlgate.tag", run.tag)
        with _translated(self.tracking_uri, f"registering model {name!r}"):
            try:
                self._client.create_registered_model(name)
            except Exception as exc:
                if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                    raise
            version = self._client.create_model_version(
                name, source, run_id=run.run_id, tags=version_tags
            )
            if alias is not None:
                self._client.set_registered_model_alias(name, alias, version.version)
            return str(version.version)

    # -- reading -----------------------------------------------------------------------------

    def run_for(self, sha: str, kinds: Sequence[str] = ("baseline",)) -> RunRecord | None:
        """The latest finished run recorded for `sha` with one of `kinds`."""
        _check_sha(sha)
        where = f"tags.`dlgate.sha` = '{sha}'"
        if len(kinds) == 1:
            where += f" AND {_kind_filter(kinds[0])}"
        for run in self._search(where, f"looking up the run of {sha[:7]}"):
            if run.kind in kinds:
                return run
        return None

    def find_baseline(
        self, repo: Path, sha: str, max_distance: int
    ) -> tuple[RunRecord, int] | None:
        """`sha`'s own baseline run (distance 0), else that of its nearest first-parent
        ancestor at most `max_distance` commits back, with the distance; None if none has one.

        MLflow's filter language has no IN (or OR) for tags, so instead of one query per
        ancestor this reads, in one paged query, every baseline recorded since the oldest
        candidate commit was made, and matches them against the candidates here."""
        _check_sha(sha)
        candidates = git.first_parents(repo, sha, max_distance)
        distance = {c: i for i, c in enumerate(candidates)}
        made = git.git(repo, "show", "-s", "--format=%ct", *candidates).split()
        since_ms = (min(int(t) for t in made) - _CLOCK_SKEW_S) * 1000
        where = f"{_kind_filter('baseline')} AND attributes.start_time >= {since_ms}"
        best: tuple[RunRecord, int] | None = None
        for run in self._search(where, f"looking up the baseline of {sha[:7]}"):
            d = distance.get(run.sha)
            # Newest first, so the first run found for a commit is its latest one.
            if d is not None and (best is None or d < best[1]):
                best = (run, d)
                if d == 0:
                    break
        return best

    def releases(self) -> list[RunRecord]:
        """Every finished release run, oldest version first (semantic version of the tag, then
        time; tags that are no version come first, by time). Re-recorded tags appear twice."""
        runs = list(self._search(_kind_filter("release"), "listing the releases"))
        return sorted(runs, key=lambda r: (_version_key(r.tag or ""), r.start_time))

    def load_json(self, run: RunRecord, name: str) -> Any:
        """The run's JSON artifact `dlgate/<name>`, parsed (no local copy is kept)."""
        with tempfile.TemporaryDirectory(prefix="dlgate-json-") as tmp:
            path = self._fetch(run, name, Path(tmp))
            text = path.read_bytes()
        try:
            return json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BaselineError(
                f"artifact {ARTIFACT_DIR}/{name} of run {run.run_id} ({run.label}) in "
                f"{self.tracking_uri} is not valid JSON ({exc}); record the baseline again "
                "(`dlgate baseline`)"
            ) from None

    def download(self, run: RunRecord, name: str, dest: Path | None = None) -> Path:
        """A local copy of the run's artifact `dlgate/<name>`: under `dest` if given, else in
        a folder of the store's that `close` removes."""
        if dest is None:
            if self._downloads is None:
                self._downloads = Path(tempfile.mkdtemp(prefix="dlgate-artifacts-"))
            dest = self._downloads / run.run_id
        dest.mkdir(parents=True, exist_ok=True)
        return self._fetch(run, name, dest)

    def _fetch(self, run: RunRecord, name: str, dest: Path) -> Path:
        _check_name(name)
        path = f"{ARTIFACT_DIR}/{name}"
        missing = BaselineError(
            f"run {run.run_id} ({run.label}) in {self.tracking_uri} has no artifact {path}; "
            "record the baseline again (`dlgate baseline`)"
        )
        try:
            with _translated(self.tracking_uri, f"downloading {path} of run {run.run_id}"):
                local = Path(self._client.download_artifacts(run.run_id, path, dst_path=str(dest)))
        except BaselineError:
            # MLflow says "failed to download" for a missing file too; tell the two apart.
            if not self._has_artifact(run.run_id, path):
                raise missing from None
            raise
        if not local.is_file():  # a folder of that name
            raise missing
        return local

    def _has_artifact(self, run_id: str, path: str) -> bool:
        parent = str(PurePosixPath(path).parent)
        with _translated(self.tracking_uri, f"listing the artifacts of run {run_id}"):
            return any(f.path == path for f in self._client.list_artifacts(run_id, parent))

    def _search(self, where: str, what: str) -> Iterator[RunRecord]:
        """Finished runs matching `where`, newest first, page by page."""
        token: str | None = None
        while True:
            with _translated(self.tracking_uri, what):
                page = self._client.search_runs(
                    [self.experiment_id],
                    filter_string=f"{where} AND attributes.status = 'FINISHED'",
                    max_results=_PAGE,
                    order_by=["attributes.start_time DESC"],
                    page_token=token,
                )
            for run in page:
                yield _record(run)
            token = page.token
            if not token:
                return


# -- helpers ---------------------------------------------------------------------------------


def _record(run: Run) -> RunRecord:
    tags = run.data.tags
    pr = tags.get("dlgate.pr")
    return RunRecord(
        run_id=run.info.run_id,
        sha=tags.get("dlgate.sha", ""),
        kind=tags.get("dlgate.kind", ""),
        ref=tags.get("dlgate.ref", ""),
        pr=int(pr) if pr and pr.isdigit() else None,
        tag=tags.get("dlgate.tag"),
        metrics=dict(run.data.metrics),
        start_time=datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC),
        artifact_uri=run.info.artifact_uri,
        conclusion=tags.get("dlgate.conclusion"),
    )


def _create_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception as exc:
        # Another process created it between our lookup and our create.
        if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
            raise
    exp = client.get_experiment_by_name(name)
    if exp is None:  # pragma: no cover - deleted again in the meantime
        raise BaselineError(f"the MLflow experiment {name!r} vanished while it was being created")
    return str(exp.experiment_id)


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def _prepare_sqlite(db: Path, uri: str) -> str:
    """Create the database's folder; its artifacts live in `artifacts/` next to it (MLflow's
    default would be ./mlruns in whatever the current directory is)."""
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BaselineError(
            f"cannot create the folder of the baseline store {uri}: {exc.strerror}; pass a "
            "writable --tracking-uri"
        ) from None
    return (db.parent.resolve() / "artifacts").as_uri()


def _probe(uri: str) -> None:
    """Fail fast on a server that is not there: MLflow itself retries a refused connection
    for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES, with exponential backoff)."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=_PROBE_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        return  # something answers; MLflow's own requests will tell what it is
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, ssl.SSLError):
            return  # TLS settings differ between urllib and MLflow's requests; let MLflow try
        raise BaselineError(
            f"the MLflow server at {uri} is unreachable ({reason}); start it, or pass "
            "--tracking-uri / set MLFLOW_TRACKING_URI to a running server (unset it to use "
            "the local store in .dlgate/)"
        ) from None


@contextlib.contextmanager
def _translated(uri: str, what: str) -> Iterator[None]:
    """The one boundary where foreign exceptions become `BaselineError`."""
    import requests
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    try:
        yield
    except BaselineError:
        raise
    except MlflowException as exc:
        raise BaselineError(f"{what} in {uri} failed: {_advice(exc.message)}") from exc
    except (sqlalchemy.exc.SQLAlchemyError, requests.RequestException, OSError) as exc:
        raise BaselineError(f"{what} in {uri} failed: {_advice(str(exc))}") from exc
    except ImportError as exc:  # e.g. postgresql:// without a driver installed
        raise BaselineError(
            f"{what} in {uri} failed: {exc}; install the database driver this URI needs"
        ) from exc


def _advice(message: str) -> str:
    first = message.strip().splitlines()[0].rstrip(".") if message.strip() else "unknown error"
    if "file is not a database" in message:
        return f"{first}; the file is no MLflow database: move it away to start a fresh store"
    if "database is locked" in message:
        return f"{first}; another process is writing to the store: try again"
    if "Max retries exceeded" in message or "Connection refused" in message:
        return (
            f"{first}; the server stopped answering: check it is running, or pass another "
            "--tracking-uri"
        )
    return f"{first}; check the store is reachable and writable, or pass another --tracking-uri"


def _quiet_mlflow() -> None:
    # MLflow logs INFO lines to stderr on first use ("Creating initial MLflow database
    # tables..."); the CLI's output is its own. Warnings and errors still get through.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _kind_filter(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}; expected one of {', '.join(KINDS)}")
    return f"tags.`dlgate.kind` = '{kind}'"


def _check_sha(sha: str) -> None:
    # Runs are keyed by the full sha: a short one would silently find nothing.
    if not _SHA.fullmatch(sha):
        raise ValueError(f"expected a full 40-character commit sha, got {sha!r}")


def _check_name(name: str) -> None:
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ".." in parts or "\\" in name:
        raise ValueError(f"artifact name {name!r} must be a relative path inside the run")


def _short_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/", "refs/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


def _version_key(tag: str) -> tuple[Any, ...]:
    """Semantic-version order: v1.9.0 < v1.10.0, 1.0.0-rc.1 < 1.0.0; non-versions first."""
    m = _VERSION.fullmatch(_short_ref(tag))
    if m is None:
        return (0,)
    numbers = tuple(int(g or 0) for g in m.group(1, 2, 3))
    pre = m.group(4)
    if pre is None:
        return (1, numbers, (1,))
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (1, numbers, (0, ids))
