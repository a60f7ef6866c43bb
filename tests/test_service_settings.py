"""The service's settings: read from the environment, validated at start-up, and a missing
secret stops `dlgate serve` with exit 2 and a message saying what to set."""

from __future__ import annotations

from pathlib import Path

import ghemu
import pytest

from dlgate.cli import main
from dlgate.service.settings import Settings, SettingsError


def _env(**over: str) -> dict[str, str]:
    private, _ = ghemu.app_keypair()
    env = {"DLGATE_APP_ID": "12", "DLGATE_PRIVATE_KEY": private, "DLGATE_WEBHOOK_SECRET": "s3"}
    env.update(over)
    return {k: v for k, v in env.items() if v != "-"}


def test_defaults_and_overrides() -> None:
    s = Settings.from_env(
        _env(
            DLGATE_WORKERS="4",
            DLGATE_QUEUE_URL="redis://q:6379/1",
            DLGATE_SANDBOX="local",
            MLFLOW_TRACKING_URI="http://ml:5000",
        )
    )
    assert (s.app_id, s.workers, s.queue, s.sandbox) == (12, 4, "redis://q:6379/1", "local")
    assert s.tracking_uri == "http://ml:5000"
    d = Settings.from_env(_env())
    assert d.sandbox == "docker" and d.workers == 2 and d.max_attempts == 3
    assert d.queue.startswith("sqlite:///") and d.queue.endswith("queue.db")
    assert d.details_url("abc") == "http://localhost:8080/jobs/abc"


def test_round_trip_through_the_environment() -> None:
    s = Settings.from_env(_env(DLGATE_SANDBOX_CPUS="1.5", DLGATE_LEASE_SECONDS="9"))
    again = Settings.from_env(s.to_env())
    assert again == s


def test_every_problem_is_reported_at_once_with_what_to_set() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            _env(
                DLGATE_WEBHOOK_SECRET="-",
                DLGATE_APP_ID="twelve",
                DLGATE_SANDBOX="vm",
                DLGATE_QUEUE_URL="postgres://x",
            )
        )
    text = str(info.value)
    assert "DLGATE_WEBHOOK_SECRET is not set: set it (or DLGATE_WEBHOOK_SECRET_FILE)" in text
    assert "DLGATE_APP_ID = 'twelve' is not an integer" in text
    assert "DLGATE_SANDBOX = 'vm'" in text
    assert "DLGATE_QUEUE_URL = 'postgres://x' is not a queue URL" in text
    assert text.count("DLGATE_WEBHOOK_SECRET") == 2  # one message, not a duplicate


def test_a_key_that_is_not_pem_is_refused() -> None:
    with pytest.raises(SettingsError, match="DLGATE_PRIVATE_KEY is not a PEM private key"):
        Settings.from_env(_env(DLGATE_PRIVATE_KEY="ssh-rsa AAAA not a key"))


def test_secrets_from_files(tmp_path: Path) -> None:
    private, _ = ghemu.app_keypair()
    (tmp_path / "key.pem").write_text(private)
    (tmp_path / "secret").write_text("from-a-file\n")
    s = Settings.from_env(
        _env(
            DLGATE_PRIVATE_KEY="-",
            DLGATE_WEBHOOK_SECRET="-",
            DLGATE_PRIVATE_KEY_FILE=str(tmp_path / "key.pem"),
            DLGATE_WEBHOOK_SECRET_FILE=str(tmp_path / "secret"),
        )
    )
    assert s.webhook_secret == "from-a-file"
    with pytest.raises(SettingsError, match=r"DLGATE_PRIVATE_KEY_FILE = .* cannot be read"):
        Settings.from_env(
            _env(DLGATE_PRIVATE_KEY="-", DLGATE_PRIVATE_KEY_FILE=str(tmp_path / "missing.pem"))
        )
    with pytest.raises(SettingsError, match="both DLGATE_WEBHOOK_SECRET and"):
        Settings.from_env(_env(DLGATE_WEBHOOK_SECRET_FILE=str(tmp_path / "secret")))


def test_dlgate_serve_refuses_to_start_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in _env(DLGATE_WEBHOOK_SECRET="-").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DLGATE_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("DLGATE_WEBHOOK_SECRET_FILE", raising=False)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "the webhook service cannot start" in err
    assert "DLGATE_WEBHOOK_SECRET is not set" in err
    assert "Traceback" not in err
