"""`dlgate action` run exactly as the Actions runner runs it: a subprocess with the runner's
variables, an event payload derived from GitHub's own examples, `$GITHUB_STEP_SUMMARY` and
`$GITHUB_OUTPUT` files, and `GITHUB_API_URL` at the GitHub emulator — on a real scratch
repository whose checkout is a fresh clone per run, as `actions/checkout` (fetch-depth 0) makes.

The scratch pipeline evaluates a committed ONNX model (`pipeline.artifact`), trained once per
session from examples/digits, so that a run takes seconds. The baseline store is the folder the
Actions cache would restore (`DLGATE_STORE`), kept between the runs of one test.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ghemu
import onnx
import pytest
from conftest import _GIT_ENV, GitRepo
from onnx import numpy_helper

from dlgate.baselines import Store
from dlgate.render import headline
from dlgate.report import STAGES, Report
from dlgate.workflow import escape_data, read_outputs

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
WEBHOOKS = ghemu.fixtures_dir() / "webhooks"
REPO = "octo/digits"
READ_ONLY = {k: "read" for k in ghemu.DEFAULT_PERMISSIONS}
CONFIG = """\
version: 1
paths:
  data: ["data/**"]
  code: ["**/*.py"]
pipeline:
  artifact: model.onnx
baseline:
  missing: warn  # a PR before any push to main is not compared (and not slowed down)
data:
  splits: {train: data/train, real_world: data/real_world}
  classes: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
accuracy:
  split: real_world
