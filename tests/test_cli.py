"""`dlgate` on the command line: exit codes 0/1/2 and messages that say what to do.

`main(argv)` runs in-process; the git repositories are real ones in temporary folders.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GitRepo

from dlgate import __version__
from dlgate.cli import ExitCode, main
from dlgate.report import validate

CLEAN_CONFIG = "paths:\n  data: ['data/**']\n  code: ['**/*.py']\n"


def test_exit_codes_are_the_documented_contract() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "PASSED": 0,
        "REFUSED": 1,
        "USAGE": 2,
        "INTERNAL": 3,
    }


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dlgate {__version__}"


def test_help_returns_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--base" in out
    assert "--stage" in out


def test_python_dash_m_dlgate_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dlgate", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"dlgate {__version__}"


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        ([], ("required: command",)),
        (["frobnicate"], ("invalid choice: 'frobnicate'",)),
        (["run"], ("dlgate run: the following arguments are required: --base",)),
        (["run", "--base", "main", "--stage", "lint"], ("--stage: invalid choice: 'lint'",)),
        (["run", "--base", "main", "--kind", "push"], ("--kind: invalid choice: 'push'",)),
        (["release"], ("--tag",)),
        (["run", "--base", "main", "--bogus"], ("unrecognized arguments: --bogus",)),
    ],
)
def test_bad_usage_exits_2_with_the_usage(
    argv: list[str], fragments: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("dlgate: error: ")
    assert "usage: dlgate" in captured.err
    for fragment in fragments:
        assert fragment in captured.err
    assert "Traceback" not in captured.err


def test_a_folder_that_is_not_a_git_repository_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    assert main(["run", "--repo", str(folder), "--base", "main", "-q"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"{folder} is not a git repository" in err
    assert "--repo" in err


def test_a_missing_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["run", "--repo", str(missing), "--base", "main", "-q"]) == ExitCode.USAGE
    assert f"{missing} does not exist" in capsys.readouterr().err


@pytest.fixture
def repo(git_repo: GitRepo) -> GitRepo:
    """main: a config, a model and one data file."""
    git_repo.write("dlgate.yml", CLEAN_CONFIG)
    git_repo.write("model.py", "x = 1\n")
    git_repo.write("data/train/0/a.txt", "sample 0\n")
    git_repo.commit("base")
    return git_repo


def test_an_unknown_revision_exits_2(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--repo", str(repo.path), "--base", "no-such-branch", "-q"]
    assert main(argv) == ExitCode.USAGE
    assert "unknown revision 'no-such-branch'" in capsys.readouterr().err
    argv = ["run", "--repo", str(repo.path), "--base", "main", "--head", "deadbeef", "-q"]
    assert main(argv) == ExitCode.USAGE
    assert "unknown revision 'deadbeef'" in capsys.readouterr().err


def test_a_malformed_config_at_the_base_exits_2_naming_file_and_line(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.write("dlgate.yml", "version: 1\npaths:\n  data: ['data/**']\npipline:\n  seed: 1\n")
    repo.commit("typo in the gate config")
    repo.branch("feature")
    repo.write("data/train/0/b.txt", "sample 1\n")
    repo.commit("more data")
    argv = ["run", "--repo", str(repo.path), "--base", "main", "--head", "feature", "-q"]
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert re.search(r"dlgate\.yml:4 @ [0-9a-f]{7}: unknown key 'pipline'", err), err
    assert "did you mean 'pipeline'?" in err
    assert "Traceback" not in err


def test_a_malformed_config_file_given_explicitly_exits_2(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gate.yml"
    config.write_text("pipeline:\n  timeout: soon\n")
    argv = ["run", "--repo", str(repo.path), "--base", "main", "--config", str(config), "-q"]
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"{config}:2: `pipeline.timeout` must be a number" in err
    argv[argv.index(str(config))] = str(tmp_path / "missing.yml")
    assert main(argv) == ExitCode.USAGE
    assert "missing.yml: no such file" in capsys.readouterr().err


def gate_changes(repo: GitRepo, out: Path) -> int:
    argv = ["run", "--repo", str(repo.path), "--base", "main", "--head", "feature", "-q"]
    argv += ["--stage", "changes", "--out", str(out / "run")]
    argv += ["--json", str(out / "report.json"), "--markdown", str(out / "report.md")]
    return main(argv)


def test_a_pr_mixing_data_and_code_exits_1_with_both_lists(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.branch("feature")
    repo.write("data/train/0/b.txt", "sample 1\n")
    repo.write("model.py", "x = 2\n")
    repo.commit("data and code together")
    assert gate_changes(repo, tmp_path) == ExitCode.REFUSED
    out = capsys.readouterr().out
    assert "dlgate refused" in out
    assert "dlgate/changes: failure" in out
    document = json.loads((tmp_path / "report.json").read_text())
    validate(document)
    assert document["conclusion"] == "failure"
    assert [s["name"] for s in document["stages"]] == ["changes"]
    markdown = (tmp_path / "report.md").read_text()
    assert "data/train/0/b.txt" in markdown
    assert "model.py" in markdown


def test_a_data_only_pr_exits_0(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.branch("feature")
    repo.write("data/train/0/b.txt", "sample 1\n")
    repo.commit("more data")
    assert gate_changes(repo, tmp_path) == ExitCode.PASSED
    assert "verdict: passed" in capsys.readouterr().out
    document = json.loads((tmp_path / "report.json").read_text())
    validate(document)
    assert document["conclusion"] == "success"


def test_the_console_script_exits_with_mains_code_after_exit_handlers_and_threads(
    tmp_path: Path,
) -> None:
    """`run_main` skips the interpreter's teardown, not what exit guarantees: queued thread
    pool work finishes, exit handlers run, the output is flushed, the code is main's."""
    done = tmp_path / "pool-work-done"
    script = (
        "import atexit, sys, time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from dlgate.cli import run_main\n"
        "pool = ThreadPoolExecutor(1)\n"
        f"pool.submit(lambda: (time.sleep(0.5), open({str(done)!r}, 'w').close()))\n"
        "atexit.register(lambda: print('exit handler ran', flush=True))\n"
        "sys.argv = ['dlgate', *sys.argv[1:]]\n"
        "print('x' * 100_000)\n"  # more than a pipe holds: flushed at exit, not lost
        "run_main()\n"
    )
    ok = subprocess.run(
        [sys.executable, "-c", script, "--version"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == ["x" * 100_000, f"dlgate {__version__}", "exit handler ran"]
    assert done.exists()
    bad = subprocess.run(
        [sys.executable, "-c", script, "run", "--repo", str(tmp_path / "missing"), "--base", "x"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert bad.returncode == ExitCode.USAGE
    assert "does not exist; pass --repo" in bad.stderr
    assert bad.stdout.endswith("exit handler ran\n")


def test_a_training_started_before_a_stage_section_fails_validation_is_stopped(
    git_repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    """The training command starts on the core of the configuration; a mistake in a stage's
    section still exits 2 naming the line, at once, and the training does not live on."""
    git_repo.write(
        "dlgate.yml",
        "pipeline:\n  train: python slow_train.py --out {out}\naccuracy:\n  tolerence: 0.5\n",
    )
    git_repo.write("slow_train.py", "import time\ntime.sleep(120)\n")
    git_repo.commit("a config with a typo in a stage's section")
    start = time.monotonic()
    argv = ["run", "--repo", str(git_repo.path), "--base", "main", "--head", "main", "-q",
            "--out", str(git_repo.path.parent / "out")]  # fmt: skip
    assert main(argv) == ExitCode.USAGE
    assert time.monotonic() - start < 60
    err = capsys.readouterr().err
    assert re.search(r"dlgate\.yml:4 @ [0-9a-f]{7}: unknown key 'tolerence'", err), err
    assert not _running("slow_train.py")


def _running(fragment: str) -> list[str]:
    """Command lines of live processes that mention `fragment`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fragment in cmdline:
            found.append(cmdline)
    return found
