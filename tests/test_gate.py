"""`dlgate run` end to end on the bundled example, in real git repositories (issue 2).

One scratch repository is built from examples/digits per module: `main` with its baseline
recorded in a real MLflow SQLite store, then one branch per scenario. Every run's JSON report
is validated against the schema kept in the repository.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import GitRepo

from dlgate import gate
from dlgate import report as report_module
from dlgate.baselines import Store
from dlgate.cli import ExitCode, main
from dlgate.gate import Request
from dlgate.report import Outcome, Report

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"

pytestmark = pytest.mark.slow


@dataclass
class Scratch:
    repo: GitRepo
    store_uri: str
    out: Path

    def run(self, *args: str, name: str) -> tuple[int, dict[str, object], str]:
        """`dlgate run` in-process; returns the exit code, the validated JSON report and the
        Markdown."""
        out = self.out / name
        code = main(
            [
                "run",
                "--repo",
                str(self.repo.path),
                "--tracking-uri",
                self.store_uri,
                "-q",
                "--json",
                str(out / "report.json"),
                "--markdown",
                str(out / "report.md"),
                "--out",
                str(out / "artifacts"),
                *args,
            ]
        )
        if not (out / "report.json").exists():
            return code, {}, ""
        document = json.loads((out / "report.json").read_text())
        report_module.validate(document)
        return code, document, (out / "report.md").read_text()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    root = tmp_path_factory.mktemp("gate")
    repo = GitRepo(root / "repo")
    shutil.copytree(EXAMPLE, repo.path, ignore=shutil.ignore_patterns("__pycache__", "out"))
    repo.git("init", "--quiet", "--initial-branch=main")
    repo.commit("the digits pipeline")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    code = main(
        [
            "baseline",
            "--repo",
            str(repo.path),
            "--rev",
            "main",
            "--tracking-uri",
            uri,
            "-q",
            "--out",
            str(root / "baseline"),
        ]
    )
    assert code == ExitCode.PASSED, "main's own baseline run must pass"
    return Scratch(repo, uri, root / "runs")


def _checks(document: dict[str, object]) -> dict[str, dict[str, object]]:
    stages = document["stages"]
    assert isinstance(stages, list)
    return {c["id"]: c for s in stages for c in s["checks"]}


def _branch(scratch: Scratch, name: str) -> GitRepo:
    scratch.repo.checkout("main")
    scratch.repo.branch(name, "main")
    return scratch.repo


def test_the_baseline_is_recorded_in_mlflow(scratch: Scratch) -> None:
    store = Store.open(scratch.store_uri)
    run = store.run_for(scratch.repo.sha("main"))
    assert run is not None
    assert run.metrics["accuracy"] >= 0.90
    predictions = store.load_json(run, "predictions.json")
    assert len(predictions) >= 300


def test_a_data_only_pr_passes_against_the_recorded_baseline(scratch: Scratch) -> None:
    repo = _branch(scratch, "data-only")
    src = next((repo.path / "data/train/3").glob("*.png"))
    shutil.copy(src, repo.path / "data/train/3/extra-copy-for-test.png")
    repo.commit("one more training sample")
    code, document, markdown = scratch.run(
        "--base", "main", "--head", "data-only", name="data-only"
    )
    assert code == ExitCode.PASSED, markdown
    assert document["conclusion"] == "success"
    baseline = document["baseline"]
    assert isinstance(baseline, dict)
    assert baseline["found"] == "exact"
    assert baseline["sha"] == scratch.repo.sha("main")
    assert _checks(document)["changes.mix"]["outcome"] == "pass"


def test_a_data_and_code_pr_is_refused_with_both_file_lists(scratch: Scratch) -> None:
    repo = _branch(scratch, "mixed")
    src = next((repo.path / "data/train/5").glob("*.png"))
    shutil.copy(src, repo.path / "data/train/5/mixed-extra.png")
    model = repo.path / "model.py"
    model.write_text(model.read_text() + "\n# tweak\n")
    repo.commit("data and code together")
    code, document, markdown = scratch.run("--base", "main", "--head", "mixed", name="mixed")
    assert code == ExitCode.REFUSED
    assert _checks(document)["changes.mix"]["outcome"] == "fail"
    assert "data/train/5/mixed-extra.png" in markdown
    assert "model.py" in markdown


def test_a_pr_that_shuffles_the_training_labels_is_refused_by_accuracy(scratch: Scratch) -> None:
    repo = _branch(scratch, "shuffled")
    train = repo.path / "train.py"
    text = train.read_text()
    marker = "    labels = np.array([label for _, label in samples])\n"
    assert marker in text, "the example's label loading changed; update this fault"
    train.write_text(
        text.replace(marker, marker + "    labels = np.random.default_rng(1).permutation(labels)\n")
    )
    repo.commit("a subtle bug in the label loading")
    code, document, _markdown = scratch.run("--base", "main", "--head", "shuffled", name="shuffled")
    assert code == ExitCode.REFUSED
    accuracy = _checks(document)["accuracy.accuracy"]
    assert accuracy["outcome"] == "fail"
    assert "drop exceeds the tolerance" in str(accuracy["message"])
    stage = next(s for s in document["stages"] if s["name"] == "accuracy")  # type: ignore[union-attr]
    assert stage["conclusion"] == "failure"


def test_a_malformed_config_exits_2_naming_the_line(
    scratch: Scratch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _branch(scratch, "bad-config")
    (repo.path / "dlgate.yml").write_text("version: 1\npipeline:\n  train: x\n  timout: 3\n")
    repo.commit("a typo in the gate's config")
    capsys.readouterr()
    code, _document, _md = scratch.run(
        "--base", "bad-config", "--head", "bad-config", name="bad-config"
    )
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "dlgate.yml:4" in err
    assert "did you mean 'timeout'" in err


def test_a_model_factory_that_raises_is_an_error_quoting_it(scratch: Scratch) -> None:
    repo = _branch(scratch, "factory-raises")
    (repo.path / "model.py").write_text(
        "def build_model():\n    raise RuntimeError('the factory broke: no such layer')\n"
    )
    repo.commit("break the model factory")
    code, document, markdown = scratch.run(
        "--base", "main", "--head", "factory-raises", name="factory-raises"
    )
    assert code == ExitCode.REFUSED
    errors = [c for c in _checks(document).values() if c["outcome"] == "error"]
    assert errors, markdown
    assert any("the factory broke: no such layer" in str(c["message"]) for c in errors)


def test_a_hanging_training_hook_is_an_error_after_the_timeout(scratch: Scratch) -> None:
    repo = _branch(scratch, "hang")
    (repo.path / "slowhooks.py").write_text(
        "import time\n\ndef build_model():\n    time.sleep(3600)\n"
    )
    config = (repo.path / "dlgate.yml").read_text()
    config = config.replace("  model: model:build_model", "  model: slowhooks:build_model")
    config = config.replace("pipeline:\n", "pipeline:\n  hook_timeout: 3\n", 1)
    (repo.path / "dlgate.yml").write_text(config)
    repo.commit("a model factory that hangs")
    start = time.perf_counter()
    # The config is read from the base: gate this branch against itself.
    code, document, _md = scratch.run(
        "--base", "hang", "--head", "hang", "--stage", "training", name="hang"
    )
    elapsed = time.perf_counter() - start
    assert code == ExitCode.REFUSED
    loss = _checks(document)["training.loss"]
    assert loss["outcome"] == "error"
    assert "timed out" in str(loss["message"])
    assert "3s" in str(loss["message"])
    assert elapsed < 120


def _with_idle_tail(repo: GitRepo) -> None:
    """The training command idles a few seconds after writing the model (as an upload or a
    cleanup would): a phase that leaves the cores to the gate, whatever the machine's speed."""
    train = repo.path / "train.py"
    text = train.read_text()
    tail = 'if __name__ == "__main__":\n    main()\n'
    assert text.endswith(tail)
    train.write_text(text + "    time.sleep(4)\n")


