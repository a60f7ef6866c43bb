"""The gate: resolve revisions, read the configuration from the base, run the stages, report.

`run(request)` is what `dlgate run`, `dlgate baseline`, `dlgate release`, the Action and the
service's workers all call.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dlgate import __version__, git
from dlgate.checkout import checkout
from dlgate.config import CONFIG_FILE, Config, default_config, load_text
from dlgate.context import BACKGROUND, Context, fulfil
from dlgate.errors import ConfigError, UsageError
from dlgate.pipeline import TRAINING_STAGES, start_training
from dlgate.report import STAGES, BaselineInfo, Report, Revision
from dlgate.runner import prepare, run_stages

if TYPE_CHECKING:
    from dlgate.baselines import RunRecord, Store

KINDS = ("pr", "baseline", "release", "merge_group")
T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    repo: Path
    head: str
    base: str | None = None
    kind: str = "pr"
    config_file: Path | None = None  # an explicit file; default: dlgate.yml at the base
    stages: tuple[str, ...] = ()  # empty: the configured stages
    out: Path | None = None
    tracking_uri: str | None = None
    ref: str = ""  # the branch or tag the run is for
    pr: int | None = None
    record: bool | None = None  # default: record baseline, release and merge_group runs


def run(request: Request, progress: Callable[[str], None] = lambda _m: None) -> Report:
    if request.kind not in KINDS:
        raise UsageError(f"unknown run kind {request.kind!r}; one of {', '.join(KINDS)}")
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    git_dir = git.toplevel(request.repo)
    head = Revision(request.head, git.resolve(git_dir, request.head))
    base = Revision(request.base, git.resolve(git_dir, request.base)) if request.base else None
    merge_base = git.merge_base(git_dir, base.sha, head.sha) if base else None
    # A PR cannot loosen its own gate: the configuration comes from the merge base.
    config_rev = merge_base or head.sha
    config_text = _read_config(git_dir, config_rev, request.config_file)
    core = _core_config(config_text)
    out = request.out or git_dir / ".dlgate" / "runs" / f"{request.kind}-{head.sha[:7]}"
    with checkout(git_dir, head.sha) as tree:
        ctx = Context(
            repo=tree,
            git_dir=git_dir,
            head=head,
            base=base,
            merge_base=merge_base,
            config=core or default_config(core_only=True),
            out=out,
            kind=request.kind,
            progress=progress,
        )
        try:
            if core is not None and set(_stages(request.stages, core)) & set(TRAINING_STAGES):
                # The training command needs only the core of the configuration: it starts
                # before the stages' sections are read (which imports every check).
                start_training(ctx)
            config = ctx.config = _parse_config(config_text)
            stages = _stages(request.stages, config)
            out.mkdir(parents=True, exist_ok=True)
            uri = request.tracking_uri or config.baseline.tracking_uri
            ctx.tracking_uri = uri or _default_uri(git_dir)
            prepare(ctx, stages)
            results = _in_background(lambda: run_stages(stages, ctx))
        finally:
            ctx.close()  # background work ends before the checkout goes away
        report = Report(
            kind=request.kind,
            repo=str(git_dir),
            ref=request.ref,
            head=head,
            base=base,
            merge_base=merge_base,
            baseline=ctx.baseline_info,
            stages=tuple(results),
            started_at=started_at,
            duration_s=round(time.perf_counter() - started, 3),
            dlgate_version=__version__,
            config_source=config.source,
            metrics=dict(ctx.metrics),
        )
        (out / "report.json").write_text(report.to_json(), encoding="utf-8")
        record = request.record
        if record is None:
            record = request.kind in ("baseline", "release", "merge_group")
        if record:
            progress(f"recording the {request.kind} run in MLflow")
            _record(ctx, report, request)
    return report


def _in_background(work: Callable[[], T]) -> T:
    """`work` in a thread below the priority of what `prepare` started (`context.BACKGROUND`):
    while the training command trains, the gate's own work (imports, MLflow, the data checks)
    takes only the CPU time it leaves. On Linux the niceness is the thread's own, and what it
    starts inherits it; it ends with the thread."""
    result: Future[T] = Future()
    args = (result, work, BACKGROUND)
    thread = threading.Thread(target=fulfil, args=args, name="dlgate-stages", daemon=True)
    thread.start()
    thread.join()
    return result.result()


def _stages(requested: tuple[str, ...], config: Config) -> tuple[str, ...]:
    for name in requested:
        if name not in STAGES:
            raise UsageError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
    chosen = requested or config.stages
    return tuple(s for s in STAGES if s in chosen)


def load_config(git_dir: Path, rev: str, explicit: Path | None) -> Config:
    return _parse_config(_read_config(git_dir, rev, explicit))


ConfigText = tuple[str | None, str]  # the text (None: there is no file), where it came from


def _read_config(git_dir: Path, rev: str, explicit: Path | None) -> ConfigText:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                "no such file; pass --config an existing dlgate.yml", file=str(explicit)
            )
        return explicit.read_text(encoding="utf-8"), str(explicit)
    blob = git.show(git_dir, rev, CONFIG_FILE)
    if blob is None:
        return None, f"defaults (no {CONFIG_FILE} at {rev[:7]})"
    source = f"{CONFIG_FILE} @ {rev[:7]}"
    try:
        return blob.decode("utf-8"), source
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=source) from None


def _parse_config(config: ConfigText, *, core_only: bool = False) -> Config:
    text, source = config
    if text is None:
        return default_config(source, core_only=core_only)
    return load_text(text, source=source, core_only=core_only)


def _core_config(config: ConfigText) -> Config | None:
    """The core sections, or None where they do not load: the whole load says why."""
    try:
        return _parse_config(config, core_only=True)
    except ConfigError:
        return None


def _default_uri(git_dir: Path) -> str:
    from dlgate.baselines import default_tracking_uri

    return default_tracking_uri(git_dir)


def _record(ctx: Context, report: Report, request: Request) -> None:
    from dlgate.baselines import Store

    with Store.open(ctx.tracking_uri, ctx.config.baseline.experiment) as store:
        run = store.record(
            sha=report.head.sha,
            kind=report.kind,
            ref=request.ref,
            metrics=report.metrics,
            report_json=report.to_json(),
            json_artifacts=ctx.record_json,
            files=ctx.record_files,
            pr=request.pr,
            tag=request.ref if report.kind == "release" else None,
        )
        ctx.progress(f"recorded run {run.run_id}")
        _register(ctx, store, run, report, request)


def _register(ctx: Context, store: Store, run: RunRecord, report: Report, request: Request) -> None:
    """Keep the model registry in step: a passing release's model becomes a version tagged
    with the release; a passing baseline of the main branch (`dlgate baseline`, not one
    computed for a PR) moves the alias `accuracy.release.alias` to its model."""
    from dlgate.checks.accuracy import MODEL, AccuracySettings

    if MODEL not in ctx.record_files or not report.passed:
        return
    settings = ctx.config.get(AccuracySettings).release
    name = settings.model or ctx.config.baseline.experiment
    if report.kind == "release":
        tag = request.ref.removeprefix("refs/tags/")
        alias = None
        tags = {"dlgate.release": tag}
    elif report.kind == "baseline" and settings.alias:
        if request.ref.removeprefix("refs/heads/") != ctx.config.baseline.branch:
            return
        alias, tags = settings.alias, {}
    else:
        return
    version = store.register_model(run, name, MODEL, tags=tags, alias=alias)
    ctx.progress(
        f"registered model {name!r} version {version}" + (f" (alias {alias!r})" if alias else "")
    )


PREDICTIONS = "predictions.json"


@dataclass(frozen=True)
class Baseline:
    """The reference a PR is compared with: its run's metrics, and its artifacts on demand."""

    info: BaselineInfo
    metrics: dict[str, float]
    # Loads a JSON artifact of the baseline run by name (e.g. "data_stats.json"); raises
    # BaselineError when the run has none.
    load_json: Callable[[str], Any]
    # A local copy of an artifact of the run (name, folder) -> file; raises BaselineError.
    download: Callable[[str, Path], Path] | None = None

    @functools.cached_property
    def predictions(self) -> list[dict[str, Any]]:
        """Per-sample predictions (loaded on first use; a BaselineError when there are none)."""
        rows: list[dict[str, Any]] = self.load_json(PREDICTIONS)
        return rows


