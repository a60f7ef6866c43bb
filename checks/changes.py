"""Stage `changes`: what a pull request touches — data, code, the gate's config, other files.

Every file changed between the merge base and head is classified once per run (`changeset`)
and two checks judge the result: `changes.mix` refuses data and code changed together (their
effects on accuracy could not be told apart), `changes.config` warns that the gate's own
config was edited (the gate always runs with the base revision's config).

How one path is classified, first rule that applies:

1. the gate's config file (`dlgate.yml`) → `config`, even when an ignore glob matches it: a
   pull request cannot hide an edit of its own gate;
2. `paths.ignore` → ignored (counted nowhere);
3. data: `paths.data`, a DVC pointer (`*.dvc`, `dvc.lock`: they name data by hash), or a Git
   LFS pointer (the file's content at head, or at the merge base for the old side of a
   deletion, rename or edit);
4. code: `paths.code`, or a DVC pipeline (`dvc.yaml`: it says how the data is processed);
5. anything else → `other`.

A path that is data and also matches the code globs (`data/labels.py`) is data — it still
changes the data — and is reported as "matched both". A rename counts under the categories of
both its old and its new path.
"""

from __future__ import annotations

import enum
import functools
import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from dlgate import git
from dlgate.config import CONFIG_FILE, PathsSettings
from dlgate.errors import GitError
from dlgate.registry import check
from dlgate.report import Annotation, Finding, Level, Outcome, Value

if TYPE_CHECKING:
    from dlgate.context import Context

# --- globs -----------------------------------------------------------------------------------


def glob_match(pattern: str, path: str) -> bool:
    """Whether a repository-relative POSIX `path` matches a gitignore-like `pattern`.

    - `*` and `?` never cross a `/`; `[abc]`, `[a-z]`, `[!a]` are character classes;
      a backslash makes the next character literal.
    - `**/` at the start, `/**/` in the middle: any number of directories, zero included;
      `/**` at the end: everything inside; a lone `**`: everything.
    - A pattern without a `/` (`*.py`) matches a file or directory name at any depth; one
      with a `/` (`src/*.py`, `/setup.py`) is anchored at the repository root. A leading
      `./` or `/` only anchors.
    - A pattern that matches a directory matches every file below it (`data` ≡ `data/**`
      and, unanchored, also `x/data/...`); a trailing `/` matches directories only.
    """
    return _compile(pattern).fullmatch(path) is not None


def glob_select(patterns: Iterable[str], path: str) -> str | None:
    """The pattern that selects `path`, or None. As in `.gitignore`, later patterns win and a
    pattern starting with `!` takes a path back out (`!data/README.md`)."""
    selected: str | None = None
    for pattern in patterns:
        negated = pattern.startswith("!")
        if glob_match(pattern[1:] if negated else pattern, path):
            selected = None if negated else pattern
    return selected


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    p = pattern[2:] if pattern.startswith("./") else pattern
    dir_only = p.endswith("/")
    p = p.rstrip("/")
    anchored = "/" in p
    p = p.lstrip("/")
    if not p:
        return re.compile(r"(?!)")  # an empty pattern selects nothing
    segments = p.split("/")
    last = len(segments) - 1
    out = "" if anchored else "(?:.*/)?"
    for i, seg in enumerate(segments):
        if seg == "**":
            out += (".+" if i else ".*") if i == last else "(?:.*/)?"
            continue
        out += _segment(seg) + ("/" if i < last else "")
    out += "/.+" if dir_only else "(?:/.*)?"
    return re.compile(out, re.DOTALL)


