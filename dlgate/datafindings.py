"""How the data checks word what they found: the configured level as an outcome, samples
named as annotations (path and line), and lists that stay readable at a million samples.

Every offending sample is named: up to `data.max_listed` in the report (and as PR
annotations); the complete list goes to an artifact file under `data/` when there are more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dlgate.context import Context
from dlgate.dataset import Level
from dlgate.dataview import SampleRef
from dlgate.report import Annotation, Finding, Outcome, Value
from dlgate.report import Level as AnnotationLevel


def outcome(level: Level) -> Outcome:
    return Outcome.FAIL if level == "fail" else Outcome.WARN


def turned_off(key: str) -> Finding:
    return Finding(Outcome.SKIP, f"turned off (`data.{key}.level: off`)")


@dataclass
class Offenders:
    """Collects offending samples: the first `cap` as annotations and lines, all of them in
    an artifact file once there are more than `cap`."""

    ctx: Context
    check: str  # the check's name, e.g. "integrity": names the artifact file
    cap: int
    level: Level = "fail"
    count: int = 0
    annotations: list[Annotation] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    _spill: list[str] = field(default_factory=list)
    _file: Path | None = None

    def add(self, ref: SampleRef, message: str, title: str = "") -> None:
        self.count += 1
        line = f"`{ref.location}`" + (f" line {ref.line}" if ref.line else "") + f": {message}"
        if self.count <= self.cap:
            self.lines.append(f"- {line}")
            self.annotations.append(
                Annotation(
                    ref.location,
                    message,
                    AnnotationLevel.FAILURE if self.level == "fail" else AnnotationLevel.WARNING,
                    start_line=max(ref.line, 1),
                    title=title or f"data.{self.check}",
                )
            )
        self._spill.append(line.replace("`", ""))
        if len(self._spill) >= 10_000:
            self._flush()

    def _flush(self) -> None:
        if self._file is None:
            self._file = self.ctx.artifact_dir("data") / f"{self.check}.txt"
            self._file.write_text("", encoding="utf-8")
        with self._file.open("a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in self._spill)
        self._spill.clear()

    def artifacts(self) -> list[str]:
        """The full list's file (relative to the run's output folder), where some were left
        out of the report."""
        if self.count <= self.cap:
            return []
        self._flush()
        assert self._file is not None
        return [self._file.relative_to(self.ctx.out).as_posix()]

    def details(self, extra: str = "") -> str:
        more = self.count - len(self.lines)
        listed = "\n".join(self.lines)
        if more > 0:
            listed += f"\n- … and {more} more (all of them in the artifact `data/{self.check}.txt`)"
        return "\n\n".join(part for part in (listed, extra) if part)

    def finding(self, message: str, measurements: Mapping[str, Value], extra: str = "") -> Finding:
        return Finding(
            outcome(self.level),
            message,
            measurements,
            self.annotations,
            details=self.details(extra),
            artifacts=self.artifacts(),
        )


def bullet(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