def baseline_for(ctx: Context) -> Baseline | None:
    """The merge base's baseline: its own run, else the nearest first-parent ancestor's, else
    (per `baseline.missing`) computed now from the merge base and recorded. Memoized."""
    return ctx.memo("gate.baseline", lambda: _recorded_or_computed(ctx))


def _recorded_or_computed(ctx: Context) -> Baseline | None:
    found = recorded_baseline(ctx)
    if found is None:
        return _compute(ctx)
    ctx.baseline_info = found.info  # the report says which baseline the checks compared with
    return found


def recorded_baseline(ctx: Context) -> Baseline | None:
    """The baseline already recorded for the merge base (its own run or the nearest
    first-parent ancestor's), never computing one. Memoized."""
    return ctx.memo("gate.baseline.recorded", lambda: _find(ctx))


def _find(ctx: Context) -> Baseline | None:
    from dlgate.baselines import Store

    if ctx.merge_base is None:
        return None
    settings = ctx.config.baseline
    store = Store.open(ctx.tracking_uri, settings.experiment)
    found = store.find_baseline(ctx.git_dir, ctx.merge_base, settings.max_distance)
    if found is None:
        return None
    record, distance = found
    how = "exact" if distance == 0 else "ancestor"
    info = BaselineInfo(how, record.sha, distance, record.run_id, ctx.tracking_uri)
    return _baseline(info, store, record)


