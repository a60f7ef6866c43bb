"""`training.tests`: the repository's own tests, run for real (pytest in a scratch
repository), failures annotated at the line that failed."""

from __future__ import annotations

from pathlib import Path

import pytest
from faults.toys import context

from dlgate.checks import tests as check
from dlgate.errors import HookError
from dlgate.report import Level, Outcome

PYTEST = "python -m pytest -q -p no:cacheprovider tests"
SAMPLE = """\
def test_adds():
    assert 1 + 1 == 2


def test_answer():
    value = 41
    assert value == 42


def test_skipped():
    import pytest

    pytest.skip("not today")
"""


def repo_with(tmp_path: Path, files: dict[str, str], command: str = PYTEST) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text, encoding="utf-8")
    return repo, f"training:\n  tests: {command!r}\n  tests_timeout: 60\n"


def test_a_failing_test_fails_with_an_annotation_at_its_line(tmp_path: Path) -> None:
    repo, config = repo_with(tmp_path, {"tests/test_sample.py": SAMPLE})
    result = check.tests(context(repo, tmp_path / "out", config))
    assert result.outcome is Outcome.FAIL
    assert result.message == "1 of 3 tests failed: tests/test_sample.py::test_answer"
    assert result.measurements["failures"] == 1
    assert result.measurements["skipped"] == 1
    (note,) = result.annotations
    assert (note.path, note.start_line, note.level) == ("tests/test_sample.py", 7, Level.FAILURE)
    assert "assert 41 == 42" in note.message
    assert (tmp_path / "out" / "training" / "junit.xml").is_file()
    assert result.artifacts == ("training/junit.xml",)
    assert "`python -m pytest tests/test_sample.py::test_answer`" in result.details


def test_passing_tests_pass(tmp_path: Path) -> None:
    repo, config = repo_with(tmp_path, {"tests/test_ok.py": "def test_ok():\n    pass\n"})
    result = check.tests(context(repo, tmp_path / "out", config))
    assert result.outcome is Outcome.PASS
    assert result.message == "1 tests passed"


def test_a_test_module_that_does_not_import_fails_at_its_line(tmp_path: Path) -> None:
    broken = "import json\nfrom json import no_such_name\n\n\ndef test_x():\n    pass\n"
    repo, config = repo_with(tmp_path, {"tests/test_broken.py": broken})
    result = check.tests(context(repo, tmp_path / "out", config))
    assert result.outcome is Outcome.FAIL
    (note,) = result.annotations
    assert (note.path, note.start_line) == ("tests/test_broken.py", 2)


def test_a_command_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    repo, config = repo_with(tmp_path, {"tests/test_ok.py": ""}, "no-such-runner tests")
    with pytest.raises(HookError, match=r"training.tests: cannot start 'no-such-runner'"):
        check.tests(context(repo, tmp_path / "out", config))


def test_a_runner_that_writes_no_report_is_an_error(tmp_path: Path) -> None:
    repo, config = repo_with(tmp_path, {"check.py": "raise SystemExit(1)\n"}, "python check.py")
    with pytest.raises(HookError, match="exited with status 1"):
        check.tests(context(repo, tmp_path / "out", config))


def test_no_command_skips(tmp_path: Path) -> None:
    assert check.tests(context(tmp_path, tmp_path / "out", "")).outcome is Outcome.SKIP


def test_parse_reads_both_junit_families(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    xunit1 = b"""<testsuites><testsuite tests="3">
      <testcase classname="tests.test_a" name="test_one" file="tests/test_a.py" line="4">
        <failure message="assert False">no location in this text</failure></testcase>
      <testcase classname="tests.test_a" name="test_two"><error message="boom">
        /elsewhere/lib.py:3: in f\n%s/tests/test_a.py:9: ValueError</error></testcase>
      <testcase classname="tests.test_a" name="test_three"><skipped/></testcase>
    </testsuite></testsuites>""".replace(b"%s", str(tmp_path).encode())
    counts, failed = check.parse(xunit1, tmp_path)
    assert counts == {"tests": 3, "failures": 1, "errors": 1, "skipped": 1}
    assert [(f.test, f.path, f.line) for f in failed] == [
        ("tests/test_a.py::test_one", "tests/test_a.py", 5),  # xunit1 lines are 0-based
        ("tests/test_a.py::test_two", "tests/test_a.py", 9),  # the repository's frame
    ]
    assert failed[1].message == "boom"
