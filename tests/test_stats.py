"""`data.stats`: statistics recorded per commit in MLflow, compared with the baseline's."""

from __future__ import annotations

import io
import json
from pathlib import Path

from conftest import GitRepo
from digits import config, context, data_stage, digits, gate, write_digits
from PIL import Image

from dlgate.baselines import Store
from dlgate.datastats import psi
from dlgate.report import Outcome


def _record_baseline(repo: GitRepo, tmp: Path, text: str, stats: bool = True) -> None:
    """Record main's baseline run as the gate does, with the data statistics the data stage
    produced (and an empty prediction list: these tests have no model to predict with)."""
    ctx = context(repo, tmp / "baseline", text)
    data_stage(ctx)
    artifacts: dict[str, object] = {"predictions.json": []}
    if stats:
        artifacts["data_stats.json"] = ctx.record_json["data_stats.json"]
    with Store.open(f"sqlite:///{tmp / 'ml.db'}") as store:
        store.record(sha=repo.sha("main"), kind="baseline", ref="main", metrics={},
                     report_json='{"conclusion": "success"}', json_artifacts=artifacts)  # fmt: skip


def test_statistics_are_tracked_and_compared(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    _record_baseline(git_repo, tmp_path, config())
    with Store.open(f"sqlite:///{tmp_path / 'ml.db'}") as store:
        run = store.run_for(git_repo.sha("main"))
        assert run is not None
        stats = store.load_json(run, "data_stats.json")
    train = stats["splits"]["train"]
    assert train["samples"] == 120 and train["classes"]["0"] == 12
    assert train["sizes"] == {"8x8": 120} and train["modes"] == {"L": 120}
    assert 40 < train["channels"]["L"]["mean"][0] < 110  # digits: dark background
    assert train["channels"]["L"]["std"][0] > 50

    # A pull request: three new twos, a five relabeled as a six, a seven removed.
    git_repo.branch("feature")
    twos = [i for i in range(1500, 1797) if digits()[i][0] == 2][:3]
    for i in twos:
        buf = io.BytesIO()
        Image.fromarray(digits()[i][1], mode="L").save(buf, "PNG")
        git_repo.write(f"data/train/2/new-{i}.png", buf.getvalue())
    five = sorted((git_repo.path / "data/train/5").iterdir())[0].name
    git_repo.mv(f"data/train/5/{five}", f"data/train/6/{five}")
    seven = sorted((git_repo.path / "data/train/7").iterdir())[0].name
    git_repo.rm(f"data/train/7/{seven}")
    git_repo.commit("more twos, a relabel, a removal")
    report = gate(git_repo, tmp_path, config(), base="main")
    found = report.check("data.stats")
    assert found is not None and found.outcome is Outcome.PASS, found.message
    assert found.message.startswith("no drift against baseline")
    changes = found.measurements["changes"]["train"]  # type: ignore[index]
    assert changes["2"]["added"] == 3
    assert changes["5"]["relabeled_out"] == 1 and changes["6"]["relabeled_in"] == 1
    assert changes["7"]["removed"] == 1
    assert "| train | 2 | 12 | 15 | +3 | 3 | 0 | 0 | +0 |" in found.details
    assert "| train | 6 | 12 | 13 | +1 | 0 | 0 | 0 | +1 |" in found.details
    assert report.baseline is not None and report.baseline.found == "exact"

    gallery = report.check("data.gallery")
    assert gallery is not None and gallery.outcome is Outcome.PASS
    assert gallery.artifacts == ("data/gallery-train.png",)
    with Image.open(tmp_path / "out-pr" / "data/gallery-train.png") as sheet:
        assert sheet.height == 2 * (64 + 12)  # rows for class 2 (added) and 6 (relabeled)
        assert sheet.width == 56 + 3 * 64

    # Brighter data: inverted digits shift the brightness distribution.
    for i in range(1400, 1460):
        buf = io.BytesIO()
        Image.fromarray(255 - digits()[i][1], mode="L").save(buf, "PNG")
        git_repo.write(f"data/train/{digits()[i][0]}/inverted-{i}.png", buf.getvalue())
    git_repo.commit("inverted digits")
    found = gate(git_repo, tmp_path, config(), base="main").check("data.stats")
    assert found is not None and found.outcome is Outcome.FAIL, found.message
    assert "`train` brightness shifted against baseline" in found.message
    assert "(`data.stats.fail_psi`), chi-squared p = " in found.message
    text = config("  stats: {warn_psi: 0.1, fail_psi: 0}\n")
    found = gate(git_repo, tmp_path, text, base="main").check("data.stats")
    assert found is not None and found.outcome is Outcome.WARN


def test_baseline_without_statistics(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 2, 1)
    git_repo.commit("data")
    _record_baseline(git_repo, tmp_path, config(), stats=False)
    git_repo.branch("feature")
    git_repo.write("notes.md", "x")
    git_repo.commit("unrelated")
    found = gate(git_repo, tmp_path, config(), base="main").check("data.stats")
    assert found is not None and found.outcome is Outcome.PASS, found.message
    assert "run has no data statistics (recorded before they were tracked)" in found.message


def test_no_base_records_only(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 2, 1)
    git_repo.commit("data")
    ctx = context(git_repo, tmp_path, config())
    found = data_stage(ctx)["data.stats"]
    assert found.outcome is Outcome.PASS
    assert found.message == "statistics recorded (train: 20 samples, real_world: 10 samples)"
    json.dumps(ctx.record_json["data_stats.json"])  # serializable as recorded


def test_psi() -> None:
    same = {"a": 50, "b": 50}
    assert psi(same, same) == 0
    assert 0.1 < psi({"a": 70, "b": 30}, same) < 0.25
    assert psi({"a": 95, "b": 5}, same) > 0.25
    assert psi({"a": 50, "b": 50, "c": 1}, same) < 0.05  # one new bucket: small, finite
