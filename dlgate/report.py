"""The report: one frozen, JSON-serializable document per run.

Every view (terminal, Markdown, check runs, annotations, HTML) is rendered from a `Report`;
nothing else carries results. `Report.to_dict()` matches `dlgate/schema/report.schema.json`.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
STAGES: tuple[str, ...] = ("changes", "data", "training", "export", "accuracy")

# JSON-compatible measurement values.
Value = bool | int | float | str | None | list[Any] | dict[str, Any]


class Outcome(enum.StrEnum):
    """The closed vocabulary of check outcomes. `error` = the check broke; `fail` = the
    pipeline is bad. Both block the merge."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"

    @property
    def blocks(self) -> bool:
        return self in (Outcome.FAIL, Outcome.ERROR)

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Outcome.SKIP: 0, Outcome.PASS: 1, Outcome.WARN: 2, Outcome.FAIL: 3, Outcome.ERROR: 4}


class Conclusion(enum.StrEnum):
    """A stage's or a run's verdict. Maps onto GitHub check-run conclusions in the publisher;
    a refusal is always `failure` (never `neutral`, which satisfies a required check)."""

    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"


def conclude(outcomes: Iterable[Outcome]) -> Conclusion:
    seen = list(outcomes)
    if any(o.blocks for o in seen):
        return Conclusion.FAILURE
    if not seen or all(o is Outcome.SKIP for o in seen):
        return Conclusion.SKIPPED
    return Conclusion.SUCCESS


class Level(enum.StrEnum):
    NOTICE = "notice"
    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True)
class Annotation:
    """A finding tied to a file in the repository (a PR file annotation)."""

    path: str
    message: str
    level: Level = Level.FAILURE
    start_line: int = 1
    end_line: int | None = None
    title: str = ""

    def __post_init__(self) -> None:
        # One canonical form (a one-line annotation ends where it starts), so that a report
        # read back from its JSON equals the report that wrote it.
        if self.end_line is None:
            object.__setattr__(self, "end_line", self.start_line)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "message": self.message,
            "level": self.level.value,
            "start_line": self.start_line,
            "end_line": self.end_line if self.end_line is not None else self.start_line,
            "title": self.title,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Annotation:
        return cls(
            path=d["path"],
            message=d["message"],
            level=Level(d["level"]),
            start_line=d["start_line"],
            end_line=d["end_line"],
            title=d.get("title", ""),
        )


@dataclass(frozen=True)
class Finding:
    """What a check function returns: the runner stamps id and duration on it."""

    outcome: Outcome
    message: str
    measurements: Mapping[str, Value] = field(default_factory=dict)
    annotations: Sequence[Annotation] = ()
    details: str = ""  # longer Markdown shown under the check (lists, tables); never HTML
    artifacts: Sequence[str] = ()  # paths relative to the run's output folder