"""


# ---------------------------------------------------------------------------- the model


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits example's model, trained once per session (3 epochs: ~0.95 accuracy)."""
    out = tmp_path_factory.mktemp("digits-model")
    proc = subprocess.run(
        [sys.executable, "train.py", "--out", str(out), "--epochs", "3"],
        cwd=DIGITS,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return out / "model.onnx"


def swap_classes(model: Path, target: Path, a: int, b: int) -> None:
    """The same model with the output rows of classes `a` and `b` exchanged: every sample of
    those classes it recognised is now predicted as the other one."""
    m = onnx.load(str(model))
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    weights = {i.name: i for i in m.graph.initializer}
    for name in gemms[-1].input[1:]:
        array = numpy_helper.to_array(weights[name]).copy()
        array[[a, b]] = array[[b, a]]
        weights[name].CopyFrom(numpy_helper.from_array(array, name))
    onnx.save(m, str(target))


# ---------------------------------------------------------------------------- the project


@dataclass
class Project:
    """A repository as GitHub holds it (`origin`), the emulator serving it, and a runner that
    executes `dlgate action` in fresh clones of it."""

    origin: GitRepo
    emu: ghemu.GitHubEmulator
    root: Path
    store: Path
    runs: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def action(
        self,
        event: str,
        payload: Mapping[str, Any],
        *,
        sha: str,
        ref: str,
        depth: int | None = None,
        path: str = "",
        **extra: str,
    ) -> Run:
        """One workflow step: clone (all history, or `depth` commits of the default branch)
        into the workspace (or its folder `path`), write the payload, run `dlgate action`."""
        self.runs += 1
        where = self.root / f"run-{self.runs}"
        workspace = where / "workspace"
        checkout = workspace / path if path else workspace
        checkout.parent.mkdir(parents=True)
        if depth is None:
            GitRepo.clone(self.origin, checkout).git("checkout", "--quiet", "--detach", sha)
        else:
            GitRepo.clone(self.origin.path.as_uri(), checkout, "--depth", str(depth))
        (where / "temp").mkdir()
        event_path = where / "event.json"
        event_path.write_text(json.dumps(payload), encoding="utf-8")
        summary, output = where / "step_summary.md", where / "output.txt"
        summary.touch()
        output.touch()
        env = {
            **_GIT_ENV,
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_SHA": sha,
            "GITHUB_REF": ref,
            "GITHUB_WORKSPACE": str(workspace),
            "INPUT_PATH": path,
            "GITHUB_API_URL": self.emu.base_url,
            "GITHUB_SERVER_URL": self.emu.web_url,
            "GITHUB_RUN_ID": str(1000 + self.runs),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_OUTPUT": str(output),
            "RUNNER_TEMP": str(where / "temp"),
            # What action.yml sets for the step:
            "INPUT_TOKEN": self.emu.token,
            "INPUT_PUBLISH_CHECKS": "true",
            "DLGATE_STORE": str(self.store),
            "DLGATE_GITHUB_THROTTLE": "false",  # no pacing against a local emulator
            **self.env,
            **extra,
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        proc = subprocess.run(
            [sys.executable, "-m", "dlgate", "action"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        return Run(proc, summary.read_text(encoding="utf-8"), output.read_text(encoding="utf-8"))

    def check_runs(self, sha: str) -> dict[str, list[Any]]:
        runs: dict[str, list[Any]] = {}
        for r in self.emu.check_runs(REPO, head_sha=sha):
            runs.setdefault(r["name"], []).append(r)
        return runs


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    summary: str
    output_text: str

    @property
    def code(self) -> int:
        return self.proc.returncode

    @property
    def outputs(self) -> dict[str, str]:
        return read_outputs(self.output_text)

    @property
    def report(self) -> Report:
        return Report.load(Path(self.outputs["report"]))

    @property
    def verdict(self) -> int:
        """The exit code the report calls for (other stages' checks evolve; these tests are
        about what the Action does with any verdict)."""
        return 0 if self.report.passed else 1

    @property
    def log(self) -> str:  # what a failed assertion shows
        return f"exit {self.code}\n--- stdout\n{self.proc.stdout}\n--- stderr\n{self.proc.stderr}"


@pytest.fixture
def project(tmp_path: Path, github: ghemu.GitHubEmulator, digits_onnx: Path) -> Project:
    origin = GitRepo.init(tmp_path / "origin")
    origin.write("dlgate.yml", CONFIG)
    origin.write("model.onnx", digits_onnx.read_bytes())
    for split, per_class in (("real_world", 4), ("train", 3)):
        for digit in range(10):
            for png in sorted((DIGITS / "data" / split / str(digit)).glob("*.png"))[:per_class]:
                origin.write(f"data/{split}/{digit}/{png.name}", png.read_bytes())
    origin.commit("digits pipeline")
    github.add_repo(REPO, git_dir=origin.path)
    return Project(origin, github, tmp_path, tmp_path / "store")


# ---------------------------------------------------------------------------- payloads


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((WEBHOOKS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def repository(template: Mapping[str, Any], full_name: str = REPO) -> dict[str, Any]:
    repo = copy.deepcopy(dict(template))
    owner, name = full_name.split("/")
    repo.update(full_name=full_name, name=name, default_branch="main")
    if "master_branch" in repo:
        repo["master_branch"] = "main"
    repo["owner"]["login"] = owner
    return repo


def pull_request(
    number: int, *, head: str, base: str, head_ref: str, fork: str | None = None
) -> dict[str, Any]:
    p = fixture("pull_request.opened")
    p["number"] = number
    p["repository"] = repository(p["repository"])
    pr = p["pull_request"]
    pr["number"] = number
    pr["head"].update(sha=head, ref=head_ref, repo=repository(p["repository"], fork or REPO))
    pr["base"].update(sha=base, ref="main", repo=copy.deepcopy(p["repository"]))
    return p


def push(
    ref: str, *, after: str, before: str = "0" * 40, name: str = "push.default-branch"
) -> dict[str, Any]:
    p = fixture(name)
    p.update(ref=ref, after=after, before=before, created=before == "0" * 40, deleted=False)
    p["repository"] = repository(p["repository"])
    if p.get("head_commit"):
        p["head_commit"]["id"] = after
    return p


def merge_group(*, head: str, base: str, head_ref: str) -> dict[str, Any]:
    p = fixture("merge_group.checks_requested")
    p["repository"] = repository(p["repository"])
    p["merge_group"].update(head_sha=head, base_sha=base, head_ref=head_ref)
    p["merge_group"]["head_commit"]["id"] = head
    return p


def release(tag: str) -> dict[str, Any]:
    p = fixture("release.published")
    p["repository"] = repository(p["repository"])
    p["release"].update(tag_name=tag, target_commitish="main")
    return p


def new_sample(digit: int) -> bytes:
    """A real-world sample of `digit` that the scratch repository does not hold yet."""
    return sorted((DIGITS / "data" / "real_world" / str(digit)).glob("*.png"))[4].read_bytes()


def store(project: Project) -> Store:
    return Store.open(f"sqlite:///{project.store / 'mlflow.db'}")


# ---------------------------------------------------------------------------- the acceptance


def test_push_to_main_records_the_baseline_that_the_next_pr_is_compared_with(
    project: Project,
) -> None:
    main = project.origin.sha()
    first = project.action(
        "push", push("refs/heads/main", after=main), sha=main, ref="refs/heads/main"
    )
    assert first.code == first.verdict, first.log
    assert first.outputs["kind"] == "baseline"
    assert first.outputs["conclusion"] == first.report.conclusion.value
    assert project.check_runs(main) == {}  # a baseline is recorded, not published as checks

    # The PR swaps the outputs of classes 3 and 8: those samples now come out wrong.
    project.origin.branch("swap-3-8")
    swap_classes(project.origin.path / "model.onnx", project.origin.path / "model.onnx", 3, 8)
    head = project.origin.commit("re-export the model")
    pr = project.action(
        "pull_request",
        pull_request(7, head=head, base=main, head_ref="swap-3-8"),
        sha=head,
        ref="refs/pull/7/merge",
    )
    assert pr.code == 1, pr.log  # refused
    report = pr.report
    assert report.baseline is not None
    assert (report.baseline.found, report.baseline.sha) == ("exact", main)
    assert pr.outputs["baseline-sha"] == main

    runs = project.check_runs(head)
    assert sorted(runs) == [f"dlgate/{s}" for s in sorted(STAGES)]
    assert all(len(v) == 1 for v in runs.values()), runs
    conclusions = {name: v[0]["conclusion"] for name, v in runs.items()}
    # Each stage's check run concludes as the report says (the other stages' checks evolve;
    # this PR's facts do not): a model-only change, refused for its accuracy.
    assert conclusions == {f"dlgate/{s.name}": s.conclusion.value for s in report.stages}
    assert conclusions["dlgate/changes"] == "success"
    assert conclusions["dlgate/accuracy"] == "failure"
    assert {name: v[0]["status"] for name, v in runs.items()} == dict.fromkeys(runs, "completed")
    assert pr.outputs["accuracy-conclusion"] == "failure"
    assert pr.outputs["conclusion"] == "failure"
    assert float(pr.outputs["accuracy-delta"]) < -0.1

    accuracy = runs["dlgate/accuracy"][0]
    annotations = project.emu.annotations(REPO, accuracy["id"])
    check = report.check("accuracy.accuracy")
    assert check is not None
    regressed = {a.path for a in check.annotations}
    assert regressed, "the swap must regress samples"
    assert {a["path"] for a in annotations} == regressed
    assert all(p.split("/")[2] in ("3", "8") for p in regressed)
    assert sorted((a["path"], a["annotation_level"], a["message"]) for a in annotations) == sorted(
        (a.path, a.level.value, a.message) for a in check.annotations
    )
    assert accuracy["output"]["annotations_count"] == len(regressed)
    assert accuracy["details_url"].endswith(f"/{REPO}/actions/runs/1002")
    # The same annotations as workflow commands, and the refusal as an error.
    first = min(check.annotations, key=lambda a: a.path)
    level = {"failure": "error", "warning": "warning", "notice": "notice"}[first.level.value]
    assert f"::{level} file={first.path},line=1,endLine=1" in pr.proc.stdout
    assert f"::{escape_data(first.message)}\n" in pr.proc.stdout
    refusals = [(st, c) for st in report.stages for c in st.checks if c.outcome.blocks]
    assert any(st.name == "accuracy" for st, _ in refusals)
    for st, c in refusals:
        command = f"::error title={st.check_name}::{escape_data(f'{c.id}: {c.message}')}\n"
        assert command in pr.proc.stdout
    # The step summary is the report's Markdown.
    assert "## ❌ dlgate refused" in pr.summary
    assert "| `dlgate/accuracy` | ❌ failure |" in pr.summary
    assert (Path(pr.outputs["report-dir"]) / "summary.md").read_text(encoding="utf-8") in (
        pr.summary
    )


def test_a_tag_push_records_the_release(project: Project) -> None:
    sha = project.origin.sha()
    project.origin.git("tag", "-a", "v1.0.0", "-m", "first release")
    tag_object = project.origin.git("rev-parse", "v1.0.0").strip()
    payload = push("refs/tags/v1.0.0", after=tag_object, name="push.tag-created.ghes-35")
    run = project.action("push", payload, sha=sha, ref="refs/tags/v1.0.0")
    assert run.code == run.verdict, run.log
    assert run.outputs["kind"] == "release"
    assert run.report.ref == "v1.0.0"
    assert run.report.head.sha == sha  # the annotated tag peeled to its commit
    with store(project) as s:
        releases = s.releases()
    assert [(r.tag, r.sha, r.kind) for r in releases] == [("v1.0.0", sha, "release")]
    assert project.check_runs(sha) == {}


def test_a_published_release_records_the_release(project: Project) -> None:
    sha = project.origin.sha()
    project.origin.git("tag", "v2.0.0")
    run = project.action("release", release("v2.0.0"), sha=sha, ref="refs/tags/v2.0.0")
    assert run.code == run.verdict, run.log
    with store(project) as s:
        assert [(r.tag, r.sha) for r in s.releases()] == [("v2.0.0", sha)]


def test_merge_group_publishes_checks_on_the_queue_head(project: Project) -> None:
    base = project.origin.sha()
    project.origin.branch("feature")
    project.origin.write("data/real_world/0/new.png", new_sample(0))
    project.origin.commit("one more real-world zero")
    queue = f"gh-readonly-queue/main/pr-9-{base}"
    project.origin.branch(queue, "main")
    head = project.origin.merge("feature", "Merge pull request #9")
    payload = merge_group(head=head, base=base, head_ref=f"refs/heads/{queue}")
    run = project.action("merge_group", payload, sha=head, ref=f"refs/heads/{queue}")
    assert run.code == run.verdict, run.log
    assert run.report.kind == "merge_group"
    runs = project.check_runs(head)
    assert sorted(runs) == [f"dlgate/{s}" for s in sorted(STAGES)]
    assert all(len(v) == 1 and v[0]["status"] == "completed" for v in runs.values())
    assert project.check_runs(base) == {}
    # The push GitHub makes to the queue branch is never a baseline.
    again = project.action(
        "push", push(f"refs/heads/{queue}", after=head), sha=head, ref=f"refs/heads/{queue}"
    )
    assert again.code == 0, again.log
    assert "merge-queue branch" in again.proc.stdout
    assert again.outputs == {"conclusion": "skipped", "kind": "none"}
    with store(project) as s:
        assert s.run_for(head) is None


# Seeds whose draws fault a request several times in a row while keeping the waits (the
# publisher's real backoff) short; a sweep of 200 seeds through the same start/complete
# sequence found none that leaves a stage without exactly one completed run.
@pytest.mark.parametrize("seed", [2, 11])
def test_with_30_percent_of_requests_failing_every_stage_ends_with_one_completed_run(
    project: Project, seed: int
) -> None:
    base = project.origin.sha()
    project.origin.branch("feature")
    project.origin.write("data/real_world/1/new.png", new_sample(1))
    head = project.origin.commit("more data")
    project.emu.faults(
        0.3, kinds=("500", "502", "503", "403-secondary", "429", "lost"), seed=seed, retry_after=1
    )
    run = project.action(
        "pull_request",
        pull_request(3, head=head, base=base, head_ref="feature"),
        sha=head,
        ref="refs/pull/3/merge",
    )
    assert run.code == run.verdict, run.log
    assert project.emu.injected, "faults were injected"
    runs = project.check_runs(head)
    assert sorted(runs) == [f"dlgate/{s}" for s in sorted(STAGES)]
    for name, items in runs.items():
        assert len(items) == 1, (name, items)
        assert items[0]["status"] == "completed"
    assert {n: v[0]["conclusion"] for n, v in runs.items()} == {
        f"dlgate/{s.name}": s.conclusion.value for s in run.report.stages
    }


def test_a_fork_pr_still_gates_and_its_report_is_published_by_workflow_run(
    project: Project,
) -> None:
    base = project.origin.sha()
    project.origin.branch("fork-change")
    project.origin.write("data/real_world/2/new.png", new_sample(2))
    head = project.origin.commit("a contributor's sample")
    read_only = project.emu.add_token(permissions=READ_ONLY)
    payload = pull_request(12, head=head, base=base, head_ref="patch-1", fork="someone/digits")
    gated = project.action(
        "pull_request",
        payload,
        sha=head,
        ref="refs/pull/12/merge",
        path="checkouts/digits",  # actions/checkout's `path`, the action's `path` input
        INPUT_TOKEN=read_only,
    )
    assert gated.code == gated.verdict, gated.log  # publishing is not the verdict
    assert "::notice title=dlgate::check runs not published" in gated.proc.stdout
    assert "workflow_run pattern" in gated.proc.stdout
    assert headline(gated.report) in gated.summary
    assert gated.outputs["conclusion"] == gated.report.conclusion.value
    assert project.check_runs(head) == {}

    # The privileged workflow_run publishes the artifact's report on the PR's head.
    artifact = Path(gated.outputs["report"])
    published = project.action(
        "workflow_run",
        workflow_run(head),
        sha=base,
        ref="refs/heads/main",
        INPUT_REPORT=str(artifact),
    )
    assert published.code == 0, published.log
    runs = project.check_runs(head)
    assert sorted(runs) == [f"dlgate/{s}" for s in sorted(STAGES)]
    assert {n: (len(v), v[0]["status"], v[0]["conclusion"]) for n, v in runs.items()} == {
        f"dlgate/{s.name}": (1, "completed", s.conclusion.value) for s in gated.report.stages
    }
    assert headline(gated.report) in published.summary


def workflow_run(head: str, *, event: str = "pull_request") -> dict[str, Any]:
    """A `workflow_run` delivery (no example among the fixtures: built from GitHub's webhook
    documentation, with the repository object of a real payload)."""
    real = fixture("pull_request.opened")
    return {
        "action": "completed",
        "workflow_run": {
            "id": 4242,
            "name": "dlgate",
            "event": event,
            "status": "completed",
            "conclusion": "success",
            "head_sha": head,
            "head_branch": "patch-1",
            "pull_requests": [],  # GitHub leaves it empty for a fork's pull request
        },
        "repository": repository(real["repository"]),
        "sender": real["sender"],
    }


def test_workflow_run_refuses_a_report_for_another_commit(project: Project, tmp_path: Path) -> None:
    base = project.origin.sha()
    project.origin.branch("feature")
    head = project.origin.commit("empty change")
    gated = project.action(
        "pull_request",
        pull_request(5, head=head, base=base, head_ref="feature"),
        sha=head,
        ref="refs/pull/5/merge",
        INPUT_PUBLISH_CHECKS="false",
        INPUT_STAGES="changes",  # what the report says does not matter here
    )
    assert gated.code == gated.verdict, gated.log
    assert project.check_runs(head) == {}  # publish-checks: false
    # A report made for `head`, offered as the result of a run on `base`: refused.
    forged = project.action(
        "workflow_run",
        workflow_run(base),
        sha=base,
        ref="refs/heads/main",
        INPUT_REPORT=gated.outputs["report"],
    )
    assert forged.code == 2, forged.log
    assert "refusing to publish" in forged.proc.stderr
    assert project.check_runs(base) == {}
    # Not a report at all: named, refused.
    junk = tmp_path / "report.json"
    junk.write_text(json.dumps({"kind": "pr", "conclusion": "success"}), encoding="utf-8")
    tampered = project.action(
        "workflow_run",
        workflow_run(head),
        sha=base,
        ref="refs/heads/main",
        INPUT_REPORT=str(junk),
    )
    assert tampered.code == 2, tampered.log
    assert f"{junk} is not a dlgate report" in tampered.proc.stderr
    assert project.check_runs(head) == {}


def test_an_invalid_config_at_the_base_fails_every_check_run_with_the_reason(
    project: Project,
) -> None:
    project.origin.write("dlgate.yml", CONFIG.replace("accuracy:\n", "accuracyy:\n"))
    base = project.origin.commit("typo in the gate's config")
    project.origin.branch("feature")
    head = project.origin.commit("a change")
    run = project.action(
        "pull_request",
        pull_request(4, head=head, base=base, head_ref="feature"),
        sha=head,
        ref="refs/pull/4/merge",
    )
    assert run.code == 2, run.log
    assert "::error title=dlgate::dlgate.yml:" in run.proc.stdout
    assert "did you mean" in run.proc.stderr.lower() or "accuracy" in run.proc.stderr
    runs = project.check_runs(head)
    assert sorted(runs) == [f"dlgate/{s}" for s in sorted(STAGES)]
    for items in runs.values():
        assert [(r["status"], r["conclusion"]) for r in items] == [("completed", "failure")]
        assert "invalid configuration" in items[0]["output"]["summary"]
    assert "dlgate could not run" in run.summary
    assert run.outputs["conclusion"] == "failure"


def test_a_crash_after_the_checks_started_leaves_none_in_progress(project: Project) -> None:
    base = project.origin.sha()
    project.origin.branch("gh-readonly-queue/main/pr-1-x")
    head = project.origin.commit("queued")
    project.store.mkdir()
    (project.store / "mlflow.db").write_text("this is not a database\n", encoding="utf-8")
    payload = merge_group(head=head, base=base, head_ref="refs/heads/gh-readonly-queue/main/pr-1-x")
    run = project.action("merge_group", payload, sha=head, ref=payload["merge_group"]["head_ref"])
    assert run.code == 3, run.log  # recording the merge-queue run failed: BaselineError
    runs = project.check_runs(head)
    assert sorted(runs) == [f"dlgate/{s}" for s in sorted(STAGES)]
    for items in runs.values():
        assert [(r["status"], r["conclusion"]) for r in items] == [("completed", "failure")]
        assert "dlgate did not finish" in items[0]["output"]["title"]
    assert "::error title=dlgate::" in run.proc.stdout


def test_a_shallow_checkout_says_to_fetch_the_history(project: Project) -> None:
    base = project.origin.sha()
    project.origin.branch("feature")
    head = project.origin.commit("a change")
    project.origin.checkout("main")
    run = project.action(
        "pull_request",
        pull_request(6, head=head, base=base, head_ref="feature"),
        sha=head,
        ref="refs/pull/6/merge",
        depth=1,
    )
    assert run.code == 2, run.log
    assert f"the head commit {head[:12]} is not in the checkout" in run.proc.stderr
    assert "fetch-depth: 0" in run.proc.stderr
    assert project.check_runs(head) == {}


@pytest.mark.slow
def test_the_digits_example_end_to_end(tmp_path: Path, github: ghemu.GitHubEmulator) -> None:
    """The bundled example as the user's repository: training, export and accuracy for real,
    the baseline recorded by the push to main, then a pull request gated on it (training is
    seeded: the same accuracy, sample by sample)."""
    origin = GitRepo.init(tmp_path / "origin")
    for path in (
        subprocess.run(
            ["git", "ls-files", "-z", "examples/digits"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    ):
        if path:
            origin.write(path.removeprefix("examples/digits/"), (ROOT / path).read_bytes())
    main = origin.commit("digits")
    github.add_repo(REPO, git_dir=origin.path)
    project = Project(origin, github, tmp_path, tmp_path / "store")
    pushed = project.action(
        "push", push("refs/heads/main", after=main), sha=main, ref="refs/heads/main"
    )
    assert pushed.code == 0, pushed.log
    assert float(pushed.outputs["accuracy"]) > 0.9

    origin.branch("docs")
    origin.write("README.md", "# digits\n\nA better README.\n")
    head = origin.commit("docs")
    pr = project.action(
        "pull_request",
        pull_request(21, head=head, base=main, head_ref="docs"),
        sha=head,
        ref="refs/pull/21/merge",
    )
    assert pr.code == 0, pr.log
    assert pr.report.baseline is not None
    assert (pr.report.baseline.found, pr.report.baseline.sha) == ("exact", main)
    assert pr.outputs["accuracy-delta"] == "0"
    runs = project.check_runs(head)
    assert {n: (len(v), v[0]["conclusion"]) for n, v in runs.items()} == {
        f"dlgate/{s}": (1, "success") for s in STAGES
    }


def test_the_config_input_is_read_from_the_base_revision(project: Project) -> None:
    project.origin.write("ci/gate.yml", CONFIG + "stages: [changes, accuracy]\n")
    base = project.origin.commit("the gate's configuration in ci/")
    project.origin.branch("loosen")
    project.origin.write("ci/gate.yml", CONFIG + "stages: [changes]\n")  # no accuracy check
    head = project.origin.commit("drop the accuracy stage")
    payload = pull_request(8, head=head, base=base, head_ref="loosen")
    run = project.action(
        "pull_request", payload, sha=head, ref="refs/pull/8/merge", INPUT_CONFIG="ci/gate.yml"
    )
    assert run.code == run.verdict, run.log
    assert [s.name for s in run.report.stages] == ["changes", "accuracy"]
    assert sorted(project.check_runs(head)) == ["dlgate/accuracy", "dlgate/changes"]
    assert run.report.check("changes.config") is not None

    missing = project.action(
        "pull_request", payload, sha=head, ref="refs/pull/8/merge", INPUT_CONFIG="ci/nope.yml"
    )
    assert missing.code == 2, missing.log
    assert f"ci/nope.yml: not found at {base[:7]}" in missing.proc.stderr
