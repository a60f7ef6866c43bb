"""What a webhook delivery asks for: a `JobSpec` to run, or `Ignored` with the reason.

Sans-IO: plain functions over the event name and the parsed payload, so they are tested with
GitHub's stored payloads and no server. Re-runs (`check_run` / `check_suite` rerequested) need
the job that made the check runs; `route()` takes a lookup for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from dlgate.report import STAGES

ZERO_SHA = "0" * 40
KINDS = ("pr", "baseline", "release", "merge_group")
CHECK_PREFIX = "dlgate/"
RERUN_ACTION = "rerun"  # the identifier of the check runs' "Re-run" button


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to gate one commit; serialized into the queue as JSON."""

    kind: str  # pr | baseline | release | merge_group
    repo: str  # owner/name
    installation_id: int
    clone_url: str
    default_branch: str
    head_sha: str
    base_sha: str = ""  # pr and merge_group
    ref: str = ""  # branch (baseline, pr head) or tag (release)
    pr: int | None = None
    head_clone_url: str = ""  # a fork PR's head repository
    stages: tuple[str, ...] = ()  # empty: the configured stages
    event: str = ""  # what asked for it, e.g. "pull_request.synchronize"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        d = json.loads(text)
        d["stages"] = tuple(d.get("stages", ()))
        return cls(**d)

    @property
    def title(self) -> str:
        what = {
            "pr": f"PR #{self.pr} at {self.head_sha[:7]}",
            "baseline": f"baseline {self.ref} at {self.head_sha[:7]}",
            "release": f"release {self.ref}",
            "merge_group": f"merge queue at {self.head_sha[:7]}",
        }[self.kind]
        only = f" (re-run: {', '.join(self.stages)})" if self.stages else ""
        return f"{self.repo}: {what}{only}"


@dataclass(frozen=True)
class Ignored:
    reason: str


Lookup = Callable[[str, str], JobSpec | None]  # (repo, head_sha) → the last job's spec


class PayloadError(ValueError):
    """The payload lacks a field the event must have (answered 400)."""


def route(event: str, payload: Mapping[str, Any], lookup: Lookup) -> JobSpec | Ignored:
    """The job a delivery asks for. Raises `PayloadError` when a needed field is missing."""
    action = str(payload.get("action", ""))
    handler = _HANDLERS.get(event)
    if handler is None:
        return Ignored(f"event {event!r} is not one dlgate handles")
    try:
        return handler(action, payload, lookup)
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"{event} payload lacks or mangles {exc}") from None


def _repo(payload: Mapping[str, Any]) -> tuple[str, str, str]:
    r = payload["repository"]
    return str(r["full_name"]), str(r["clone_url"]), str(r.get("default_branch") or "main")


def _installation(payload: Mapping[str, Any]) -> int | None:
    inst = payload.get("installation")
    return int(inst["id"]) if isinstance(inst, Mapping) and "id" in inst else None


def _base(event: str, action: str, payload: Mapping[str, Any], **kw: Any) -> JobSpec | Ignored:
    inst = _installation(payload)
    if inst is None:
        return Ignored(f"{event}.{action or '-'} has no installation: not a delivery to the App")
    full_name, clone_url, default_branch = _repo(payload)
    return JobSpec(
        repo=full_name,
        installation_id=inst,
        clone_url=clone_url,
        default_branch=default_branch,
        event=f"{event}.{action}".rstrip("."),
        **kw,
    )


def _pull_request(action: str, payload: Mapping[str, Any], _lookup: Lookup) -> JobSpec | Ignored:
    if action not in ("opened", "synchronize", "reopened"):
        return Ignored(f"pull_request.{action} does not change the code")
    pr = payload["pull_request"]
    head_repo = (pr["head"].get("repo") or {}).get("clone_url", "")
    base_repo = payload["repository"]["clone_url"]
    return _base(
        "pull_request",
        action,
        payload,
        kind="pr",
        head_sha=str(pr["head"]["sha"]),
        base_sha=str(pr["base"]["sha"]),
        ref=str(pr["head"]["ref"]),
        pr=int(pr["number"]),
        head_clone_url=head_repo if head_repo and head_repo != base_repo else "",
    )