@dataclass(frozen=True)
class CheckResult:
    id: str
    outcome: Outcome
    message: str
    measurements: Mapping[str, Value] = field(default_factory=dict)
    annotations: tuple[Annotation, ...] = ()
    details: str = ""
    artifacts: tuple[str, ...] = ()
    duration_s: float = 0.0

    @classmethod
    def from_finding(cls, check_id: str, finding: Finding, duration_s: float) -> CheckResult:
        return cls(
            id=check_id,
            outcome=finding.outcome,
            message=finding.message,
            measurements=dict(finding.measurements),
            annotations=tuple(finding.annotations),
            details=finding.details,
            artifacts=tuple(finding.artifacts),
            duration_s=round(duration_s, 3),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outcome": self.outcome.value,
            "message": self.message,
            "measurements": {k: _json_value(v) for k, v in self.measurements.items()},
            "annotations": [a.to_dict() for a in self.annotations],
            "details": self.details,
            "artifacts": list(self.artifacts),
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        return cls(
            id=d["id"],
            outcome=Outcome(d["outcome"]),
            message=d["message"],
            measurements=dict(d.get("measurements", {})),
            annotations=tuple(Annotation.from_dict(a) for a in d.get("annotations", [])),
            details=d.get("details", ""),
            artifacts=tuple(d.get("artifacts", [])),
            duration_s=d.get("duration_s", 0.0),
        )


@dataclass(frozen=True)
class StageResult:
    name: str
    checks: tuple[CheckResult, ...]
    title: str
    summary: str = ""
    duration_s: float = 0.0

    @property
    def conclusion(self) -> Conclusion:
        return conclude(c.outcome for c in self.checks)

    @property
    def check_name(self) -> str:
        """The GitHub check-run name, e.g. `dlgate/accuracy`."""
        return f"dlgate/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "check_name": self.check_name,
            "conclusion": self.conclusion.value,
            "title": self.title,
            "summary": self.summary,
            "duration_s": self.duration_s,
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageResult:
        return cls(
            name=d["name"],
            checks=tuple(CheckResult.from_dict(c) for c in d["checks"]),
            title=d["title"],
            summary=d.get("summary", ""),
            duration_s=d.get("duration_s", 0.0),
        )


@dataclass(frozen=True)
class Revision:
    rev: str  # what the user asked for (branch, tag, sha)
    sha: str

    def to_dict(self) -> dict[str, str]:
        return {"rev": self.rev, "sha": self.sha}


@dataclass(frozen=True)
class BaselineInfo:
    """Which baseline the run compared against and how it was found.

    `found` is one of: `exact` (the merge base's own run), `ancestor` (nearest first-parent
    ancestor with a run; `distance` commits back), `computed` (computed on the spot from the
    merge base), `none` (no baseline; see the accuracy stage's outcome)."""

    found: str
    sha: str | None = None
    distance: int = 0
    run_id: str | None = None
    tracking_uri: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "sha": self.sha,
            "distance": self.distance,
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BaselineInfo:
        return cls(
            found=d["found"],
            sha=d.get("sha"),
            distance=d.get("distance", 0),
            run_id=d.get("run_id"),
            tracking_uri=d.get("tracking_uri", ""),
        )


@dataclass(frozen=True)
class Report:
    kind: str  # pr | baseline | release | merge_group
    repo: str
    head: Revision
    base: Revision | None
    merge_base: str | None
    baseline: BaselineInfo | None
    stages: tuple[StageResult, ...]
    started_at: str
    duration_s: float
    dlgate_version: str
    config_source: str = ""  # e.g. "dlgate.yml @ abc1234 (base)"
    metrics: Mapping[str, float] = field(default_factory=dict)  # headline metrics
    ref: str = ""  # branch or tag the run was for, if any

    @property
    def conclusion(self) -> Conclusion:
        return conclude(c.outcome for s in self.stages for c in s.checks)

    @property
    def passed(self) -> bool:
        return self.conclusion is not Conclusion.FAILURE

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.name == name), None)

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for s in self.stages for c in s.checks if c.id == check_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "dlgate_version": self.dlgate_version,
            "kind": self.kind,
            "repo": self.repo,
            "ref": self.ref,
            "conclusion": self.conclusion.value,
            "head": self.head.to_dict(),
            "base": self.base.to_dict() if self.base else None,
            "merge_base": self.merge_base,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "config_source": self.config_source,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            # A non-finite headline metric is left out; the check that measured it says why.
            "metrics": {k: v for k, v in self.metrics.items() if math.isfinite(v)},
            "stages": [s.to_dict() for s in self.stages],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Report:
        base = d.get("base")
        baseline = d.get("baseline")
        return cls(
            kind=d["kind"],
            repo=d["repo"],
            ref=d.get("ref", ""),
            head=Revision(**d["head"]),
            base=Revision(**base) if base else None,
            merge_base=d.get("merge_base"),
            baseline=BaselineInfo.from_dict(baseline) if baseline else None,
            config_source=d.get("config_source", ""),
            stages=tuple(StageResult.from_dict(s) for s in d["stages"]),
            started_at=d["started_at"],
            duration_s=d["duration_s"],
            dlgate_version=d["dlgate_version"],
            metrics=dict(d.get("metrics", {})),
        )

    @classmethod
    def load(cls, path: Path) -> Report:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _json_value(value: Any) -> Any:
    """A measurement as JSON can hold it: NaN and ±Inf become null. JSON has no NaN (GitHub
    rejects documents with it), and a NaN loss is a measurement a check must be able to report."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def schema() -> dict[str, Any]:
    """The JSON Schema every report validates against."""
    text = (Path(__file__).parent / "schema" / "report.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(document: Mapping[str, Any]) -> None:
    """Raise `jsonschema.ValidationError` when `document` is not a valid report."""
    import jsonschema

    jsonschema.validate(dict(document), schema())
