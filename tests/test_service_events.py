"""Routing GitHub's own webhook payloads to jobs (sans-IO: no server, no queue)."""

from __future__ import annotations

import pytest
from service_support import payload

from dlgate.service.events import Ignored, JobSpec, PayloadError, route


def _none(_repo: str, _sha: str) -> JobSpec | None:
    return None


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_pull_request_gates_head_against_base(action: str) -> None:
    spec = route("pull_request", payload(f"pull_request.{action}"), _none)
    assert isinstance(spec, JobSpec)
    pr = payload(f"pull_request.{action}")["pull_request"]
    assert (spec.kind, spec.pr, spec.repo) == ("pr", 2, "Codertocat/Hello-World")
    assert (spec.head_sha, spec.base_sha) == (pr["head"]["sha"], pr["base"]["sha"])
    assert spec.installation_id == 1 and spec.default_branch == "master"
    assert spec.head_clone_url == ""  # same-repository PR
    assert spec.event == f"pull_request.{action}"


def test_a_fork_pr_remembers_the_head_repository() -> None:
    p = payload("pull_request.opened")
    p["pull_request"]["head"]["repo"]["clone_url"] = "https://github.com/forker/Hello-World.git"
    spec = route("pull_request", p, _none)
    assert isinstance(spec, JobSpec)
    assert spec.head_clone_url == "https://github.com/forker/Hello-World.git"


def test_closed_pull_request_is_ignored() -> None:
    p = payload("pull_request.opened")
    p["action"] = "closed"
    assert isinstance(route("pull_request", p, _none), Ignored)


def test_push_to_the_default_branch_records_a_baseline() -> None:
    spec = route("push", payload("push.default-branch"), _none)
    assert isinstance(spec, JobSpec)
    assert (spec.kind, spec.ref, spec.head_sha) == (
        "baseline",
        "master",
        "3c8cbf33403deeb9a7c8860b72f1135cb3d0a960",
    )


def test_push_to_another_branch_or_the_merge_queue_is_ignored() -> None:
    assert isinstance(route("push", payload("push.branch"), _none), Ignored)
    p = payload("push.default-branch")
    p["ref"] = "refs/heads/gh-readonly-queue/master/pr-104-929f8209"
    ignored = route("push", p, _none)
    assert isinstance(ignored, Ignored) and "not the default branch" in ignored.reason


def test_tag_push_records_a_release_and_a_deleted_tag_does_not() -> None:
    p = payload("push.tag-created.ghes-35")
    p["installation"] = {"id": 5}
    spec = route("push", p, _none)
    assert isinstance(spec, JobSpec) and (spec.kind, spec.ref) == ("release", "simple-tag")
    assert isinstance(route("push", payload("push.tag-deleted"), _none), Ignored)


def test_merge_group_gates_the_queue_head() -> None:
    spec = route("merge_group", payload("merge_group.checks_requested"), _none)
    assert isinstance(spec, JobSpec)
    assert (spec.kind, spec.head_sha, spec.base_sha) == (
        "merge_group",
        "2ffea6db159f6b6c47a24e778fb9ef40cf6b1c7d",
        "380387fbc80638b734a49e1be1c4dfec1c01b33c",
    )


def test_check_run_rerequested_reruns_that_stage_of_the_last_job() -> None:
    p = payload("check_run.rerequested")
    p["check_run"]["name"] = "dlgate/accuracy"
    head = p["check_run"]["head_sha"]
    earlier = JobSpec(
        kind="pr",
        repo="github/hello-world",
        installation_id=1,
        clone_url="x",
        default_branch="master",
        head_sha=head,
        base_sha="b" * 40,
        pr=9,
    )
    seen: list[tuple[str, str]] = []

    def lookup(repo: str, sha: str) -> JobSpec | None:
        seen.append((repo, sha))
        return earlier

    spec = route("check_run", p, lookup)
    assert seen == [("github/hello-world", head)]
    assert isinstance(spec, JobSpec)
    assert (spec.kind, spec.pr, spec.base_sha, spec.stages) == ("pr", 9, "b" * 40, ("accuracy",))
    assert spec.event == "check_run.rerequested"


def test_check_run_rerequested_without_a_job_uses_the_suite() -> None:
    p = payload("check_run.rerequested")  # its suite is on the default branch, no PR
    p["check_run"]["name"] = "dlgate/data"
    spec = route("check_run", p, _none)
    assert isinstance(spec, JobSpec) and (spec.kind, spec.stages) == ("baseline", ("data",))


def test_foreign_check_runs_and_actions_are_ignored() -> None:
    assert isinstance(route("check_run", payload("check_run.rerequested"), _none), Ignored)
    p = payload("check_run.requested_action")
    p["check_run"]["name"] = "dlgate/changes"
    assert isinstance(route("check_run", p, _none), Ignored)  # identifier lgtm|26764
    p["requested_action"]["identifier"] = "rerun"
    spec = route("check_run", p, _none)
    assert isinstance(spec, JobSpec) and (spec.pr, spec.stages) == (26764, ("changes",))
    assert isinstance(route("check_run", payload("check_run.completed"), _none), Ignored)


def test_check_suite_rerequested_reruns_every_stage_of_its_pr() -> None:
    spec = route("check_suite", payload("check_suite.rerequested"), _none)
    assert isinstance(spec, JobSpec)
    assert (spec.kind, spec.pr, spec.stages) == ("pr", 2, ())
    assert spec.base_sha == "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    assert isinstance(route("check_suite", payload("check_suite.requested"), _none), Ignored)


def test_events_without_installation_or_unknown_are_ignored() -> None:
    assert isinstance(route("release", payload("release.published"), _none), Ignored)
    assert isinstance(route("create", payload("create.tag"), _none), Ignored)
    p = payload("pull_request.opened")
    del p["installation"]
    assert "no installation" in str(route("pull_request", p, _none))
    assert isinstance(route("installation", {"action": "created"}, _none), Ignored)


def test_a_payload_missing_what_its_event_needs_is_a_payload_error() -> None:
    p = payload("pull_request.opened")
    del p["pull_request"]["head"]
    with pytest.raises(PayloadError, match="pull_request payload"):
        route("pull_request", p, _none)


def test_specs_round_trip_through_json() -> None:
    spec = route("pull_request", payload("pull_request.opened"), _none)
    assert isinstance(spec, JobSpec)
    assert JobSpec.from_json(spec.to_json()) == spec