def _gate_with_progress(scratch: Scratch, branch: str) -> tuple[Report, list[str]]:
    messages: list[str] = []
    request = Request(
        repo=scratch.repo.path,
        head=branch,
        base="main",
        tracking_uri=scratch.store_uri,
        out=scratch.out / branch,
        stages=("training",),
    )
    return gate.run(request, messages.append), messages


def test_the_smoke_battery_measured_during_the_training_stands_for_the_same_batch(
    scratch: Scratch,
) -> None:
    repo = _branch(scratch, "battery-ahead")
    _with_idle_tail(repo)
    repo.commit("the training idles after writing the model")
    report, messages = _gate_with_progress(scratch, "battery-ahead")
    notes = [m for m in messages if "smoke battery" in m]
    held = "training: the smoke battery measured during the training holds (the same batch)"
    assert notes == [held]
    loss = report.check("training.loss")
    assert loss is not None and loss.outcome is Outcome.PASS, loss


def test_a_pr_that_changes_the_preprocessing_gets_its_battery_measured_again(
    scratch: Scratch,
) -> None:
    repo = _branch(scratch, "battery-again")
    _with_idle_tail(repo)
    train = repo.path / "train.py"
    train.write_text(train.read_text().replace("MEAN = 0.3054", "MEAN = 0.25"))
    repo.commit("another normalisation: the model's contract changes")
    report, messages = _gate_with_progress(scratch, "battery-again")
    notes = [m for m in messages if "smoke battery" in m]
    assert len(notes) == 1 and "which this model changes; measuring it again" in notes[0], notes
    loss = report.check("training.loss")
    assert loss is not None and loss.outcome is Outcome.PASS, loss
