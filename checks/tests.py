"""`training.tests`: the repository's own unit tests, run by the configured command with a
JUnit XML report (`--junitxml`, or where the command puts `{junitxml}`); each failing test
becomes a `fail` annotated at the file and line where it failed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dlgate import hooks
from dlgate.checks.loss import TrainingSettings
from dlgate.checks.smoke import advice
from dlgate.context import Context
from dlgate.errors import HookError
from dlgate.registry import check
from dlgate.report import Annotation, Finding, Level, Outcome

_LISTED = 50  # failing tests annotated; the rest are counted
# "tests/test_x.py:12: AssertionError" — where a pytest traceback says a test failed.
_WHERE = re.compile(r"^(?P<path>[^\s:][^:\n]*\.py):(?P<line>\d+):", re.MULTILINE)


@dataclass(frozen=True)
class Failed:
    test: str  # tests/test_x.py::test_y
    message: str
    path: str | None  # repository-relative, where known
    line: int


@check("training.tests")
def tests(ctx: Context) -> Finding:
    """The repository's own unit tests pass (JUnit XML → annotations)."""
    settings = ctx.config.get(TrainingSettings)
    if not settings.tests:
        return Finding(Outcome.SKIP, "no `training.tests` command configured")
    folder = ctx.artifact_dir("training")
    xml, log = folder / "junit.xml", folder / "tests.log"
    xml.unlink(missing_ok=True)
    line = settings.tests
    if "{junitxml}" not in line:
        line += " --junitxml={junitxml}"
    broke: HookError | None = None
    try:
        hooks.command(
            line,
            cwd=ctx.repo,
            timeout=settings.tests_timeout,
            hook="training.tests",
            log=log,
            substitutions={"junitxml": str(xml)},
        )
    except HookError as exc:
        if exc.kind != "failed" or not xml.is_file():
            raise
        broke = exc
    try:
        counts, failed = parse(xml.read_bytes(), ctx.repo)
    except (OSError, ET.ParseError) as exc:
        raise HookError(
            "training.tests", f"wrote no readable JUnit XML report ({exc}); see {log}"
        ) from None
    measurements: dict[str, Any] = {**counts, "report": str(xml.relative_to(ctx.out))}
    if broke is not None and not failed:
        raise broke  # it failed, and not because of a test: say how
    if failed:
        annotations = [
            Annotation(f.path, f.message, Level.FAILURE, f.line, title=f"training.tests: {f.test}")
            for f in failed[:_LISTED]
            if f.path
        ]
        listed = "\n".join(f"- `{f.test}`: {f.message}" for f in failed[:_LISTED])
        return Finding(
            Outcome.FAIL,
            f"{len(failed)} of {counts['tests']} tests failed: "
            + ", ".join(f.test for f in failed[:5])
            + (" …" if len(failed) > 5 else ""),
            measurements,
            annotations,
            details=listed
            + "\n\n"
            + advice(
                f"a test fails → run it locally ({_rerun(settings.tests, failed[0].test)}) and "
                "fix the code, or the test if the behaviour changed on purpose",
                "passes locally but not here → an undeclared dependency, a file not "
                "committed, or an order dependence between tests",
            ),
            artifacts=(measurements["report"],),
        )
    return Finding(
        Outcome.PASS,
        f"{counts['tests']} tests passed"
        + (f" ({counts['skipped']} skipped)" if counts["skipped"] else ""),
        measurements,
        artifacts=(measurements["report"],),
    )


def _rerun(command: str, test: str) -> str:
    if "pytest" in command:
        return f"`python -m pytest {test}`"
    return f"`{command}`"


def parse(document: bytes, repo: Path) -> tuple[dict[str, int], list[Failed]]:
    """Test counts and the failed tests (failures and errors) of a JUnit XML report."""
    root = ET.fromstring(document)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = []
    for case in root.iter("testcase"):
        counts["tests"] += 1
        for kind, key in (("failure", "failures"), ("error", "errors")):
            for node in case.findall(kind):
                counts[key] += 1
                failed.append(_failed(case, node, repo))
        if case.find("skipped") is not None:
            counts["skipped"] += 1
    return counts, failed


def _failed(case: ET.Element, node: ET.Element, repo: Path) -> Failed:
    classname, name = case.get("classname", ""), case.get("name", "")
    message = (node.get("message") or "").strip().splitlines()
    text = node.text or ""
    path: str | None = None
    line = 1
    for match in _WHERE.finditer(text):  # the last frame inside the repository wins
        inside = _inside(match["path"], repo)
        if inside:
            path, line = inside, int(match["line"])
    if path is None and case.get("file"):
        path = _inside(case.get("file", ""), repo)
        line = int(case.get("line") or 0) + 1  # xunit1 lines are 0-based
    if path is None and classname:
        guess = classname.replace(".", "/") + ".py"
        path = _inside(guess, repo) if (repo / guess).is_file() else None
    module = path or classname.replace(".", "/") + ".py"
    return Failed(
        test=f"{module}::{name}",
        message=(message[0] if message else node.tag)[:300],
        path=path,
        line=max(1, line),
    )


def _inside(raw: str, repo: Path) -> str | None:
    """`raw` as a repository-relative POSIX path, or None when it is outside the repository."""
    p = Path(raw)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(repo.resolve())
        except ValueError:
            return None
    posix = PurePosixPath(p.as_posix())
    return None if ".." in posix.parts else str(posix)