def _push(action: str, payload: Mapping[str, Any], _lookup: Lookup) -> JobSpec | Ignored:
    ref = str(payload["ref"])
    after = str(payload["after"])
    if payload.get("deleted") or after == ZERO_SHA:
        return Ignored(f"push deleting {ref}")
    _full, _url, default_branch = _repo(payload)
    if ref.startswith("refs/tags/"):
        return _base(
            "push", "", payload, kind="release", head_sha=after, ref=ref.removeprefix("refs/tags/")
        )
    # Merge-queue branches (gh-readonly-queue/*) are not the default branch, so this also
    # keeps them from ever being recorded as a baseline.
    if ref == f"refs/heads/{default_branch}":
        return _base("push", "", payload, kind="baseline", head_sha=after, ref=default_branch)
    return Ignored(f"push to {ref}, not the default branch {default_branch!r} nor a tag")


def _merge_group(action: str, payload: Mapping[str, Any], _lookup: Lookup) -> JobSpec | Ignored:
    if action != "checks_requested":
        return Ignored(f"merge_group.{action} needs no checks")
    mg = payload["merge_group"]
    return _base(
        "merge_group",
        action,
        payload,
        kind="merge_group",
        head_sha=str(mg["head_sha"]),
        base_sha=str(mg["base_sha"]),
        ref=str(mg["head_ref"]),
    )


def _check_run(action: str, payload: Mapping[str, Any], lookup: Lookup) -> JobSpec | Ignored:
    run = payload["check_run"]
    name = str(run["name"])
    if action == "requested_action":
        identifier = str((payload.get("requested_action") or {}).get("identifier", ""))
        if identifier != RERUN_ACTION:
            return Ignored(f"check_run action {identifier!r} is not one dlgate offers")
    elif action != "rerequested":
        return Ignored(f"check_run.{action} needs nothing")
    stage = name.removeprefix(CHECK_PREFIX)
    if not name.startswith(CHECK_PREFIX) or stage not in STAGES:
        return Ignored(f"check run {name!r} is not one of dlgate's")
    return _rerun(
        "check_run",
        action,
        payload,
        head_sha=str(run["head_sha"]),
        suite=run.get("check_suite") or {},
        pulls=run.get("pull_requests") or [],
        stages=(stage,),
        lookup=lookup,
    )


def _check_suite(action: str, payload: Mapping[str, Any], lookup: Lookup) -> JobSpec | Ignored:
    if action != "rerequested":
        return Ignored(f"check_suite.{action} needs nothing")
    suite = payload["check_suite"]
    return _rerun(
        "check_suite",
        action,
        payload,
        head_sha=str(suite["head_sha"]),
        suite=suite,
        pulls=suite.get("pull_requests") or [],
        stages=(),
        lookup=lookup,
    )


def _rerun(
    event: str,
    action: str,
    payload: Mapping[str, Any],
    *,
    head_sha: str,
    suite: Mapping[str, Any],
    pulls: list[Any],
    stages: tuple[str, ...],
    lookup: Lookup,
) -> JobSpec | Ignored:
    """Run again what made these check runs: the last job for the commit, else what the
    suite says (its PR, or its branch when that is the default branch)."""
    base = _base(event, action, payload, kind="pr", head_sha=head_sha)
    if isinstance(base, Ignored):
        return base
    previous = lookup(base.repo, head_sha)
    if previous is not None:
        return replace(
            previous, stages=stages, event=base.event, installation_id=base.installation_id
        )
    pull = next((p for p in pulls if p["head"]["sha"] == head_sha), None)
    if pull is not None:
        return replace(
            base,
            base_sha=str(pull["base"]["sha"]),
            ref=str(pull["head"]["ref"]),
            pr=int(pull["number"]),
            stages=stages,
        )
    if suite.get("head_branch") == base.default_branch:
        return replace(base, kind="baseline", ref=base.default_branch, stages=stages)
    return Ignored(f"no earlier job and no pull request for {head_sha[:7]}: nothing to re-run")


def _installation_event(action: str, payload: Mapping[str, Any], _l: Lookup) -> Ignored:
    account = (payload.get("installation") or {}).get("account") or {}
    return Ignored(f"installation {action} for {account.get('login', '?')}: acknowledged")


def _ping(action: str, payload: Mapping[str, Any], _l: Lookup) -> Ignored:
    return Ignored(f"ping: {payload.get('zen', 'pong')}")


_HANDLERS: dict[str, Callable[[str, Mapping[str, Any], Lookup], JobSpec | Ignored]] = {
    "pull_request": _pull_request,
    "push": _push,
    "merge_group": _merge_group,
    "check_run": _check_run,
    "check_suite": _check_suite,
    "installation": _installation_event,
    "installation_repositories": _installation_event,
    "ping": _ping,
}