def _segment(seg: str) -> str:
    """One path component of a glob as a regular expression (never matching `/`)."""
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "\\" and i + 1 < len(seg):
            out.append(re.escape(seg[i + 1]))
            i += 2
            continue
        if c == "*":
            while i + 1 < len(seg) and seg[i + 1] == "*":
                i += 1  # `a**b` is `a*b`, as in gitignore
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := _class_end(seg, i)) > 0:
            body = seg[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            chars = "".join("\\" + ch if ch in "\\[]^" else ch for ch in body)
            out.append(f"[^/{chars}]" if negate else f"(?!/)[{chars}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _class_end(seg: str, start: int) -> int:
    """Index of the `]` closing the class opened at `start`, or -1 (then `[` is literal)."""
    i = start + 1
    if i < len(seg) and seg[i] in "!^":
        i += 1
    if i < len(seg) and seg[i] == "]":
        i += 1  # a `]` first in the class is a member
    end = seg.find("]", i)
    return end


# --- classification --------------------------------------------------------------------------


class Kind(enum.StrEnum):
    DATA = "data"
    CODE = "code"
    CONFIG = "config"
    OTHER = "other"
    IGNORED = "ignored"


@dataclass(frozen=True)
class Classified:
    """One path and its category. `reason` says which rule decided, e.g. "paths.data
    `data/**`", "Git LFS pointer"; `both` is set for data that also matched `paths.code`."""

    path: str
    kind: Kind
    reason: str = ""
    both: bool = False


@dataclass(frozen=True)
class Change:
    """One changed file. `status` is git's letter (A, M, D, R, T); `new` is the path at head
    (for a deletion: the deleted path); `old` is the path at the merge base of a rename."""

    status: str
    new: Classified
    old: Classified | None = None
    binary: bool = False

    @property
    def path(self) -> str:
        return self.new.path

    @property
    def sides(self) -> tuple[Classified, ...]:
        return (self.new,) if self.old is None else (self.old, self.new)

    @property
    def kinds(self) -> frozenset[Kind]:
        """The categories it counts under (both paths of a rename; never `ignored`)."""
        return frozenset(s.kind for s in self.sides) - {Kind.IGNORED}

    @property
    def label(self) -> str:
        return f"{self.old.path} → {self.new.path}" if self.old else self.new.path

    @property
    def verb(self) -> str:
        return _VERBS.get(self.status, "changed")


_VERBS = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "T": "type changed"}


@dataclass(frozen=True)
class ChangeSet:
    """Every file changed between `merge_base` and `head`, classified, in git's path order."""

    merge_base: str
    head: str
    config_file: str
    changes: tuple[Change, ...]

    def touching(self, kind: Kind) -> tuple[Change, ...]:
        """The changes that count under `kind`; `Kind.IGNORED`: those counted nowhere."""
        if kind is Kind.IGNORED:
            return tuple(c for c in self.changes if not c.kinds)
        return tuple(c for c in self.changes if kind in c.kinds)

    def paths(self, kind: Kind) -> tuple[str, ...]:
        """Every path of that category the change set touches — both sides of a rename,
        deleted paths included — sorted."""
        return tuple(sorted({s.path for c in self.changes for s in c.sides if s.kind is kind}))

    @property
    def data(self) -> tuple[Change, ...]:
        return self.touching(Kind.DATA)

    @property
    def code(self) -> tuple[Change, ...]:
        return self.touching(Kind.CODE)

    @property
    def config(self) -> tuple[Change, ...]:
        return self.touching(Kind.CONFIG)

    @property
    def other(self) -> tuple[Change, ...]:
        return self.touching(Kind.OTHER)

    @property
    def ignored(self) -> tuple[Change, ...]:
        return self.touching(Kind.IGNORED)

    @property
    def data_paths(self) -> tuple[str, ...]:
        return self.paths(Kind.DATA)

    @property
    def matched_both(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if any(s.both for s in c.sides))

    @property
    def mixed(self) -> bool:
        """Data and code changed together: what `changes.mix` refuses."""
        return bool(self.data) and bool(self.code)


LFS_POINTER_PREFIXES = (
    b"version https://git-lfs.github.com/spec/v1",
    b"version https://hawser.github.com/spec/v1",  # the spec's pre-release alias
)
LFS_POINTER_MAX = 1024  # bytes; the LFS spec keeps every pointer file below this size


def classify(
    repo: Path,
    base: str,
    head: str,
    settings: PathsSettings,
    config_file: str = CONFIG_FILE,
) -> ChangeSet:
    """Classify every file changed between the merge base of `base` and `head`, and `head`.

    Raises `ShallowCloneError` when the merge base is missing from a shallow clone.
    """
    mb = git.merge_base(repo, base, head)
    files = git.changed_files(repo, mb, head)
    # (revision, path) whose content decides whether it is a Git LFS pointer; only paths that
    # no rule before it classifies, and never binary ones (a pointer is text).
    lookups: list[tuple[str, str]] = []
    for f in files:
        if f.binary:
            continue
        for rev, path in _content_sides(f, mb, head):
            if _by_name(path, settings, config_file)[0] is None:
                lookups.append((rev, path))
    pointers = _lfs_pointers(repo, lookups)

    def side(path: str, *revs: str) -> Classified:
        return _classify(path, settings, config_file, any((r, path) in pointers for r in revs))

    changes = []
    for f in files:
        if f.status == "R" and f.old_path is not None:
            new, old = side(f.path, head), side(f.old_path, mb)
            changes.append(Change(f.status, new, old, f.binary))
        else:
            revs = (mb,) if f.status == "D" else (head,) if f.status in "AC" else (mb, head)
            changes.append(Change(f.status, side(f.path, *revs), None, f.binary))
    return ChangeSet(mb, head, config_file, tuple(changes))


def _content_sides(f: git.FileChange, mb: str, head: str) -> list[tuple[str, str]]:
    if f.status == "R" and f.old_path is not None:
        return [(mb, f.old_path), (head, f.path)]
    if f.status == "D":
        return [(mb, f.path)]
    if f.status in "AC":
        return [(head, f.path)]
    return [(mb, f.path), (head, f.path)]  # M, T: a pointer on either side is data


def _by_name(path: str, settings: PathsSettings, config_file: str) -> tuple[Kind | None, str]:
    """The category a path's name alone decides (None: data only if it is an LFS pointer)."""
    if path == config_file:
        return Kind.CONFIG, "the gate's config file"
    if pattern := glob_select(settings.ignore, path):
        return Kind.IGNORED, f"paths.ignore `{pattern}`"
    if pattern := glob_select(settings.data, path):
        return Kind.DATA, f"paths.data `{pattern}`"
    if _is_dvc_pointer(PurePosixPath(path).name):
        return Kind.DATA, "DVC pointer"
    return None, ""


def _is_dvc_pointer(name: str) -> bool:
    # By file name, not by glob: `*.dvc` as a glob would also match DVC's own `.dvc/` folder.
    return name == "dvc.lock" or (name.endswith(".dvc") and name != ".dvc")


def _classify(path: str, settings: PathsSettings, config_file: str, lfs: bool) -> Classified:
    kind, reason = _by_name(path, settings, config_file)
    if kind is None and lfs:
        kind, reason = Kind.DATA, "Git LFS pointer"
    code = glob_select(settings.code, path)
    code_reason = f"paths.code `{code}`" if code else ""
    if not code and PurePosixPath(path).name == "dvc.yaml":
        code_reason = "DVC pipeline"
    if kind is Kind.DATA:
        return Classified(path, kind, reason, both=bool(code_reason))
    if kind is not None:
        return Classified(path, kind, reason)
    if code_reason:
        return Classified(path, Kind.CODE, code_reason)
    return Classified(path, Kind.OTHER)


def _lfs_pointers(repo: Path, lookups: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (revision, path) blobs are Git LFS pointers: two `git cat-file` calls in
    all (sizes first, then the content of the small ones), whatever the number of files."""
    # A path with a newline cannot be asked for on cat-file's line protocol; it is classified
    # by name only.
    lookups = [(r, p) for r, p in dict.fromkeys(lookups) if "\n" not in p]
    if not lookups:
        return set()
    specs = "".join(f"{r}:{p}\n" for r, p in lookups)
    checked = _cat_file(repo, "--batch-check=%(objecttype) %(objectsize)", specs).splitlines()
    small = [
        spec
        for spec, line in zip(lookups, checked, strict=True)
        if (parts := line.split())[0] == b"blob" and int(parts[1]) < LFS_POINTER_MAX
    ]
    if not small:
        return set()
    raw = _cat_file(repo, "--batch", "".join(f"{r}:{p}\n" for r, p in small))
    found: set[tuple[str, str]] = set()
    pos = 0
    for spec in small:
        header_end = raw.index(b"\n", pos)
        size = int(raw[pos:header_end].split()[2])
        body = raw[header_end + 1 : header_end + 1 + size]
        if body.startswith(LFS_POINTER_PREFIXES):
            found.add(spec)
        pos = header_end + 1 + size + 1  # content is followed by a newline
    return found


def _cat_file(repo: Path, mode: str, stdin: str) -> bytes:
    proc = subprocess.run(
        ["git", "-C", str(repo), "cat-file", mode],
        input=stdin.encode("utf-8", errors="surrogateescape"),
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", errors="replace").strip()
        raise GitError(f"git cat-file {mode} failed in {repo}: {err}")
    return proc.stdout


# --- the checks -------------------------------------------------------------------------------


def changeset(ctx: Context) -> ChangeSet:
    """This run's change set, computed once. Needs a base revision (a pull request run)."""
    base = ctx.base
    if base is None:
        raise ValueError("changeset() needs a base revision; this run has none")
    config_file = _config_file(ctx.config.source)
    return ctx.memo(
        "changes",
        lambda: classify(
            ctx.git_dir, ctx.merge_base or base.sha, ctx.head.sha, ctx.config.paths, config_file
        ),
    )


def _config_file(source: str) -> str:
    """The config's repository path, from `Config.source` ("dlgate.yml @ 1a2b3c4 (base)")."""
    name = source.partition(" @ ")[0].strip()
    if not name or name.startswith("(") or PurePosixPath(name).is_absolute() or " " in name:
        return CONFIG_FILE
    return name.removeprefix("./")


NO_BASE = "no base revision (a baseline or release run): there is no change to classify"
LIST_LIMIT = 30  # files listed in the details per category
INLINE_PATHS = 20  # up to this many paths are spelled out in the split commands
ANNOTATION_LIMIT = 50  # GitHub takes 50 annotations per request


@check("changes.mix")
def mix(ctx: Context) -> Finding:
    """Data and code must not change in the same pull request."""
    if ctx.base is None:
        return Finding(Outcome.SKIP, NO_BASE)
    cs = changeset(ctx)
    data, code = cs.data, cs.code
    measurements = _measurements(cs)
    details = _lists(cs)
    if not cs.mixed:
        if data:
            message = f"this pull request changes data only ({_files(len(data))}), no code"
        elif code:
            message = f"this pull request changes code only ({_files(len(code))}), no data"
        else:
            message = "this pull request changes neither data nor code"
        return Finding(Outcome.PASS, message, measurements, details=details)
    data_list = _write_paths(ctx, "data-paths.txt", _split_paths(data, Kind.CODE))
    code_list = _write_paths(ctx, "code-paths.txt", _split_paths(code, Kind.DATA))
    return Finding(
        Outcome.FAIL,
        f"this pull request changes data ({_files(len(data))}) and code "
        f"({_files(len(code))}) together; their effects on accuracy could not be told apart",
        measurements,
        annotations=_annotations(data, code),
        details=details + "\n\n" + _split_help(cs, data_list, code_list),
        artifacts=(data_list, code_list),
    )


@check("changes.config")
def config(ctx: Context) -> Finding:
    """An edit of the gate's own config takes effect after merge only."""
    if ctx.base is None:
        return Finding(Outcome.SKIP, NO_BASE)
    cs = changeset(ctx)
    if not cs.config:
        return Finding(Outcome.PASS, f"{cs.config_file} unchanged")
    change = cs.config[0]
    paths = [s.path for s in change.sides]
    diff = git.git(ctx.git_dir, "diff", "-M", cs.merge_base, cs.head, "--", *paths)
    lines = diff.splitlines()
    shown = "\n".join(lines[:200]) + (
        f"\n… {len(lines) - 200} more lines" if len(lines) > 200 else ""
    )
    exists = change.status != "D" and change.new.kind is Kind.CONFIG
    return Finding(
        Outcome.WARN,
        f"{cs.config_file} {change.verb} in this pull request; the gate used the base "
        "revision's config, the change takes effect after merge",
        {"config_file": cs.config_file, "status": change.status, "used": ctx.config.source},
        annotations=[
            Annotation(
                cs.config_file,
                "this pull request edits the gate's config; it was gated with the base "
                "revision's config and the edit applies from the merge on",
                Level.WARNING,
                title="gate config changed",
            )
        ]
        if exists
        else [],
        details=f"```diff\n{shown}\n```" if shown else "",
    )


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _measurements(cs: ChangeSet) -> dict[str, Value]:
    cap = 500  # lists past this are cut; the counts stay exact
    return {
        "data_files": len(cs.data),
        "code_files": len(cs.code),
        "config_files": len(cs.config),
        "other_files": len(cs.other),
        "ignored_files": len(cs.ignored),
        "data": [c.label for c in cs.data[:cap]],
        "code": [c.label for c in cs.code[:cap]],
        "matched_both": [c.label for c in cs.matched_both[:cap]],
        "merge_base": cs.merge_base,
    }


def _lists(cs: ChangeSet) -> str:
    sections = []
    for title, kind in (("Data", Kind.DATA), ("Code", Kind.CODE), ("Other", Kind.OTHER)):
        changes = cs.touching(kind)
        if not changes:
            continue
        items = [f"- {_item(c, kind)}" for c in changes[:LIST_LIMIT]]
        if len(changes) > LIST_LIMIT:
            items.append(f"- … and {len(changes) - LIST_LIMIT} more")
        sections.append(f"**{title}** ({_files(len(changes))}):\n\n" + "\n".join(items))
    if cs.ignored:
        sections.append(f"Ignored by `paths.ignore`: {_files(len(cs.ignored))}.")
    return "\n\n".join(sections)


def _item(change: Change, kind: Kind) -> str:
    notes = [change.verb] + (["binary"] if change.binary else [])
    for side in change.sides:
        if side.kind is kind and side.reason and kind is not Kind.OTHER:
            notes.append(side.reason)
        if side.kind is kind and side.both:
            notes.append("matched both paths.data and paths.code: counted as data")
    label = " → ".join(f"`{s.path}`" for s in change.sides)
    return f"{label} ({'; '.join(notes)})"


def _split_paths(changes: Sequence[Change], leave: Kind) -> list[str]:
    """Pathspecs that take these changes to a branch of their own, without their `leave`
    side: a rename from `src/` into `data/` adds the data file on the data-only branch and
    removes the code file on the code-only one; the other side of a rename travels along."""
    return [_pathspec(s.path) for c in changes for s in c.sides if s.kind is not leave]


def _pathspec(path: str) -> str:
    # git reads `*?[` in a pathspec as a wildcard; such a name is asked for literally.
    return f":(literal){path}" if any(ch in path for ch in "*?[\\") else path


def _write_paths(ctx: Context, name: str, paths: Sequence[str]) -> str:
    (ctx.artifact_dir("changes") / name).write_text(
        "".join(f"{p}\n" for p in paths), encoding="utf-8"
    )
    return f"changes/{name}"


def _split_help(cs: ChangeSet, data_list: str, code_list: str) -> str:
    mb, head = cs.merge_base[:12], cs.head[:12]

    def restore(paths: list[str], listed: str) -> str:
        cmd = f"git restore --source={head} --staged --worktree"
        if len(paths) > INLINE_PATHS:
            return f"{cmd} --pathspec-from-file={PurePosixPath(listed).name}"
        return f"{cmd} -- {' '.join(shlex.quote(p) for p in paths)}"

    data = _split_paths(cs.data, Kind.CODE)
    code = _split_paths(cs.code, Kind.DATA)
    steps = [
        f"git switch -c data-only {mb}",
        restore(data, data_list),
        'git commit -m "Data changes only"',
        "",
        f"git switch -c code-only {mb}",
        restore(code, code_list),
        'git commit -m "Code changes only"',
    ]
    note = ""
    if len(data) > INLINE_PATHS or len(code) > INLINE_PATHS:
        note = f"\n\nThe full path lists are the run's artifacts `{data_list}` and `{code_list}`."
    return (
        "**How to split it**: one pull request with the data, one with the code (merge one, "
        "then gate the other against it); other files can go with either. From the merge "
        "base:\n\n```sh\n" + "\n".join(steps) + "\n```" + note
    )


def _annotations(data: Sequence[Change], code: Sequence[Change]) -> list[Annotation]:
    # Only files that exist at head can carry an annotation; share the limit between the two.
    data_at_head = [c for c in data if c.status != "D" and c.new.kind is Kind.DATA]
    code_at_head = [c for c in code if c.status != "D" and c.new.kind is Kind.CODE]
    n_code = min(
        len(code_at_head), max(ANNOTATION_LIMIT // 2, ANNOTATION_LIMIT - len(data_at_head))
    )
    n_data = min(len(data_at_head), ANNOTATION_LIMIT - n_code)
    title = "data and code changed together"
    return [
        Annotation(
            c.path,
            f"data file {c.verb} in a pull request that also changes code "
            f"({_files(len(code))}); split the pull request",
            title=title,
        )
        for c in data_at_head[:n_data]
    ] + [
        Annotation(
            c.path,
            f"code file {c.verb} in a pull request that also changes data "
            f"({_files(len(data))}); split the pull request",
            title=title,
        )
        for c in code_at_head[:n_code]
    ]
