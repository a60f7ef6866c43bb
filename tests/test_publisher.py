"""The check-run publisher, through real PyGithub, against the GitHub emulator."""

from __future__ import annotations

from collections.abc import Sequence

import ghemu
import pytest
from conftest import GitRepo
from github import Auth, Github

from dlgate.errors import PublishError
from dlgate.report import (
    STAGES,
    Annotation,
    BaselineInfo,
    CheckResult,
    Level,
    Outcome,
    Report,
    Revision,
    StageResult,
)
from dlgate.service.publisher import (
    MAX_OUTPUT,
    Publisher,
    RetryPolicy,
    annotation_json,
    fit,
)

REPO = "octo/demo"
FAST = RetryPolicy(attempts=10, backoff_s=0.001, max_wait_s=0.01, secondary_wait_s=0.01)
DETAILS = "https://ci.example.com/runs/42"


@pytest.fixture
def head(git_repo: GitRepo, github: ghemu.GitHubEmulator) -> str:
    """A real commit of a real repository that the emulator serves as octo/demo."""
    git_repo.write("model.py", "x = 1\n")
    git_repo.commit("first")
    github.add_repo(REPO, git_dir=git_repo.path)
    return git_repo.sha()


def client(emu: ghemu.GitHubEmulator, token: str | None = None, timeout: int = 15) -> Github:
    # PyGithub's default GithubRetry stays on here: the publisher must be safe regardless.
    return Github(
        base_url=emu.base_url,
        auth=Auth.Token(token or emu.token),
        timeout=timeout,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def publisher(emu: ghemu.GitHubEmulator, sha: str, retry: RetryPolicy = FAST) -> Publisher:
    return Publisher((client(emu), REPO), sha, details_url=DETAILS, retry=retry)


def stage(
    name: str,
    outcome: Outcome = Outcome.PASS,
    *,
    annotations: int = 0,
    details: str = "",
) -> StageResult:
    notes = tuple(
        Annotation(
            path=f"data/train/{i:03d}.png",
            message=f"sample {i} is a near duplicate",
            level=(Level.NOTICE, Level.WARNING, Level.FAILURE)[i % 3],
            start_line=1,
            title="near duplicate",
        )
        for i in range(annotations)
    )
    check = CheckResult(
        id=f"{name}.main",
        outcome=outcome,
        message=f"{name} says {outcome.value}",
        measurements={"accuracy": 0.9623, "samples": 120, "classes": ["0", "1"]},
        annotations=notes,
        details=details,
    )
    return StageResult(
        name=name, checks=(check,), title=f"{name}: {outcome.value}", summary=f"The {name} stage"
    )


def report(sha: str, stages: Sequence[StageResult] | None = None) -> Report:
    return Report(
        kind="pr",
        repo=REPO,
        head=Revision("feature", sha),
        base=Revision("main", "b" * 40),
        merge_base="b" * 40,
        baseline=BaselineInfo(found="exact", sha="b" * 40),
        stages=tuple(stages if stages is not None else [stage(n) for n in STAGES]),
        started_at="2024-05-01T12:00:00Z",
        duration_s=12.5,
        dlgate_version="0.1.0",
    )


def by_name(emu: ghemu.GitHubEmulator, sha: str) -> dict[str, list[ghemu.JSON]]:
    out: dict[str, list[ghemu.JSON]] = {}
    for run in emu.check_runs(REPO, head_sha=sha):
        out.setdefault(str(run["name"]), []).append(run)
    return out


def test_start_creates_one_in_progress_run_per_stage(
    github: ghemu.GitHubEmulator, head: str
) -> None:
    pub = publisher(github, head)
    pub.start(STAGES)
    runs = by_name(github, head)
    assert sorted(runs) == sorted(f"dlgate/{s}" for s in STAGES)
    for s in STAGES:
        (run,) = runs[f"dlgate/{s}"]
        assert run["status"] == "in_progress"
        assert run["external_id"] == f"dlgate:{head}:{s}"
        assert run["details_url"] == DETAILS
    assert pub.check_run_ids == {s: runs[f"dlgate/{s}"][0]["id"] for s in STAGES}
    # Lazy objects: no GET of the repository or the commit before writing.
    assert github.count("GET", "/repos/octo/demo") == 0


def test_complete_sets_conclusions_titles_summaries(
    github: ghemu.GitHubEmulator, head: str
) -> None:
    pub = publisher(github, head)
    pub.start(STAGES)
    stages = [stage(n) for n in STAGES]
    stages[1] = stage("data", Outcome.FAIL, details="- `data/x.png` is corrupt")
    stages[2] = stage("training", Outcome.ERROR)
    stages[3] = stage("export", Outcome.SKIP)
    stages[4] = stage("accuracy", Outcome.WARN)
    pub.complete(report(head, stages))

    runs = {name: rs[0] for name, rs in by_name(github, head).items()}
    assert {n: r["conclusion"] for n, r in runs.items()} == {
        "dlgate/changes": "success",
        "dlgate/data": "failure",
        "dlgate/training": "failure",  # a broken check blocks like a failing one
        "dlgate/export": "skipped",
        "dlgate/accuracy": "success",  # a warning does not block
    }
    assert all(r["status"] == "completed" and r["completed_at"] for r in runs.values())
    data = runs["dlgate/data"]["output"]
    assert isinstance(data, dict)
    assert data["title"] == "data: fail"
    assert data["summary"].startswith("**The data stage** — baseline = main @ bbbbbbb")
    assert "`data.main`" in data["summary"]
    assert "data says fail" in data["summary"]
    assert "`data/x.png` is corrupt" in data["summary"]
    assert "| accuracy | 0.9623 |" in data["text"]
    assert "| samples | 120 |" in data["text"]
    # The "Re-run" button the webhook service answers on check_run.requested_action.
    assert [a["identifier"] for a in runs["dlgate/data"].get("actions", [])] == ["rerun"]


def test_a_refusal_is_never_neutral(github: ghemu.GitHubEmulator, head: str) -> None:
    pub = publisher(github, head)
    pub.complete(report(head, [stage(n, Outcome.FAIL) for n in STAGES]))
    conclusions = {r["conclusion"] for r in github.check_runs(REPO, head_sha=head)}
    assert conclusions == {"failure"}


def test_120_annotations_go_in_three_batches(github: ghemu.GitHubEmulator, head: str) -> None:
    pub = publisher(github, head)
    pub.start(["data"])
    pub.complete(report(head, [stage("data", Outcome.FAIL, annotations=120)]))
    run_id = pub.check_run_ids["data"]
    patches = [r for r in github.requests if r.method == "PATCH"]
    assert [len(p.body["output"]["annotations"]) for p in patches] == [50, 50, 20]
    assert patches[0].body["conclusion"] == "failure"  # the first batch completes the run
    assert all("conclusion" not in p.body for p in patches[1:])
    stored = github.annotations(REPO, run_id)
    assert [a["path"] for a in stored] == [f"data/train/{i:03d}.png" for i in range(120)]
    assert [a["annotation_level"] for a in stored[:3]] == ["notice", "warning", "failure"]
    (run,) = github.check_runs(REPO, head_sha=head)
    assert run["output"]["annotations_count"] == 120


def test_a_70k_summary_is_truncated_with_a_pointer(github: ghemu.GitHubEmulator, head: str) -> None:
    details = "\n".join(f"- sample {i:05d} flipped from cat to dog" for i in range(2000))
    assert len(details) > 70_000
    pub = publisher(github, head)
    pub.complete(report(head, [stage("accuracy", Outcome.FAIL, details=details)]))
    (run,) = github.check_runs(REPO, head_sha=head)
    summary = run["output"]["summary"]
    assert len(summary) <= MAX_OUTPUT
    assert summary.rstrip().endswith(f"See [the full report]({DETAILS}).")
    assert "sample 00000 flipped" in summary
    # The <details> block the cut fell into is closed, so the rest of the page renders.
    assert summary.count("<details") == summary.count("</details>")


def test_starting_twice_keeps_one_run_per_stage(github: ghemu.GitHubEmulator, head: str) -> None:
    publisher(github, head).start(STAGES)
    restarted = publisher(github, head)  # a restarted job: a fresh process, same commit
    restarted.start(STAGES)
    restarted.start(STAGES)
    assert {n: len(rs) for n, rs in by_name(github, head).items()} == {
        f"dlgate/{s}": 1 for s in STAGES
    }
    assert github.count("POST", r".*/check-runs") == len(STAGES)


def test_a_lost_create_response_does_not_duplicate(github: ghemu.GitHubEmulator, head: str) -> None:
    github.faults(rate=1.0, kinds=("lost",), match=r"POST .*/check-runs$", times=1)
    pub = publisher(github, head)
    pub.start(STAGES)
    pub.complete(report(head))
    assert [f.fault for f in github.injected] == ["lost"]
    runs = by_name(github, head)
    assert {n: [r["conclusion"] for r in rs] for n, rs in runs.items()} == {
        f"dlgate/{s}": ["success"] for s in STAGES
    }


def test_a_timed_out_create_does_not_duplicate(github: ghemu.GitHubEmulator, head: str) -> None:
    github.faults(rate=1.0, kinds=("timeout",), delay_s=1.5, match=r"POST .*/check-runs$", times=1)
    pub = Publisher((client(github, timeout=1), REPO), head, retry=FAST)
    pub.start(["changes"])
    assert [f.fault for f in github.injected] == ["timeout"]
    assert len(github.check_runs(REPO, head_sha=head)) == 1


def test_a_lost_annotation_update_is_not_resent(github: ghemu.GitHubEmulator, head: str) -> None:
    pub = publisher(github, head)
    pub.start(["data"])
    github.faults(rate=1.0, kinds=("lost",), match=r"PATCH ", times=2)
    pub.complete(report(head, [stage("data", Outcome.FAIL, annotations=120)]))
    assert len(github.injected) == 2
    assert len(github.annotations(REPO, pub.check_run_ids["data"])) == 120


def test_ten_publishes_under_random_faults(github: ghemu.GitHubEmulator, git_repo: GitRepo) -> None:
    github.add_repo(REPO, git_dir=git_repo.path)
    kinds = ("500", "502", "503", "403-secondary", "429", "lost")
    github.faults(rate=0.3, kinds=kinds, seed=7)
    shas = []
    for i in range(10):
        git_repo.write("model.py", f"x = {i}\n")
        shas.append(git_repo.commit(f"commit {i}"))
        pub = publisher(github, shas[-1])
        pub.start(STAGES)
        stages = [stage(n, Outcome.FAIL if n == "data" else Outcome.PASS) for n in STAGES]
        stages[1] = stage("data", Outcome.FAIL, annotations=60)
        pub.complete(report(shas[-1], stages))
    assert {f.fault for f in github.injected} == set(kinds)  # every kind happened
    assert len(github.injected) > 50
    for sha in shas:
        runs = by_name(github, sha)
        assert {n: len(rs) for n, rs in runs.items()} == {f"dlgate/{s}": 1 for s in STAGES}
        assert all(rs[0]["status"] == "completed" for rs in runs.values())
        assert runs["dlgate/data"][0]["conclusion"] == "failure"
        assert runs["dlgate/changes"][0]["conclusion"] == "success"
        data_id = runs["dlgate/data"][0]["id"]
        assert isinstance(data_id, int)
        assert len(github.annotations(REPO, data_id)) == 60


def test_a_failing_endpoint_raises_publish_error(github: ghemu.GitHubEmulator, head: str) -> None:
    pub = publisher(github, head)
    pub.start(STAGES)
    github.faults(rate=1.0, kinds=("502",), match=r"PATCH .*/check-runs/")
    with pytest.raises(PublishError) as caught:
        pub.complete(report(head))
    message = str(caught.value)
    assert "HTTP 502 (Server Error), 10 times in a row" in message
    for s in STAGES:  # every stage was attempted, each named
        assert f"update check run dlgate/{s}" in message
    assert github.count("PATCH", r".*/check-runs/\d+") == 10 * len(STAGES)


def test_a_read_only_token_fails_with_the_fork_hint(
    github: ghemu.GitHubEmulator, head: str
) -> None:
    read_only = github.add_token(permissions={k: "read" for k in ghemu.DEFAULT_PERMISSIONS})
    pub = Publisher((client(github, read_only), REPO), head, retry=FAST)
    with pytest.raises(PublishError, match=r"HTTP 403 .*fork.*checks: write"):
        pub.start(["changes"])
    assert github.count("POST", r".*/check-runs") == 1  # a plain 403 is not retried


def test_an_unknown_repository_is_a_clear_error(github: ghemu.GitHubEmulator, head: str) -> None:
    pub = Publisher((client(github), "octo/missing"), head, retry=FAST)
    with pytest.raises(PublishError, match=r"HTTP 404 .*octo/missing was not found"):
        pub.start(["changes"])


def test_retry_after_is_honored_and_capped(github: ghemu.GitHubEmulator, head: str) -> None:
    waits: list[float] = []
    github.faults(rate=1.0, kinds=("429",), retry_after=7, times=2)
    policy = RetryPolicy(attempts=5, backoff_s=0.001, max_wait_s=30)
    Publisher((client(github), REPO), head, retry=policy, sleep=waits.append).start(["data"])
    assert waits == [7, 7]

    waits.clear()
    github.faults(rate=1.0, kinds=("403-secondary",), retry_after=7, times=1)
    policy = RetryPolicy(attempts=5, backoff_s=0.001, max_wait_s=2)
    Publisher((client(github), REPO), head, retry=policy, sleep=waits.append).start(["export"])
    assert waits == [2]


def test_an_exhausted_rate_limit_waits_for_the_reset(git_repo: GitRepo) -> None:
    git_repo.commit("first")
    waits: list[float] = []
    with ghemu.GitHubEmulator(rate_limit=3) as emu:
        emu.add_repo(REPO, git_dir=git_repo.path)
        policy = RetryPolicy(attempts=3, backoff_s=0.001, max_wait_s=5)
        pub = Publisher((client(emu), REPO), git_repo.sha(), retry=policy, sleep=waits.append)
        pub.start(["changes"])  # 2 of the 3 requests: list, create
        with pytest.raises(PublishError, match=r"HTTP 403 \(API rate limit exceeded"):
            pub.start(["data"])
    assert waits == [5, 5]  # the reset is an hour away: capped


def test_github_unreachable_raises_publish_error(github: ghemu.GitHubEmulator, head: str) -> None:
    pub = publisher(github, head, retry=RetryPolicy(attempts=2, backoff_s=0.001))
    github.close()
    with pytest.raises(PublishError, match=r"no answer \(ConnectionError\), 2 times"):
        pub.start(["changes"])


def test_fail_all_closes_every_open_run(github: ghemu.GitHubEmulator, head: str) -> None:
    publisher(github, head).start(STAGES)
    # The worker died; a fresh process cleans up without knowing the run ids.
    publisher(github, head).fail_all("the worker was killed (signal 9)")
    runs = github.check_runs(REPO, head_sha=head)
    assert len(runs) == len(STAGES)
    for run in runs:
        assert (run["status"], run["conclusion"]) == ("completed", "failure")
        assert run["output"]["title"] == "dlgate did not finish"
        assert "signal 9" in run["output"]["summary"]


def test_a_started_stage_missing_from_the_report_fails(
    github: ghemu.GitHubEmulator, head: str
) -> None:
    pub = publisher(github, head)
    pub.start(STAGES)
    pub.complete(report(head, [stage("changes"), stage("data")]))
    runs = {n: rs[0] for n, rs in by_name(github, head).items()}
    assert runs["dlgate/data"]["conclusion"] == "success"
    for s in ("training", "export", "accuracy"):
        assert runs[f"dlgate/{s}"]["conclusion"] == "failure"
        assert runs[f"dlgate/{s}"]["output"]["title"] == "stage did not run"


def test_completing_twice_does_not_append_twice(github: ghemu.GitHubEmulator, head: str) -> None:
    pub = publisher(github, head)
    done = report(head, [stage("data", Outcome.FAIL, annotations=3)])
    pub.complete(done)
    pub.complete(done)
    assert len(github.annotations(REPO, pub.check_run_ids["data"])) == 3


def test_a_rerun_after_completion_gets_a_fresh_run(github: ghemu.GitHubEmulator, head: str) -> None:
    # Annotations cannot be removed from a completed run, so a re-run does not reopen it.
    publisher(github, head).complete(report(head, [stage("data")]))
    publisher(github, head).start(["data"])
    runs = sorted(github.check_runs(REPO, head_sha=head), key=lambda r: r["id"])
    assert [r["status"] for r in runs] == ["completed", "in_progress"]


def test_a_repository_object_works_too(github: ghemu.GitHubEmulator, head: str) -> None:
    repo = client(github).get_repo(REPO)
    Publisher(repo, head, retry=FAST).complete(report(head, [stage("changes")]))
    (run,) = github.check_runs(REPO, head_sha=head)
    assert run["conclusion"] == "success"


def test_publishes_as_a_github_app(github: ghemu.GitHubEmulator, head: str) -> None:
    # The webhook service's path: app JWT → installation token → check runs.
    private, public = ghemu.app_keypair()
    github.app_public_key = public
    auth = Auth.AppAuth(github.app_id, private).get_installation_auth(1)
    gh = Github(
        base_url=github.base_url,
        auth=auth,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    Publisher((gh, REPO), head, retry=FAST).complete(report(head, [stage("changes")]))
    (run,) = github.check_runs(REPO, head_sha=head)
    assert run["conclusion"] == "success"
    assert run["app"]["slug"] == "dlgate"
    assert github.count("POST", r"/app/installations/1/access_tokens") == 1


def test_fit_closes_fences_and_respects_the_limit() -> None:
    text = "intro\n```\n" + "line of code\n" * 100
    out = fit(text, None, limit=300)
    assert len(out) <= 300
    assert out.count("```") % 2 == 0
    assert "report.json" in out
    assert fit("short", None, limit=300) == "short"


def test_annotation_json_maps_levels_and_clips() -> None:
    a = Annotation(path="./src/m.py", message="é" * 40_000, level=Level.WARNING, start_line=0)
    out = annotation_json(a)
    assert out["path"] == "src/m.py"
    assert (out["start_line"], out["end_line"]) == (1, 1)
    assert out["annotation_level"] == "warning"
    assert len(out["message"].encode()) <= 64 * 1024
    assert "title" not in out
