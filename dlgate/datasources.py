"""Listing a split: the samples each source format declares, and what is wrong with it.

A listing never raises for bad data: a location that does not exist or cannot be read is its
`fatal` problem, a stray file or a bad manifest row one of its `problems`, each naming the
path (and line), for the `data.sources` check to report. Entries are yielded lazily, so a
million-sample split is never held in memory.

The image-folder rules are shared with the git-tree listing of `dlgate.datascan`, so a
checkout and its tree always give the same samples.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlgate import hooks
from dlgate.dataanalysis import blob_id
from dlgate.dataset import IMAGE_SUFFIXES, TEXT_SUFFIX, DataSettings


@dataclass(frozen=True, slots=True)
class Entry:
    """One sample as a source declares it."""

    id: str
    label: str
    file: str | None  # the content: repository-relative POSIX path, absolute for hook objects
    line: int = 0  # the line of `where` that declares it (text line, manifest row); 0: none
    value: str | None = None  # inline text (text lines, manifest values, hook strings)
    where: str = ""  # the file an annotation points at (default: `file`)
    blob: bytes | None = None  # the content's git blob id, where already known

    @property
    def location(self) -> str:
        return self.where or self.file or self.id

    def file_path(self, repo: Path) -> Path:
        assert self.file is not None
        return Path(self.file) if os.path.isabs(self.file) else repo / self.file


@dataclass(frozen=True)
class Problem:
    path: str  # repository-relative
    message: str
    line: int = 0


class Listing:
    """The entries of one split, produced lazily; `problems` and `fatal` fill as it runs."""

    def __init__(self, produce: Callable[[Listing], Iterable[Entry]]) -> None:
        self.problems: list[Problem] = []
        self.fatal: Problem | None = None
        self._produce = produce

    def __iter__(self) -> Iterator[Entry]:
        yield from self._produce(self)

    def problem(self, path: str, message: str, line: int = 0) -> None:
        self.problems.append(Problem(path, message, line))


def iter_split(
    repo: Path,
    settings: DataSettings,
    split: str,
    *,
    hook_dir: Path | None = None,
    hook_timeout: float = 120.0,
) -> Listing:
    """The samples of `split` read from the files under `repo` (a checkout). A hook's
    samples are stored under `hook_dir` (default: `repo/.dlgate/hook`)."""
    location = settings.splits[split]
    if settings.format == "image-folder":
        return Listing(lambda lst: _walk_image_folder(repo, location, lst))
    if settings.format == "text-lines":
        return Listing(lambda lst: _text_lines(repo, location, lst))
    if settings.format == "manifest":
        return Listing(lambda lst: _manifest(repo, location, settings, lst))
    out = hook_dir or repo / ".dlgate" / "hook"
    return Listing(lambda lst: _hook(repo, settings, split, out, hook_timeout, lst))


# --- image folders ---------------------------------------------------------------------------


def image_label(rel: str) -> str | None:
    """The class of a file at `rel` (relative to the split folder, POSIX), or None where it is
    no sample: not an image, hidden, or not inside a class folder."""
    first, sep, rest = rel.partition("/")
    if not sep or first.startswith(".") or rest.startswith(".") or "/." in rest:
        return None
    dot = rest.rfind(".")
    return first if dot > 0 and rest[dot:].lower() in IMAGE_SUFFIXES else None


# `git ls-tree -r -z` entries of files (not links) that `image_label` takes for samples:
# <class>/<any depth>/<name>.<image suffix>, no component hidden. Groups: blob id, the path
# below the tree, the class. Matched on the output decoded with "surrogateescape".
_VISIBLE = r"[^./\0][^/\0]*"
IMAGE_ENTRY = re.compile(
    r"(?<![^\0])(?:100644|100755) blob ([0-9a-f]{40})\t"
    + r"((" + _VISIBLE + r")/(?:" + _VISIBLE + r"/)*" + _VISIBLE
    + r"\.(?i:" + "|".join(s[1:] for s in sorted(IMAGE_SUFFIXES)) + r"))\0"
)  # fmt: skip


def stray_problem(root: str, name: str) -> Problem:
    return Problem(
        f"{root}/{name}",
        "image file directly in the split folder, outside any class folder; move it into "
        f"{root}/<class>/",
    )


def _walk_image_folder(repo: Path, location: str, lst: Listing) -> Iterator[Entry]:
    root = repo / location
    if not _check_folder(root, location, lst):
        return
    try:
        with os.scandir(root) as it:
            top = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        lst.fatal = Problem(location, f"cannot be read ({exc.strerror}); fix its permissions")
        return
    classes = 0
    for item in top:
        if item.name.startswith("."):
            continue
        if not item.is_dir():
            if posixpath.splitext(item.name)[1].lower() in IMAGE_SUFFIXES:
                lst.problems.append(stray_problem(location, item.name))
            continue
        classes += 1
        found = 0
        for rel in _walk_files(Path(item.path), f"{location}/{item.name}", lst):
            if image_label(f"{item.name}/{rel}") is not None:
                found += 1
                path = f"{location}/{item.name}/{rel}"
                yield Entry(path, item.name, path)
        if found == 0:
            lst.problem(f"{location}/{item.name}", "class folder holds no image files")
    if classes == 0:
        lst.problem(location, "empty split: no class folders (<split>/<class>/<file>)")


def _walk_files(folder: Path, rel_folder: str, lst: Listing) -> Iterator[str]:
    """Files below `folder`, relative to it, sorted; unreadable sub-folders are problems."""

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename).relative_to(folder.parent) if exc.filename else folder.name
        lst.problem(
            f"{rel_folder.rsplit('/', 1)[0]}/{Path(where).as_posix()}",
            f"cannot be read ({exc.strerror}); fix its permissions",
        )

    for dirpath, dirs, files in os.walk(folder, onerror=unreadable):
        dirs.sort()
        base = Path(dirpath).relative_to(folder).as_posix()
        for name in sorted(files):
            yield name if base == "." else f"{base}/{name}"


def _check_folder(root: Path, location: str, lst: Listing) -> bool:
    if not root.exists():
        lst.fatal = Problem(location, "does not exist; create it or fix `data.splits`")
        return False
    if not root.is_dir():
        lst.fatal = Problem(location, "is not a folder; `data.splits` names a folder here")
        return False
    if not os.access(root, os.R_OK | os.X_OK):
        lst.fatal = Problem(location, "cannot be read (permission denied); fix its permissions")
        return False
    return True


# --- text files, one sample per line -----------------------------------------------------------


def _text_lines(repo: Path, location: str, lst: Listing) -> Iterator[Entry]:
    root = repo / location
    if not _check_folder(root, location, lst):
        return
    files = sorted(p for p in root.iterdir() if p.suffix == TEXT_SUFFIX and p.is_file())
    if not files:
        lst.problem(location, f"empty split: no <label>{TEXT_SUFFIX} files")
    for path in files:
        rel = f"{location}/{path.name}"
        try:
            data = path.read_bytes()
        except OSError as exc:
            lst.problem(rel, f"cannot be read ({exc.strerror}); fix its permissions")
            continue
        found = 0
        for number, text in text_lines(data, rel, lst):
            found += 1
            yield Entry(f"{rel}:{number}", path.stem, None, number, text, rel)
        if found == 0:
            lst.problem(rel, "holds no samples (no non-blank lines)")


def text_lines(data: bytes, rel: str, lst: Listing) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines; a line that is not UTF-8 is a problem."""
    for number, line in enumerate(data.split(b"\n"), start=1):
        raw = line.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            lst.problem(rel, f"not UTF-8 text (byte {exc.start + 1}); save it as UTF-8", number)


