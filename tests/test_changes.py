"""Stage `changes` on real git histories: classification, the mix and config checks."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from conftest import GitRepo, run_git

from dlgate import report
from dlgate.checks import changes
from dlgate.checks.changes import ChangeSet, Kind, classify, glob_match, glob_select
from dlgate.config import Config, PathsSettings, default_config, load_text
from dlgate.context import Context
from dlgate.errors import ShallowCloneError
from dlgate.registry import checks_for
from dlgate.report import Outcome, Revision
from dlgate.runner import run_check, run_stage

DEFAULT_PATHS = PathsSettings()


# --- the glob matcher ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        # `**` at the start: any depth, zero included
        ("**/*.py", "model.py", True),
        ("**/*.py", "src/deep/er/model.py", True),
        ("**/*.py", "model.pyc", False),
        ("**/data", "data/x.png", True),
        ("**/data", "a/b/data/x.png", True),
        # `**` in the middle: zero or more directories
        ("src/**/test_*.py", "src/test_a.py", True),
        ("src/**/test_*.py", "src/a/b/test_a.py", True),
        ("src/**/test_*.py", "lib/src/test_a.py", False),
        ("a/**/b/*.txt", "a/b/x.txt", True),
        ("a/**/b/*.txt", "a/x/y/b/z.txt", True),
        ("a/**/b/*.txt", "a/x/y/b/c/z.txt", False),
        # `**` at the end: everything inside, not the directory's namesake file
        ("data/**", "data/a.png", True),
        ("data/**", "data/train/7/a.png", True),
        ("data/**", "data", False),
        ("data/**", "dataset/a.png", False),
        ("data/**", "src/data/a.png", False),
        ("**", "anything/at/all", True),
        # `*`, `?` and classes never cross `/`
        ("src/*.py", "src/model.py", True),
        ("src/*.py", "src/nn/model.py", False),
        ("data/?.csv", "data/a.csv", True),
        ("data/?.csv", "data/ab.csv", False),
        ("img[0-9].png", "img7.png", True),
        ("img[0-9].png", "imgx.png", False),
        ("img[!0-9].png", "imgx.png", True),
        ("img[!0-9].png", "img7.png", False),
        ("a[/]b", "a/b", False),
        ("a[]]b", "a]b", True),
        ("[unclosed", "[unclosed", True),
        ("a**b", "axxb", True),  # not a whole segment: a plain `*`
        ("a**b", "ax/xb", False),
        # no slash: a name at any depth; a slash anchors at the root
        ("*.py", "src/nn/model.py", True),
        ("pyproject.toml", "sub/pyproject.toml", True),
        ("/pyproject.toml", "sub/pyproject.toml", False),
        ("/pyproject.toml", "pyproject.toml", True),
        ("src/model.py", "lib/src/model.py", False),
        ("./src/model.py", "src/model.py", True),
        # a matched directory covers its files; a trailing slash matches directories only
        ("data", "data/a.png", True),
        ("data", "x/data/a.png", True),
        ("data", "data", True),
        ("data/", "data", False),
        ("data/", "data/a.png", True),
        ("models/raw/", "models/raw/w.bin", True),
        ("models/raw/", "x/models/raw/w.bin", False),
        # regex characters and escapes are literal
        ("a+b(1).txt", "a+b(1).txt", True),
        ("a.txt", "abtxt", False),
        (r"\*.txt", "*.txt", True),
        (r"\*.txt", "a.txt", False),
        ("", "anything", False),
        # case-sensitive, as git is on Linux
        ("*.PY", "model.py", False),
    ],
)
def test_glob_match(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


def test_glob_select_later_patterns_win_and_bang_excludes() -> None:
    patterns = ["data/**", "!data/README.md", "!data/docs/**", "data/docs/keep.csv"]
    assert glob_select(patterns, "data/a.png") == "data/**"
    assert glob_select(patterns, "data/README.md") is None
    assert glob_select(patterns, "data/docs/x.md") is None
    assert glob_select(patterns, "data/docs/keep.csv") == "data/docs/keep.csv"
    assert glob_select(patterns, "src/a.py") is None
    assert glob_select([r"\!important"], "!important") == r"\!important"


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def repo(git_repo: GitRepo) -> GitRepo:
    """main with data, code, docs and the gate config; then on branch `feature`."""
    git_repo.write("data/train/0/a.csv", "1,2,3\n")
    git_repo.write("data/train/1/b.csv", "4,5,6\n")
    git_repo.write("src/model.py", "import torch\n\nclass Net: ...\n")
    git_repo.write("src/train.py", "print('train')\n")
    git_repo.write("README.md", "# project\n")
    git_repo.write("dlgate.yml", "version: 1\n")
    git_repo.commit("initial")
    git_repo.branch("feature")
    return git_repo


def context(
    repo: GitRepo, out: Path, base: str | None = "main", head: str = "feature", **kw: object
) -> Context:
    cfg = kw.pop("config", None)
    config = cfg if isinstance(cfg, Config) else default_config()
    return Context(
        repo=repo.path,
        git_dir=repo.path,
        head=Revision(head, repo.sha(head)),
        base=Revision(base, repo.sha(base)) if base else None,
        merge_base=None,
        config=config,
        out=out,
    )


def classify_pr(repo: GitRepo, paths: PathsSettings = DEFAULT_PATHS) -> ChangeSet:
    return classify(repo.path, repo.sha("main"), repo.sha("feature"), paths)


def kinds(cs: ChangeSet) -> dict[str, set[str]]:
    return {c.label: {k.value for k in c.kinds} for c in cs.changes}


def outcomes(ctx: Context) -> dict[str, report.CheckResult]:
    return {r.id: r for r in (run_stage("changes", ctx)).checks}


# --- classification --------------------------------------------------------------------------


def test_data_only(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("data/train/0/a.csv", "1,2,9\n")
    repo.write("data/train/2/c.csv", "7\n")
    repo.write("README.md", "# project, now with more data\n")
    repo.commit("more data")
    results = outcomes(context(repo, tmp_path))
    mix = results["changes.mix"]
    assert mix.outcome is Outcome.PASS
    assert mix.message == "this pull request changes data only (2 files), no code"
    assert mix.measurements["data_files"] == 2
    assert mix.measurements["code_files"] == 0
    assert mix.measurements["other_files"] == 1
    assert mix.measurements["data"] == ["data/train/0/a.csv", "data/train/2/c.csv"]
    assert "`data/train/2/c.csv` (added; paths.data `data/**`)" in mix.details
    assert results["changes.config"].outcome is Outcome.PASS
    assert results["changes.config"].message == "dlgate.yml unchanged"


def test_code_only(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("src/model.py", "class Net: lr = 3e-4\n")
    repo.write("requirements.txt", "torch==2.13.0\n")
    repo.commit("tune")
    mix = outcomes(context(repo, tmp_path))["changes.mix"]
    assert mix.outcome is Outcome.PASS
    assert mix.message == "this pull request changes code only (2 files), no data"
    assert mix.measurements["code"] == ["requirements.txt", "src/model.py"]


def test_neither_data_nor_code(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("README.md", "# docs only\n")
    repo.commit("docs")
    mix = outcomes(context(repo, tmp_path))["changes.mix"]
    assert (mix.outcome, mix.message) == (
        Outcome.PASS,
        "this pull request changes neither data nor code",
    )


def test_data_and_code_together_fail_with_both_lists(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("data/train/1/b.csv", "4,5,0\n")
    repo.rm("data/train/0/a.csv")
    repo.write("src/model.py", "class Net: dropout = 0.5\n")
    repo.write("README.md", "# changed too\n")
    repo.commit("everything at once")
    ctx = context(repo, tmp_path / "out")
    mix = outcomes(ctx)["changes.mix"]

    assert mix.outcome is Outcome.FAIL
    assert mix.message == (
        "this pull request changes data (2 files) and code (1 file) together; "
        "their effects on accuracy could not be told apart"
    )
    assert mix.measurements["data"] == ["data/train/0/a.csv", "data/train/1/b.csv"]
    assert mix.measurements["code"] == ["src/model.py"]
    assert "**Data** (2 files)" in mix.details
    assert "`data/train/0/a.csv` (deleted; paths.data `data/**`)" in mix.details
    assert "**Code** (1 file)" in mix.details
    assert "`src/model.py` (modified; paths.code `**/*.py`)" in mix.details
    # Deleted files cannot carry an annotation; the others do.
    assert {(a.path, a.level) for a in mix.annotations} == {
        ("data/train/1/b.csv", report.Level.FAILURE),
        ("src/model.py", report.Level.FAILURE),
    }
    assert mix.artifacts == ("changes/data-paths.txt", "changes/code-paths.txt")
    data_list = (ctx.out / "changes/data-paths.txt").read_text().split()
    assert data_list == ["data/train/0/a.csv", "data/train/1/b.csv"]


def test_split_commands_in_the_details_make_a_data_only_and_a_code_only_branch(
    repo: GitRepo, tmp_path: Path
) -> None:
    """What the user is told to run really splits the pull request, renames included."""
    repo.write("notes/labels.txt", "cat\ndog\nbird\nfish\n" * 10)
    repo.commit("notes")
    repo.branch("pr")
    repo.write("data/train/1/b.csv", "changed\n")
    repo.rm("data/train/0/a.csv")
    repo.write("data/train/9/new file.csv", "spaces in the name\n")
    repo.write("data/train/9/odd[1].csv", "glob characters in the name\n")
    repo.mv("notes/labels.txt", "data/labels.txt")  # other → data
    repo.mv("src/train.py", "data/train.py")  # code → data
    repo.write("src/model.py", "class Net: changed = True\n")
    repo.commit("mixed")
    mix = outcomes(context(repo, tmp_path, base="feature", head="pr"))["changes.mix"]
    assert mix.outcome is Outcome.FAIL
    script = re.search(r"```sh\n(.*?)```", mix.details, re.DOTALL)
    assert script is not None
    for line in script.group(1).splitlines():
        if line:
            repo.sh(line)

    base = repo.sha("feature")
    data_only = classify(repo.path, base, repo.sha("data-only"), DEFAULT_PATHS)
    code_only = classify(repo.path, base, repo.sha("code-only"), DEFAULT_PATHS)
    assert len(data_only.data) == 6
    assert data_only.code == ()
    assert code_only.data == ()
    assert kinds(code_only) == {"src/model.py": {"code"}, "src/train.py": {"code"}}
    # Each branch holds exactly the pull request's side of the split.
    assert repo.git("diff", "--stat", "pr", "data-only", "--", "data", "notes") == ""
    assert repo.git("diff", "--stat", "pr", "code-only", "--", "src") == ""


def test_long_lists_are_cut_and_the_split_uses_the_path_files(
    repo: GitRepo, tmp_path: Path
) -> None:
    for i in range(40):
        repo.write(f"data/new/{i:02}.csv", f"{i}\n")
    repo.write("src/model.py", "changed\n")
    repo.commit("big")
    ctx = context(repo, tmp_path / "out")
    mix = outcomes(ctx)["changes.mix"]
    assert mix.measurements["data_files"] == 40
    assert "- … and 10 more" in mix.details
    assert "data/new/35.csv" not in mix.details
    assert "--pathspec-from-file=data-paths.txt" in mix.details
    assert "git restore --source=" in mix.details
    assert "-- src/model.py" in mix.details
    assert len((ctx.out / "changes/data-paths.txt").read_text().splitlines()) == 40
    assert len(mix.annotations) == 41  # within GitHub's 50 per request


def test_annotations_are_capped_and_shared_between_data_and_code(
    repo: GitRepo, tmp_path: Path
) -> None:
    for i in range(60):
        repo.write(f"data/new/{i:02}.csv", f"{i}\n")
        repo.write(f"src/gen/m{i:02}.py", f"x = {i}\n")
    repo.commit("huge")
    mix = outcomes(context(repo, tmp_path))["changes.mix"]
    paths = [a.path for a in mix.annotations]
    assert len(paths) == 50
    assert sum(p.startswith("data/") for p in paths) == 25


def test_only_changes_since_the_merge_base_count(repo: GitRepo, tmp_path: Path) -> None:
    """Code that landed on main after the branch point is not the pull request's."""
    repo.write("data/train/0/a.csv", "relabelled\n")
    repo.commit("data")
    repo.checkout("main")
    repo.write("src/model.py", "class Net: main moved on\n")
    repo.commit("main moves on")
    cs = classify_pr(repo)
    assert kinds(cs) == {"data/train/0/a.csv": {"data"}}
    assert cs.merge_base == run_git(repo.path, "merge-base", "main", "feature").strip()
    mix = outcomes(context(repo, tmp_path))["changes.mix"]
    assert mix.outcome is Outcome.PASS


