"""What a workflow event asks `dlgate action` to do: a `Plan`. Sans-IO, like the service's
`events.py`: plain functions over the event name and GitHub's payload, tested with GitHub's own
payload examples.

    pull_request            gate `pull_request.head.sha` against `pull_request.base.sha`
    merge_group             gate `merge_group.head_sha` against `merge_group.base_sha`
    push                    the default branch: record the baseline; a tag: record the release;
                            gh-readonly-queue/*, other branches, deletions: nothing
    release (published)     record the release
    workflow_run            publish the report of a pull request's run (forks)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dlgate.errors import UsageError

QUEUE_PREFIX = "refs/heads/gh-readonly-queue/"
_NULL_SHA = "0" * 40


@dataclass(frozen=True)
class Plan:
    """What an event asks for. `kind`: a gate kind (pr, baseline, release, merge_group),
    `publish` (a workflow_run publishing a report) or `skip` (nothing to do: `reason`)."""

    kind: str
    head: str = ""
    base: str | None = None
    ref: str = ""
    pr: int | None = None
    checks_on: str | None = None  # the commit that gets check runs; None: no check runs
    fork: bool = False
    reason: str = ""


def plan(event: str, payload: Mapping[str, Any], sha: str) -> Plan:
    """The plan for a workflow event (pure: no git, no network). `sha` is GITHUB_SHA."""
    if event == "pull_request_target":
        raise UsageError(
            "dlgate does not run on pull_request_target: that event runs the pull request's "
            "code with a token that can write; gate on `pull_request` and publish check runs "
            "for forks with the workflow_run pattern (docs/action.md)"
        )
    planner = _PLANNERS.get(event)
    if planner is None:
        raise UsageError(
            f"dlgate cannot act on the {event!r} event; it handles pull_request, merge_group, "
            "push (default branch and tags), release (published) and workflow_run"
        )
    return planner(payload, sha)


def _pull_request(payload: Mapping[str, Any], sha: str) -> Plan:
    if payload.get("action") == "closed":
        return Plan("skip", reason="the pull request was closed: nothing to gate")
    pr = _get(payload, "pull_request")
    head = str(_get(pr, "head.sha", "pull_request."))  # GITHUB_SHA is the merge commit
    head_repo = (pr.get("head") or {}).get("repo") or {}
    base_repo = (pr.get("base") or {}).get("repo") or {}
    return Plan(
        "pr",
        head=head,
        base=str(_get(pr, "base.sha", "pull_request.")),
        ref=str(_get(pr, "head.ref", "pull_request.")),
        pr=int(_get(pr, "number", "pull_request.")),
        checks_on=head,
        fork=head_repo.get("full_name") != base_repo.get("full_name"),
    )


def _merge_group(payload: Mapping[str, Any], sha: str) -> Plan:
    group = _get(payload, "merge_group")
    head = str(_get(group, "head_sha", "merge_group."))
    return Plan(
        "merge_group",
        head=head,
        base=str(_get(group, "base_sha", "merge_group.")),
        ref=str(group.get("head_ref", "")),
        checks_on=head,
    )


def _push(payload: Mapping[str, Any], sha: str) -> Plan:
    ref = str(_get(payload, "ref"))
    after = str(payload.get("after") or sha)
    if payload.get("deleted") or after == _NULL_SHA:
        return Plan("skip", reason=f"{ref} was deleted: nothing to gate")
    if ref.startswith("refs/tags/"):
        return Plan("release", head=after, ref=ref.removeprefix("refs/tags/"))
    if ref.startswith(QUEUE_PREFIX):
        return Plan(
            "skip",
            reason=f"{ref} is a merge-queue branch: the merge_group event gates it, and it is "
            "never a baseline",
        )
    repo = payload.get("repository") or {}
    default = repo.get("default_branch") or repo.get("master_branch") or "main"
    if ref != f"refs/heads/{default}":
        return Plan(
            "skip",
            reason=f"{ref} is not the default branch ({default}): branches are gated through "
            "their pull requests",
        )
    return Plan("baseline", head=after, ref=default)


def _release(payload: Mapping[str, Any], sha: str) -> Plan:
    action = payload.get("action")
    if action != "published":  # `released`/`created` come with it: recording once is enough
        return Plan("skip", reason=f"release {action}: only a published release is recorded")
    tag = str(_get(payload, "release.tag_name"))
    return Plan("release", head=sha or f"refs/tags/{tag}", ref=tag)


def _workflow_run(payload: Mapping[str, Any], sha: str) -> Plan:
    run = _get(payload, "workflow_run")
    if run.get("event") != "pull_request":
        return Plan(
            "skip",
            reason=f"the workflow run was for a {run.get('event')} event: only pull requests' "
            "reports are published this way",
        )
    prs = run.get("pull_requests") or []  # empty for a fork's pull request
    head = str(_get(run, "head_sha", "workflow_run."))
    return Plan("publish", head=head, pr=prs[0].get("number") if prs else None, checks_on=head)


_PLANNERS: dict[str, Callable[[Mapping[str, Any], str], Plan]] = {
    "pull_request": _pull_request,
    "merge_group": _merge_group,
    "push": _push,
    "release": _release,
    "workflow_run": _workflow_run,
}


def _get(payload: Mapping[str, Any], dotted: str, prefix: str = "") -> Any:
    node: Any = payload
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or node.get(key) is None:
            raise UsageError(f"the event payload has no `{prefix}{dotted}` (GITHUB_EVENT_PATH)")
        node = node[key]
    return node
