"""The Action's metadata (action.yml) and the example workflows (examples/workflows/): valid
for GitHub's schemas (check-jsonschema's built-in ones), free of high-severity findings of
zizmor's security audit (pinning actions to a sha aside), least-privilege, and consistent with
what `dlgate action` reads and writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlgate.report import STAGES

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
WORKFLOWS = sorted((ROOT / "examples" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
# What a job may be granted; nothing writes the repository's contents or pull requests.
ALLOWED = {"contents": {"read"}, "checks": {"write"}, "actions": {"read"}}


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}: install the dev extras")
    return str(path)


def load(path: Path) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def zizmor(*paths: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.stdout.strip(), proc.stderr  # exit codes encode the findings' severity
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    return findings


def where(finding: dict[str, Any]) -> str:
    loc = finding["locations"][0]
    path = loc["symbolic"]["key"]["Local"]["verbatim_path"]
    return f"{finding['ident']} at {path}:{loc['concrete']['location']['start_point']['row'] + 1}"


def test_examples_exist_for_every_event() -> None:
    assert [p.name for p in WORKFLOWS] == [
        "baseline.yml",
        "fork-prs-gate.yml",
        "fork-prs-publish.yml",
        "merge-queue.yml",
        "pull-request.yml",
        "release.yml",
    ]


def test_action_yml_is_valid_action_metadata() -> None:
    proc = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(ACTION)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_example_workflow_is_valid(path: Path) -> None:
    proc = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_of_high_severity_but_tag_pinning() -> None:
    findings = zizmor(ACTION, *WORKFLOWS)
    high = [
        where(f)
        for f in findings
        if f["determinations"]["severity"] == "High" and f["ident"] != "unpinned-uses"
    ]
    assert high == []
    # Whatever zizmor reports besides pinning, even at lower severity, is worth a look.
    assert [where(f) for f in findings if f["ident"] != "unpinned-uses"] == []


def test_the_only_suppressed_finding_is_the_workflow_run_trigger(tmp_path: Path) -> None:
    """fork-prs-publish.yml silences zizmor's `dangerous-triggers` inline, with its reason;
    without the comments that is the one finding that appears, and nowhere else."""
    copies = []
    for path in [ACTION, *WORKFLOWS]:
        copy = tmp_path / path.name
        copy.write_text(
            re.sub(r"#\s*zizmor:.*", "", path.read_text(encoding="utf-8")), encoding="utf-8"
        )
        copies.append(copy)
    unsuppressed = [f for f in zizmor(*copies) if f["ident"] != "unpinned-uses"]
    assert [
        (f["ident"], Path(f["locations"][0]["symbolic"]["key"]["Local"]["verbatim_path"]).name)
        for f in unsuppressed
    ] == [("dangerous-triggers", "fork-prs-publish.yml")]


def on(workflow: dict[Any, Any]) -> dict[str, Any]:
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    return trigger if isinstance(trigger, dict) else {str(trigger): None}


def publishes_checks(workflow: dict[Any, Any], step: dict[str, Any]) -> bool:
    if not step.get("uses", "").startswith("dlgate/dlgate@"):
        return False
    inputs = step.get("with") or {}
    if "report" in inputs:  # workflow_run: publishes what the gating run reported
        return True
    if str(inputs.get("publish-checks", "true")).lower() == "false":
        return False
    return bool({"pull_request", "merge_group"} & set(on(workflow)))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_example_workflow_is_least_privilege(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}, "no default grant at the top"
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions")
        assert isinstance(granted, dict), f"job {name} must list its permissions"
        for scope, level in granted.items():
            assert level in ALLOWED.get(scope, set()), f"job {name}: {scope}: {level}"
        steps = job["steps"]
        publishes = any(publishes_checks(workflow, step) for step in steps)
        assert (granted.get("checks") == "write") == publishes, f"job {name}: checks"
        for step in steps:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["fetch-depth"] == 0, "the gate needs the history"
                assert step["with"]["persist-credentials"] is False


def test_the_workflow_run_publisher_never_checks_out_code() -> None:
    workflow = load(ROOT / "examples" / "workflows" / "fork-prs-publish.yml")
    assert set(on(workflow)) == {"workflow_run"}
    gate = load(ROOT / "examples" / "workflows" / "fork-prs-gate.yml")
    assert on(workflow)["workflow_run"]["workflows"] == [gate["name"]]
    assert gate["jobs"]["gate"]["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert not any("checkout" in s.get("uses", "") for s in job["steps"])
        assert not any("run" in s for s in job["steps"])


def gate_step(action: dict[str, Any]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [s for s in action["runs"]["steps"] if s.get("id") == "gate"]
    assert len(steps) == 1
    return steps[0]


def test_action_yml_passes_every_setting_dlgate_action_reads() -> None:
    action = load(ACTION)
    code = (ROOT / "dlgate" / "action.py").read_text(encoding="utf-8")
    read = set(re.findall(r'env\.get\("((?:INPUT|DLGATE)_[A-Z_]+)"', code))
    env = gate_step(action)["env"]
    # Set by action.yml, or meant for tests and GitHub Enterprise only:
    assert read - set(env) <= {"INPUT_OUT", "DLGATE_GITHUB_THROTTLE"}
    assert set(env) <= read
    for name, value in env.items():
        if name.startswith("INPUT_"):
            key = name.removeprefix("INPUT_").lower().replace("_", "-")
            assert value == f"${{{{ inputs.{key} }}}}"
            assert key in action["inputs"]
    used = ACTION.read_text(encoding="utf-8")
    for name in action["inputs"]:
        assert f"inputs.{name}" in used, f"input {name} is not used"


def test_action_yml_outputs_are_what_dlgate_action_writes() -> None:
    written = {"conclusion", "kind", "report", "report-dir", "baseline-sha", "metrics"}
    written |= {f"{s}-conclusion" for s in STAGES} | {"accuracy", "accuracy-delta"}
    for name, output in load(ACTION)["outputs"].items():
        assert output["value"] == f"${{{{ steps.gate.outputs.{name} }}}}"
        assert name in written


def test_action_yml_installs_the_pinned_cpu_build_of_torch() -> None:
    install = next(s for s in load(ACTION)["runs"]["steps"] if s.get("name") == "Install dlgate")
    constraints = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    (pinned,) = re.findall(r"^torch==([\d.]+)\+cpu$", constraints, re.M)
    assert f"--index-url https://download.pytorch.org/whl/cpu torch=={pinned}" in install["run"]
    assert '--constraint "$ACTION_PATH/constraints.txt" "$ACTION_PATH$extras"' in install["run"]
