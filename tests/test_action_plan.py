"""What `dlgate action` does for each event (`plan`, pure), and how it reads its settings.

Every payload is one of GitHub's own examples (../shared/fixtures/github/webhooks/), with only
the fields a case is about rewritten.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import ghemu
import pytest

from dlgate.action import Settings
from dlgate.actionplan import Plan, plan
from dlgate.cli import ExitCode, main
from dlgate.errors import UsageError

WEBHOOKS = ghemu.fixtures_dir() / "webhooks"
SHA = "a" * 40


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((WEBHOOKS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def test_a_pull_request_gates_its_head_against_its_base() -> None:
    p = fixture("pull_request.opened")
    pr = p["pull_request"]
    assert plan("pull_request", p, SHA) == Plan(
        "pr",
        head=pr["head"]["sha"],
        base=pr["base"]["sha"],
        ref="changes",
        pr=2,
        checks_on=pr["head"]["sha"],  # not GITHUB_SHA, the merge commit
        fork=False,
    )
    for action in ("synchronize", "reopened"):
        assert plan("pull_request", fixture(f"pull_request.{action}"), SHA).kind == "pr"


def test_a_pull_request_from_a_fork_is_known_as_one() -> None:
    p = fixture("pull_request.opened")
    p["pull_request"]["head"]["repo"]["full_name"] = "someone/Hello-World"
    assert plan("pull_request", p, SHA).fork


def test_a_closed_pull_request_is_not_gated() -> None:
    p = fixture("pull_request.opened")
    p["action"] = "closed"
    assert plan("pull_request", p, SHA).kind == "skip"


def test_a_push_to_the_default_branch_records_the_baseline() -> None:
    p = fixture("push.default-branch")  # a real delivery: bkeepers-inc/botland, master
    assert plan("push", p, SHA) == Plan("baseline", head=p["after"], ref="master")


def test_a_push_to_another_branch_is_left_to_its_pull_request() -> None:
    p = fixture("push.branch")
    got = plan("push", p, SHA)
    assert got.kind == "skip"
    assert "refs/heads/bkeepers-patch-3 is not the default branch (master)" in got.reason


def test_a_push_to_a_merge_queue_branch_is_never_a_baseline() -> None:
    group = fixture("merge_group.checks_requested")["merge_group"]
    p = fixture("push.default-branch")
    p.update(ref=group["head_ref"], after=group["head_sha"])
    # Not even where a misconfiguration made it the default branch.
    p["repository"]["default_branch"] = group["head_ref"].removeprefix("refs/heads/")
    got = plan("push", p, SHA)
    assert got.kind == "skip"
    assert "merge-queue branch" in got.reason


def test_a_tag_push_records_the_release() -> None:
    p = fixture("push.tag-created.ghes-35")
    assert plan("push", p, SHA) == Plan("release", head=p["after"], ref="simple-tag")


def test_a_deleted_tag_is_not_gated() -> None:
    p = fixture("push.tag-deleted")
    assert p["deleted"] is True
    assert plan("push", p, SHA).kind == "skip"


def test_a_published_release_records_the_release_at_github_sha() -> None:
    assert plan("release", fixture("release.published"), SHA) == Plan(
        "release", head=SHA, ref="0.0.1"
    )
    edited = fixture("release.published")
    edited["action"] = "edited"
    assert plan("release", edited, SHA).kind == "skip"


def test_a_merge_group_gates_the_queue_head_against_its_base() -> None:
    p = fixture("merge_group.checks_requested")
    group = p["merge_group"]
    assert plan("merge_group", p, SHA) == Plan(
        "merge_group",
        head=group["head_sha"],
        base=group["base_sha"],
        ref=group["head_ref"],
        checks_on=group["head_sha"],
    )


def test_workflow_run_publishes_only_pull_request_reports() -> None:
    run = {"event": "pull_request", "head_sha": SHA, "pull_requests": [{"number": 7}]}
    assert plan("workflow_run", {"workflow_run": run}, "b" * 40) == Plan(
        "publish", head=SHA, pr=7, checks_on=SHA
    )
    pushed = {"workflow_run": {**run, "event": "push"}}
    assert plan("workflow_run", pushed, SHA).kind == "skip"


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        ("pull_request_target", "does not run on pull_request_target"),
        ("check_suite", "cannot act on the 'check_suite' event"),
        ("schedule", "it handles pull_request, merge_group, push"),
    ],
)
def test_events_it_does_not_handle_are_refused_with_what_to_do(event: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        plan(event, fixture("check_suite.requested"), SHA)


def test_a_payload_missing_a_field_names_it() -> None:
    p = copy.deepcopy(fixture("pull_request.opened"))
    del p["pull_request"]["base"]["sha"]
    with pytest.raises(UsageError, match=r"no `pull_request\.base\.sha`"):
        plan("pull_request", p, SHA)


# ---------------------------------------------------------------------------- settings


def runner_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(fixture("pull_request.opened")), encoding="utf-8")
    return {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "octo/demo",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_RUN_ID": "77",
        **extra,
    }


def test_settings_come_from_the_runner_and_the_inputs(tmp_path: Path) -> None:
    s = Settings.from_env(
        runner_env(
            tmp_path,
            GITHUB_TOKEN="from-runner",
            INPUT_TOKEN="from-input",
            INPUT_STAGES="changes, accuracy\ndata",
            INPUT_PUBLISH_CHECKS="false",
            RUNNER_TEMP=str(tmp_path / "temp"),
        )
    )
    assert s.token == "from-input"
    assert s.stages == ("changes", "accuracy", "data")
    assert s.publish is False
    assert s.out == tmp_path / "temp" / "dlgate"
    assert s.run_url == "https://github.com/octo/demo/actions/runs/77"
    assert s.api_url == "https://api.github.com"
    assert s.throttle is True  # GitHub's advice, unless turned off


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"INPUT_STAGES": "changes lint"}, "unknown stage 'lint' in the `stages` input"),
        ({"INPUT_PUBLISH_CHECKS": "maybe"}, "the `publish-checks` input must be true or false"),
        ({"GITHUB_REPOSITORY": ""}, "GITHUB_REPOSITORY is not set"),
    ],
)
def test_bad_settings_are_usage_errors(
    tmp_path: Path, extra: dict[str, str], fragment: str
) -> None:
    with pytest.raises(UsageError, match=fragment):
        Settings.from_env(runner_env(tmp_path, **extra))


def test_an_unreadable_payload_is_named(tmp_path: Path) -> None:
    env = runner_env(tmp_path)
    Path(env["GITHUB_EVENT_PATH"]).write_text("{not json", encoding="utf-8")
    with pytest.raises(
        UsageError, match=f"cannot read the event payload {env['GITHUB_EVENT_PATH']}"
    ):
        Settings.from_env(env)


def test_dlgate_action_outside_a_workflow_exits_2_saying_what_to_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_EVENT_NAME", raising=False)
    assert main(["action"]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert "GITHUB_EVENT_NAME is not set" in captured.err
    assert "use `dlgate run`" in captured.err
    assert captured.out.startswith("::error title=dlgate::GITHUB_EVENT_NAME is not set")
    assert "Traceback" not in captured.err