# --- manifests -----------------------------------------------------------------------------


def _manifest(repo: Path, location: str, settings: DataSettings, lst: Listing) -> Iterator[Entry]:
    path = repo / location
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        lst.fatal = Problem(location, f"{what}; `data.splits` names a manifest (.csv, .jsonl)")
        return
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        lst.fatal = Problem(location, f"cannot be read ({exc.strerror}); fix its permissions")
        return
    except UnicodeDecodeError as exc:
        lst.fatal = Problem(location, f"not UTF-8 text (byte {exc.start + 1}); save it as UTF-8")
        return
    rows = (
        _jsonl_rows(text, location, lst)
        if location.endswith((".jsonl", ".ndjson"))
        else (_csv_rows(text, location, settings, lst))
    )
    cols = settings.manifest
    seen: set[str] = set()
    found = 0
    folder = posixpath.dirname(location)
    for line, row in rows:
        label = _cell(row.get(cols.label))
        file = _cell(row.get(cols.path))
        value = row.get(cols.value)
        if not label:
            lst.problem(location, f"row has no `{cols.label}`", line)
            continue
        if file:
            rel = posixpath.normpath(posixpath.join(folder, file.replace("\\", "/")))
            if posixpath.isabs(file) or rel == ".." or rel.startswith("../"):
                lst.problem(location, f"`{cols.path}` {file!r} leaves the repository", line)
                continue
            if not (repo / rel).is_file():
                lst.problem(location, f"`{cols.path}` {file!r}: no such file ({rel})", line)
                continue
            entry = Entry(_cell(row.get(cols.id)) or rel, label, rel, line, None, location)
        elif value is not None and _cell(value):
            sid = _cell(row.get(cols.id)) or f"{location}:{line}"
            entry = Entry(sid, label, None, line, _cell(value), location)
        else:
            lst.problem(location, f"row has neither `{cols.path}` nor `{cols.value}`", line)
            continue
        if entry.id in seen:  # ids must be unique; a repeated one is kept, marked by its line
            entry = Entry(f"{entry.id}#{line}", *_rest(entry))
        seen.add(entry.id)
        found += 1
        yield entry
    if found == 0 and lst.fatal is None:
        lst.problem(location, "empty split: the manifest lists no samples")