def _compute(ctx: Context) -> Baseline | None:
    from dlgate.baselines import Store
    from dlgate.errors import BaselineError

    if ctx.merge_base is None:
        return None
    settings = ctx.config.baseline
    if settings.missing != "compute":
        ctx.baseline_info = BaselineInfo("none", None, 0, None, ctx.tracking_uri)
        return None
    ctx.progress(f"no baseline recorded for {ctx.merge_base[:7]}: computing it now")
    # Only the stages whose products a baseline holds, and only those the gate runs.
    stages = tuple(s for s in ("data", "accuracy") if s in ctx.config.stages) or ("accuracy",)
    sub = Request(
        repo=ctx.git_dir,
        head=ctx.merge_base,
        kind="baseline",
        out=ctx.out / "baseline",
        tracking_uri=ctx.tracking_uri,
        ref=f"{settings.branch} (computed)",
        stages=stages,
        record=True,
    )
    report = run(sub, lambda m: ctx.progress(f"  baseline: {m}"))
    store = Store.open(ctx.tracking_uri, settings.experiment)
    recorded = store.run_for(report.head.sha)
    if recorded is None:
        raise BaselineError(
            f"the baseline computed from {ctx.merge_base[:7]} was not recorded in "
            f"{ctx.tracking_uri}; record it with `dlgate baseline --rev {ctx.merge_base[:7]}`"
        )
    ctx.baseline_info = BaselineInfo("computed", recorded.sha, 0, recorded.run_id, ctx.tracking_uri)
    load = _baseline(ctx.baseline_info, store, recorded).load_json
    why = _no_predictions(report)
    base = recorded.sha[:7]

    def load_computed(name: str) -> Any:
        try:
            return load(name)
        except BaselineError as exc:
            if name != PREDICTIONS or not why:
                raise
            raise BaselineError(
                f"computing the baseline from the merge base {base} gave no predictions: {why}"
            ) from exc

    return _baseline(ctx.baseline_info, store, recorded, load_computed)


def _baseline(
    info: BaselineInfo, store: Store, record: RunRecord, load: Callable[[str], Any] | None = None
) -> Baseline:
    return Baseline(
        info,
        dict(record.metrics),
        load or (lambda name: store.load_json(record, name)),
        lambda name, folder: store.download(record, name, folder),
    )


def _no_predictions(report: Report) -> str:
    """Why a computed baseline run holds no predictions: the base's own accuracy failure."""
    result = report.check("accuracy.accuracy")
    if result is None:
        return "its accuracy stage did not run"
    return (
        f"accuracy.accuracy {result.outcome.value}: {result.message}"
        if result.outcome.blocks
        else ""
    )
