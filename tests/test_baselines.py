"""Baselines in a real MLflow store: SQLite in a temporary folder, and a real `mlflow server`."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import GitRepo
from mlflow import MlflowClient
from mlflow_server import MlflowServer, free_port

from dlgate.baselines import RunRecord, Store, default_tracking_uri
from dlgate.errors import BaselineError

REPORT = json.dumps({"conclusion": "success", "stages": []})
PREDICTIONS = [{"file": "cats/1.png", "label": "cat", "predicted": "cat", "score": 0.97}]
STATS = {"classes": {"cat": 10, "dog": 12}, "pixel_mean": [0.5, 0.5, 0.5]}


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh store's database after MLflow's migrations, copied by each test (migrating a
    new SQLite database takes seconds; copying it takes milliseconds)."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store_uri(tmp_path: Path, migrated_db: Path) -> str:
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(migrated_db, db)
    return f"sqlite:///{db}"


@pytest.fixture
def store(store_uri: str) -> Iterator[Store]:
    with Store.open(store_uri) as opened:
        yield opened


def record(store: Store, sha: str, kind: str = "baseline", **kw: object) -> RunRecord:
    args: dict[str, object] = {
        "ref": "refs/heads/main",
        "metrics": {"accuracy": 0.9},
        "report_json": REPORT,
    }
    args.update(kw)
    return store.record(sha=sha, kind=kind, **args)  # type: ignore[arg-type]


def history(repo: GitRepo, n: int) -> list[str]:
    """`n` commits on main, oldest first."""
    shas = []
    for i in range(n):
        repo.write("n.txt", str(i))
        shas.append(repo.commit(f"commit {i}"))
    return shas


def round_trip(store: Store, model: Path) -> None:
    """What every store must do: record a baseline, find it by sha, read its artifacts."""
    sha = "ab" * 20
    recorded = store.record(
        sha=sha,
        kind="baseline",
        ref="refs/heads/main",
        metrics={"accuracy": 0.962, "f1": 0.95},
        report_json=REPORT,
        json_artifacts={"predictions.json": PREDICTIONS, "data_stats.json": STATS},
        files={"model.onnx": model},
        params={"epochs": "3"},
    )
    found = store.run_for(sha)
    assert found == recorded
    assert found.metrics == {"accuracy": 0.962, "f1": 0.95}
    assert (found.sha, found.kind, found.ref, found.conclusion) == (
        sha, "baseline", "refs/heads/main", "success",
    )  # fmt: skip
    assert found.label == "main @ abababa"
    assert store.load_json(found, "predictions.json") == PREDICTIONS
    assert store.load_json(found, "data_stats.json") == STATS
    assert json.loads(store.download(found, "report.json").read_text()) == json.loads(REPORT)
    assert store.download(found, "model.onnx").read_bytes() == model.read_bytes()
    kept = store.download(found, "model.onnx", dest=model.parent / "kept")
    assert kept.read_bytes() == model.read_bytes()
    run = MlflowClient(store.tracking_uri).get_run(found.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "baseline main@abababa"
    assert run.data.params == {"epochs": "3"}
    assert run.data.tags["dlgate.conclusion"] == "success"
    assert store.run_for(sha, kinds=("pr",)) is None
    assert store.run_for("cd" * 20) is None


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "exported.onnx"
    path.write_bytes(b"\x08\x07onnx bytes")
    return path


def test_record_and_run_for_round_trip(store: Store, model: Path) -> None:
    round_trip(store, model)


def test_artifacts_live_next_to_the_database(store: Store, store_uri: str, model: Path) -> None:
    run = record(store, "12" * 20, files={"plots/acc.png": model})
    db = Path(store_uri.removeprefix("sqlite:///"))
    logged = list((db.parent / "artifacts").rglob("acc.png"))
    assert [p.relative_to(db.parent / "artifacts" / run.run_id) for p in logged] == [
        Path("artifacts/dlgate/plots/acc.png")
    ]


def test_default_store_is_sqlite_in_the_repository(
    git_repo: GitRepo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    uri = default_tracking_uri(git_repo.path)
    assert uri == f"sqlite:///{git_repo.path.resolve()}/.dlgate/mlflow.db"
    with Store.open(uri) as store:
        run = record(store, "34" * 20, files={"model.onnx": model})
        copy = store.download(run, "model.onnx")
    assert not copy.exists()  # closing the store removed its downloads
    # A fresh store runs MLflow's migrations, which log to stderr unless silenced.
    assert capfd.readouterr() == ("", "")
    dlgate_dir = git_repo.path / ".dlgate"
    assert (dlgate_dir / "mlflow.db").is_file()
    assert list((dlgate_dir / "artifacts").rglob("model.onnx"))
    assert list(cwd.iterdir()) == []  # no ./mlruns wherever the CLI was started
    assert git_repo.git("status", "--porcelain", "--untracked-files=all") == ""


def test_tracking_uri_from_the_environment(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert default_tracking_uri(git_repo.path) == "http://mlflow.example:5000"
    assert not (git_repo.path / ".dlgate").exists()


def test_latest_finished_run_wins(store: Store) -> None:
    sha = "56" * 20
    record(store, sha, metrics={"accuracy": 0.5})
    time.sleep(0.01)  # start times are in milliseconds
    second = record(store, sha, metrics={"accuracy": 0.7})
    with pytest.raises(TypeError):  # not JSON: the run is marked FAILED, never found
        record(store, sha, json_artifacts={"bad.json": {1, 2}})
    assert store.run_for(sha) == second


def test_find_baseline_exact_and_ancestors(git_repo: GitRepo, store: Store) -> None:
    shas = history(git_repo, 6)  # c0 … c5
    old = record(store, shas[1])
    record(store, shas[4], kind="pr", pr=7)  # a PR run is never a baseline
    # c5: nearest with a baseline is c1, 4 back.
    assert store.find_baseline(git_repo.path, shas[5], max_distance=10) == (old, 4)
    assert store.find_baseline(git_repo.path, shas[5], max_distance=3) is None
    near = record(store, shas[2])
    assert store.find_baseline(git_repo.path, shas[5], max_distance=3) == (near, 3)
    assert store.find_baseline(git_repo.path, shas[2], max_distance=3) == (near, 0)
    assert store.find_baseline(git_repo.path, shas[0], max_distance=3) is None


def test_find_baseline_follows_first_parents_only(git_repo: GitRepo, store: Store) -> None:
    base = history(git_repo, 1)[0]
    git_repo.branch("feature")
    git_repo.write("f.txt", "feature")
    on_branch = git_repo.commit("feature work")
    git_repo.checkout("main")
    git_repo.write("m.txt", "main")
    git_repo.commit("main work")
    merge = git_repo.merge("feature")
    record(store, on_branch)  # reachable, but only through the merge's second parent
    root = record(store, base)
    assert store.find_baseline(git_repo.path, merge, max_distance=5) == (root, 2)


def test_releases_in_semantic_version_order(store: Store) -> None:
    tags = ["v1.10.0", "v1.9.0", "v2.0.0-rc.1", "refs/tags/v1.9.0-rc.2", "2.0.0", "nightly"]
    for i, tag in enumerate(tags):
        record(store, f"{i:040x}", kind="release", ref=f"refs/tags/{tag}", tag=tag)
    record(store, "9" * 40)  # a baseline, not a release
    assert [r.tag for r in store.releases()] == [
        "nightly", "refs/tags/v1.9.0-rc.2", "v1.9.0", "v1.10.0", "v2.0.0-rc.1", "2.0.0",
    ]  # fmt: skip
    rc = store.releases()[1]
    assert rc.label == "v1.9.0-rc.2 @ 0000000"
    store.tag_run(rc, "dlgate.note", "yanked")
    assert MlflowClient(store.tracking_uri).get_run(rc.run_id).data.tags["dlgate.note"] == "yanked"


def test_register_model_with_alias(store: Store, model: Path) -> None:
    run = record(store, "78" * 20, kind="release", tag="v1.0.0", files={"model.onnx": model})
    first = store.register_model(run, "digits", "model.onnx", tags={"stage": "qa"}, alias="prod")
    second = store.register_model(run, "digits", "model.onnx", tags={}, alias="prod")
    assert (first, second) == ("1", "2")
    client = MlflowClient(store.tracking_uri)
    version = client.get_model_version_by_alias("digits", "prod")
    assert str(version.version) == "2"
    assert version.run_id == run.run_id
    assert client.get_model_version("digits", "1").tags == {
        "dlgate.sha": run.sha, "dlgate.kind": "release", "dlgate.tag": "v1.0.0", "stage": "qa",
    }  # fmt: skip
    assert (version.source or "").endswith("/dlgate/model.onnx")


def test_unreachable_server_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even if the probe were bypassed, MLflow must not retry for minutes in a test.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BaselineError, match="unreachable") as info:
        Store.open(uri)
    assert time.monotonic() - started < 5
    assert uri in str(info.value)
    assert "start it" in str(info.value)
    assert "--tracking-uri" in str(info.value)


def test_server_that_stops_answering(store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that answered when the store was opened and is gone now: no probe runs, the
    # error comes from MLflow's own request (retries off, so the test takes no minutes).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    gone = Store(MlflowClient(uri), uri, experiment_id="1")
    with pytest.raises(BaselineError, match="stopped answering") as info:
        gone.run_for("ef" * 20)
    assert uri in str(info.value)


def test_missing_database_driver() -> None:
    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("a PostgreSQL driver is installed here")
    with pytest.raises(BaselineError, match="install the database driver"):
        Store.open("postgresql://user@127.0.0.1:1/db")


def test_corrupt_database_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BaselineError, match="move it away"):
        Store.open(f"sqlite:///{db}")


def test_store_folder_that_cannot_exist(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(BaselineError, match="writable --tracking-uri"):
        Store.open(f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}")


def test_deleted_experiment_is_reported(store_uri: str) -> None:
    with Store.open(store_uri, experiment="gone") as store:
        MlflowClient(store_uri).delete_experiment(store.experiment_id)
    with pytest.raises(BaselineError, match="restore it"):
        Store.open(store_uri, experiment="gone")


def test_missing_artifact_is_reported(store: Store) -> None:
    run = record(store, "9a" * 20)
    with pytest.raises(BaselineError, match=r"dlgate/predictions\.json.*dlgate baseline"):
        store.load_json(run, "predictions.json")


def test_caller_mistakes_are_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="full 40-character"):
        store.run_for("abc1234")
    with pytest.raises(ValueError, match="unknown run kind"):
        record(store, "bc" * 20, kind="nightly")
    with pytest.raises(ValueError, match="relative path"):
        record(store, "bc" * 20, json_artifacts={"../escape.json": {}})
    with pytest.raises(ValueError, match="is not a file"):
        record(store, "bc" * 20, files={"model.onnx": tmp_path / "missing.onnx"})
    assert store.run_for("bc" * 20) is None


@pytest.mark.slow
def test_round_trip_through_a_real_server(
    mlflow_server: MlflowServer,
    model: Path,
    git_repo: GitRepo,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with Store.open(mlflow_server.uri, experiment="round-trip") as store:
        round_trip(store, model)
        shas = history(git_repo, 3)
        run = record(store, shas[0], files={"model.onnx": model})
        assert store.find_baseline(git_repo.path, shas[2], max_distance=5) == (run, 2)
        assert store.register_model(run, "digits-remote", "model.onnx", tags={}, alias="a") == "1"
        assert store.register_model(run, "digits-remote", "model.onnx", tags={}, alias="a") == "2"
        pr = record(store, shas[2], kind="pr", pr=3, ref="refs/pull/3/merge")
        assert store.run_for(shas[2], kinds=("pr", "merge_group")) == pr
        assert pr.pr == 3
    assert capfd.readouterr() == ("", "")  # MLflow prints "View run … at: URL" unless stopped
    # Artifacts went through the server, into its own folder.
    assert list((mlflow_server.root / "artifacts").rglob("model.onnx"))