def _rest(e: Entry) -> tuple[str, str | None, int, str | None, str]:
    return e.label, e.file, e.line, e.value, e.where


def _cell(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value).strip()


def _csv_rows(
    text: str, location: str, settings: DataSettings, lst: Listing
) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        lst.fatal = Problem(location, "empty manifest: no header row")
        return
    except csv.Error as exc:
        lst.fatal = Problem(location, f"not valid CSV: {exc}", 1)
        return
    cols = settings.manifest
    if cols.label not in header or not {cols.path, cols.value} & set(header):
        lst.fatal = Problem(
            location,
            f"the header must name `{cols.label}` and `{cols.path}` or `{cols.value}` "
            f"(found: {', '.join(header)}); see `data.manifest`",
            1,
        )
        return
    start = reader.line_num + 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                yield start, dict(zip(header, row, strict=False))
            start = reader.line_num + 1
    except csv.Error as exc:
        lst.problem(location, f"not valid CSV: {exc}", start)


def _jsonl_rows(text: str, location: str, lst: Listing) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            lst.problem(location, f"not valid JSON: {exc.msg}", line)
            continue
        if not isinstance(row, dict):
            lst.problem(location, "each line must be a JSON object", line)
            continue
        yield line, row


# --- user hooks ----------------------------------------------------------------------------


def _hook(
    repo: Path, settings: DataSettings, split: str, out: Path, timeout: float, lst: Listing
) -> Iterator[Entry]:
    index = hooks.call(
        materialize,
        settings.hook,
        split,
        settings.splits[split],
        str(out.resolve()),
        cwd=repo,
        timeout=timeout,
        hook=f"data.hook ({settings.hook})",
    )
    found = 0
    with open(index, encoding="utf-8") as f:
        for raw in f:
            row = json.loads(raw)
            found += 1
            blob = bytes.fromhex(row["blob"]) if row.get("blob") else None
            yield Entry(
                row["id"], row["label"], row.get("file"), 0, row.get("value"), row["id"], blob
            )
    if found == 0:
        lst.problem(settings.splits[split], f"empty split: {settings.hook} yielded no samples")


def materialize(spec: str, split: str, location: str, out: str) -> str:
    """Runs in the hook's child process: stores what the user's generator yields (bytes as
    content-addressed files, strings inline) and writes an index; returns its path."""
    from dlgate.framework import load_target

    fn = load_target(spec, "data.hook")
    folder = Path(out)
    objects = folder / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    index = folder / f"{split}.jsonl"
    with open(index, "w", encoding="utf-8") as f:
        for n, item in enumerate(fn(split, location)):
            if not (isinstance(item, tuple) and len(item) == 3):
                raise TypeError(f"item {n} is {type(item).__name__}, not (id, bytes|str, label)")
            sid, content, label = item
            if not isinstance(sid, str) or not isinstance(label, str) or not sid or not label:
                raise TypeError(f"item {n}: id and label must be non-empty strings")
            row: dict[str, str] = {"id": sid, "label": label}
            if isinstance(content, bytes):
                blob = blob_id(content)
                target = objects / blob.hex()
                if not target.exists():
                    target.write_bytes(content)
                row.update(file=str(target), blob=blob.hex())
            elif isinstance(content, str):
                row["value"] = content
            else:
                raise TypeError(
                    f"item {n} ({sid}): content is {type(content).__name__}, not bytes or str"
                )
            f.write(json.dumps(row) + "\n")
    return str(index)
