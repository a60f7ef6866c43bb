"""What a GitHub Actions step writes for the runner: workflow commands on stdout, the step
summary (`$GITHUB_STEP_SUMMARY`) and step outputs (`$GITHUB_OUTPUT`).

Formats from GitHub's "Workflow commands for GitHub Actions": a command is
`::name key=value,…::message`, with `%`, CR and LF escaped in the message and `:` and `,` also
in values; outputs use the multi-line form `name<<DELIMITER` … `DELIMITER`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dlgate.report import Level, Outcome, Report

SUMMARY_LIMIT = 1024 * 1024  # GitHub's cap on one step's summary, in bytes
COMMAND_ANNOTATIONS = 50  # file annotations printed as commands; the rest are in the check runs
_LEVELS = {Level.FAILURE: "error", Level.WARNING: "warning", Level.NOTICE: "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: str | int) -> None:
    """Print one workflow command, e.g. `command("error", "bad", file="a.py", line=3)`."""
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties.items())
    print(f"::{name}{' ' + props if props else ''}::{escape_data(message)}", flush=True)


@contextmanager
def group(title: str) -> Iterator[None]:
    """A collapsible group of log lines."""
    command("group", title)
    try:
        yield
    finally:
        command("endgroup")


@contextmanager
def untrusted_output() -> Iterator[None]:
    """Stop the runner from reading workflow commands in what is printed meanwhile: file
    names, messages and logs come from the pull request, which must not issue commands."""
    token = uuid.uuid4().hex
    command("stop-commands", token)
    try:
        yield
    finally:
        command(token)


def annotate(report: Report, prefix: str = "") -> None:
    """The report's findings as annotations on the workflow run: one per blocking or warning
    check, and its file annotations (paths under `prefix`, the checkout's folder in the
    workspace). Shown even where no check run can be published (a fork's pull request)."""
    printed = left = 0
    for stage in report.stages:
        for c in stage.checks:
            if c.outcome.blocks or c.outcome is Outcome.WARN:
                level = "error" if c.outcome.blocks else "warning"
                command(level, f"{c.id}: {c.message}", title=stage.check_name)
            for a in c.annotations:
                if printed >= COMMAND_ANNOTATIONS:
                    left += 1
                    continue
                props: dict[str, str | int] = {
                    "file": prefix + a.path.removeprefix("./"),
                    "line": max(a.start_line, 1),
                    "endLine": max(a.end_line or a.start_line, a.start_line, 1),
                }
                if a.title:
                    props["title"] = a.title
                command(_LEVELS[a.level], a.message, **props)
                printed += 1
    if left:
        print(f"dlgate: {left} more annotations are in the check runs and report.json", flush=True)


def append_summary(path: Path | None, markdown: str, run_url: str = "") -> None:
    """Append to the step summary, within what GitHub accepts for one step."""
    if path is None:
        return
    used = path.stat().st_size if path.exists() else 0
    with path.open("a", encoding="utf-8") as f:
        f.write(clip_summary(markdown, run_url, SUMMARY_LIMIT - used))


def clip_summary(markdown: str, run_url: str = "", limit: int = SUMMARY_LIMIT) -> str:
    """`markdown` within `limit` UTF-8 bytes: cut at a line end, an open code fence and open
    `<details>` blocks closed, and a note saying where the whole report is."""
    size = len(markdown.encode())
    if size <= limit:
        return markdown
    where = "`summary.md` and `report.json` in the run's `dlgate-report` artifact"
    if run_url:
        where += f" ([the run]({run_url}))"
    note = (
        f"\n\n---\n✂️ Truncated: a step summary holds at most {limit // 1024:,} KiB and this "
        f"report has {size // 1024:,} KiB. The whole report is {where}.\n"
    )
    budget = limit - len(note.encode())
    while budget > 0:
        cut = markdown.encode()[:budget].decode(errors="ignore")
        if (nl := cut.rfind("\n")) > len(cut) // 2:
            cut = cut[:nl]
        closers = "\n```" if cut.count("```") % 2 else ""
        closers += "\n</details>" * max(0, cut.count("<details") - cut.count("</details>"))
        text = cut + closers + note
        if len(text.encode()) <= limit:
            return text
        budget -= len(text.encode()) - limit
    return note.encode()[: max(limit, 0)].decode(errors="ignore")


def write_outputs(path: Path | None, outputs: Mapping[str, str]) -> None:
    """Append step outputs in the multi-line-safe form: `name<<DELIM`, value, `DELIM`."""
    if path is None:
        return
    chunks = []
    for name, value in outputs.items():
        delimiter = f"ghadelimiter_{uuid.uuid4()}"
        while delimiter in value:  # never in practice, but the format breaks if it happens
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
        chunks.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(chunks))


def read_outputs(text: str) -> dict[str, str]:
    """Parse a `$GITHUB_OUTPUT` file the way the runner does (both `name=value` lines and the
    multi-line form); for tests and for tools that chain steps locally."""
    out: dict[str, str] = {}
    lines = iter(text.split("\n"))
    for line in lines:
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value: list[str] = []
            for inner in lines:
                if inner == delimiter:
                    break
                value.append(inner)
            else:
                raise ValueError(f"output {name!r}: no closing delimiter {delimiter!r}")
            out[name] = "\n".join(value)
        else:
            name, _, rest = line.partition("=")
            out[name] = rest
    return out