def test_config_edit_warns(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("dlgate.yml", "version: 1\nbaseline:\n  missing: warn\n")
    repo.commit("loosen the gate")
    results = outcomes(context(repo, tmp_path))
    cfg = results["changes.config"]
    assert cfg.outcome is Outcome.WARN
    assert cfg.message.startswith(
        "dlgate.yml modified in this pull request; the gate used the base revision's config"
    )
    assert cfg.message.endswith("the change takes effect after merge")
    assert "+  missing: warn" in cfg.details
    assert [a.path for a in cfg.annotations] == ["dlgate.yml"]
    # The config is neither data nor code.
    assert results["changes.mix"].message == "this pull request changes neither data nor code"


def test_config_deleted_warns_without_annotation(repo: GitRepo, tmp_path: Path) -> None:
    repo.rm("dlgate.yml")
    repo.commit("drop the gate")
    cfg = outcomes(context(repo, tmp_path))["changes.config"]
    assert cfg.outcome is Outcome.WARN
    assert cfg.message.startswith("dlgate.yml deleted in this pull request")
    assert cfg.annotations == ()


def test_config_cannot_be_hidden_by_ignore(repo: GitRepo) -> None:
    repo.write("dlgate.yml", "version: 1\n# edited\n")
    repo.commit("edit")
    cs = classify_pr(repo, PathsSettings(ignore=("*.yml",)))
    assert kinds(cs) == {"dlgate.yml": {"config"}}


def test_config_path_follows_the_config_source(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("ci/gate.yml", "version: 1\n")
    repo.commit("a gate config elsewhere")
    config = dataclasses.replace(default_config(), source="ci/gate.yml @ 1a2b3c4 (base)")
    cfg = outcomes(context(repo, tmp_path, config=config))["changes.config"]
    assert cfg.outcome is Outcome.WARN
    assert cfg.message.startswith("ci/gate.yml added in this pull request")


def test_rename_counts_under_both_categories(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("src/labels.txt", "cat\ndog\nbird\nfish\nhorse\n" * 20)
    repo.commit("labels kept with the code")
    repo.branch("move", "feature")
    repo.mv("src/labels.txt", "data/labels.txt")
    repo.mv("src/train.py", "data/train.py")  # code moving into data/: matched both
    repo.commit("move into data")
    cs = classify(repo.path, repo.sha("feature"), repo.sha("move"), DEFAULT_PATHS)
    assert kinds(cs) == {
        "src/labels.txt → data/labels.txt": {"other", "data"},
        "src/train.py → data/train.py": {"code", "data"},
    }
    assert [c.status for c in cs.changes] == ["R", "R"]
    assert cs.data_paths == ("data/labels.txt", "data/train.py")
    assert cs.paths(Kind.CODE) == ("src/train.py",)
    assert cs.mixed
    ctx = context(repo, tmp_path, base="feature", head="move")
    mix = outcomes(ctx)["changes.mix"]
    assert mix.outcome is Outcome.FAIL
    assert "`src/train.py` → `data/train.py` (renamed; paths.code `**/*.py`)" in mix.details


def test_rename_within_data_counts_once(repo: GitRepo) -> None:
    repo.mv("data/train/0/a.csv", "data/train/1/a.csv")
    repo.commit("relabel by moving")
    cs = classify_pr(repo)
    assert kinds(cs) == {"data/train/0/a.csv → data/train/1/a.csv": {"data"}}
    assert len(cs.data) == 1


def test_deletions_count(repo: GitRepo, tmp_path: Path) -> None:
    repo.rm("data/train/1/b.csv")
    repo.rm("src/train.py")
    repo.commit("delete")
    cs = classify_pr(repo)
    assert kinds(cs) == {"data/train/1/b.csv": {"data"}, "src/train.py": {"code"}}
    assert all(c.status == "D" and c.verb == "deleted" for c in cs.changes)
    assert outcomes(context(repo, tmp_path))["changes.mix"].outcome is Outcome.FAIL


def test_binary_files(repo: GitRepo) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    repo.write("data/train/0/img.png", png)
    repo.write("weights/model.pt", b"\x80\x02" + bytes(200))
    repo.commit("binaries")
    cs = classify_pr(repo)
    by_path = {c.path: c for c in cs.changes}
    assert by_path["data/train/0/img.png"].binary
    assert by_path["data/train/0/img.png"].kinds == {Kind.DATA}
    assert by_path["weights/model.pt"].binary
    assert by_path["weights/model.pt"].kinds == {Kind.OTHER}


def test_data_wins_over_code_and_is_noted(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("data/labels.py", "LABELS = ['cat', 'dog']\n")
    repo.commit("labels as python")
    cs = classify_pr(repo)
    (change,) = cs.changes
    assert change.kinds == {Kind.DATA}
    assert change.new.both
    assert cs.matched_both == (change,)
    mix = outcomes(context(repo, tmp_path))["changes.mix"]
    assert mix.message == "this pull request changes data only (1 file), no code"
    assert mix.measurements["matched_both"] == ["data/labels.py"]
    assert "matched both paths.data and paths.code: counted as data" in mix.details


def test_dvc_files(repo: GitRepo) -> None:
    repo.write("images.dvc", "outs:\n- md5: 0123\n  path: images\n")
    repo.write("pipelines/dvc.lock", "schema: '2.0'\n")
    repo.write("dvc.yaml", "stages:\n  prepare:\n    cmd: python prepare.py\n")
    repo.write(".dvc/config", "[core]\n    remote = storage\n")
    repo.commit("dvc")
    cs = classify_pr(repo)
    assert kinds(cs) == {
        ".dvc/config": {"other"},
        "dvc.yaml": {"code"},
        "images.dvc": {"data"},
        "pipelines/dvc.lock": {"data"},
    }
    reasons = {c.path: c.new.reason for c in cs.changes}
    assert reasons["images.dvc"] == "DVC pointer"
    assert reasons["dvc.yaml"] == "DVC pipeline"


def test_git_lfs_pointers_are_data(repo: GitRepo, tmp_path: Path) -> None:
    repo.write_lfs_pointer("assets/weights.bin", b"\x00" * 10_000)
    repo.write_lfs_pointer("assets/old.bin", b"old")
    repo.write("assets/notes.txt", "not a pointer\n")
    repo.commit("lfs on main")
    repo.branch("lfs", "feature")
    repo.write_lfs_pointer("assets/photos/cat.jpg", b"jpeg bytes")
    repo.write("assets/weights.bin", "plain now: was an LFS pointer at the merge base\n")
    repo.rm("assets/old.bin")
    repo.write("assets/notes.txt", "still not a pointer\n")
    repo.commit("lfs changes")
    cs = classify(repo.path, repo.sha("feature"), repo.sha("lfs"), DEFAULT_PATHS)
    assert kinds(cs) == {
        "assets/notes.txt": {"other"},
        "assets/old.bin": {"data"},  # deleted: its content at the merge base decides
        "assets/photos/cat.jpg": {"data"},
        "assets/weights.bin": {"data"},
    }
    assert {c.new.reason for c in cs.data} == {"Git LFS pointer"}


def test_ignore_globs(repo: GitRepo) -> None:
    repo.write("data/README.md", "how the data was collected\n")
    repo.write("data/train/0/a.csv", "new\n")
    repo.write("docs/conf.py", "project = 'x'\n")
    repo.commit("docs")
    config = load_text("paths:\n  ignore: [data/README.md, 'docs/']\n")
    cs = classify_pr(repo, config.paths)
    assert kinds(cs) == {
        "data/README.md": set(),
        "data/train/0/a.csv": {"data"},
        "docs/conf.py": set(),
    }
    assert [c.path for c in cs.ignored] == ["data/README.md", "docs/conf.py"]
    assert cs.ignored[0].new.reason == "paths.ignore `data/README.md`"


def test_configured_globs_with_negation(repo: GitRepo) -> None:
    repo.write("datasets/train/x.csv", "1\n")
    repo.write("datasets/train/schema.py", "FIELDS = 1\n")
    repo.commit("custom layout")
    config = load_text(
        "paths:\n  data: ['datasets/**', '!datasets/**/*.py']\n  code: ['**/*.py']\n"
    )
    assert kinds(classify_pr(repo, config.paths)) == {
        "datasets/train/schema.py": {"code"},
        "datasets/train/x.csv": {"data"},
    }


# --- the run's plumbing ----------------------------------------------------------------------


def test_no_base_skips_both_checks(repo: GitRepo, tmp_path: Path) -> None:
    ctx = context(repo, tmp_path, base=None, head="main")
    results = outcomes(ctx)
    assert {r.outcome for r in results.values()} == {Outcome.SKIP}
    assert set(results) == {"changes.mix", "changes.config"}
    with pytest.raises(ValueError, match="needs a base revision"):
        changes.changeset(ctx)


def test_changeset_is_computed_once_per_run(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("data/train/0/a.csv", "x\n")
    repo.commit("data")
    ctx = context(repo, tmp_path)
    first = changes.changeset(ctx)
    repo.write("src/model.py", "late edit\n")
    repo.commit("after the run started")
    assert changes.changeset(ctx) is first
    assert first.data_paths == ("data/train/0/a.csv",)


def test_report_with_the_stage_validates(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("data/train/0/a.csv", "x\n")
    repo.write("src/model.py", "y\n")
    repo.write("dlgate.yml", "version: 1\n# z\n")
    repo.commit("all of it")
    ctx = context(repo, tmp_path)
    stage = run_stage("changes", ctx)
    assert [c.id for c in checks_for("changes")] == ["changes.mix", "changes.config"]
    doc = report.Report(
        kind="pr",
        repo=str(repo.path),
        head=ctx.head,
        base=ctx.base,
        merge_base=changes.changeset(ctx).merge_base,
        baseline=None,
        stages=(stage,),
        started_at="2025-01-01T00:00:00Z",
        duration_s=0.1,
        dlgate_version="0",
    ).to_dict()
    report.validate(json.loads(json.dumps(doc)))
    assert doc["stages"][0]["conclusion"] == "failure"


def test_shallow_clone_without_the_merge_base(tmp_path: Path) -> None:
    """CI's default depth-1 checkout lacks the merge base: say to fetch more history."""
    origin = GitRepo.init(tmp_path / "origin")
    origin.write("data/a.csv", "1\n")
    origin.commit("root")
    origin.branch("feature")
    for i in range(3):
        origin.write("data/a.csv", f"{i}\n")
        origin.commit(f"feature {i}")
    origin.checkout("main")
    for i in range(3):
        origin.write("src/model.py", f"v = {i}\n")
        origin.commit(f"main {i}")
    clone = GitRepo.clone(
        f"file://{origin.path}", tmp_path / "clone", "--depth", "1", "--no-single-branch"
    )
    base, head = clone.sha("origin/main"), clone.sha("origin/feature")
    with pytest.raises(ShallowCloneError, match="fetch more history"):
        classify(clone.path, base, head, DEFAULT_PATHS)

    ctx = Context(
        repo=clone.path,
        git_dir=clone.path,
        head=Revision("origin/feature", head),
        base=Revision("origin/main", base),
        merge_base=None,
        config=default_config(),
        out=tmp_path / "out",
    )
    (spec,) = [s for s in checks_for("changes") if s.id == "changes.mix"]
    result = run_check(spec, ctx)
    assert result.outcome is Outcome.ERROR
    assert "not in this shallow clone" in result.message
    assert "git fetch --unshallow" in result.message

    # With the history fetched, the same clone works.
    clone.git("fetch", "--quiet", "--unshallow")
    cs = classify(clone.path, base, head, DEFAULT_PATHS)
    assert kinds(cs) == {"data/a.csv": {"data"}}
