"""Settings: TOML defaults, ORRANGE_* overrides, secrets only from the environment; logging."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from orrange.logging import configure_logging, get_logger
from orrange.settings import (
    CONFIG_DIR_ENV,
    Settings,
    SettingsError,
    config_file,
    load_settings,
    settings_env,
)

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "orrange.toml"


def test_repository_config_loads_with_documented_defaults() -> None:
    s = load_settings(REPO_CONFIG, env={})
    assert s == Settings()
    assert s.embedded_nats and s.embedded_postgres
    assert s.effective_nats_url == "nats://127.0.0.1:4222"
    assert s.effective_database_url == "postgresql://postgres@127.0.0.1:54320/orrange"
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "o.toml"
    cfg.write_text('api_port = 9000\nlog_format = "console"\n[runtime]\nbatch_size = 300\n')
    env = {
        "ORRANGE_API_PORT": "9100",
        "ORRANGE_NATS_URL": "nats://10.0.0.1:4222",
        "ORRANGE_DATABASE_URL": "postgresql://u@db/orrange",
        "ORRANGE_RUNTIME_FETCH_TIMEOUT_MS": "250",
        "ORRANGE_JWT_SECRET": "s3cret",
        "ORRANGE_DATA_DIR": str(tmp_path / "state"),
    }
    s = load_settings(cfg, env=env)
    assert s.api_port == 9100
    assert s.log_format == "console"
    assert s.runtime.batch_size == 300
    assert s.runtime.fetch_timeout_ms == 250
    assert s.jwt_secret == "s3cret"
    assert not s.embedded_nats and s.effective_nats_url == "nats://10.0.0.1:4222"
    assert not s.embedded_postgres and s.effective_database_url == "postgresql://u@db/orrange"
    assert s.data_path == (tmp_path / "state").resolve()


def test_secret_in_file_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "o.toml"
    cfg.write_text('jwt_secret = "oops"\n')
    with pytest.raises(SettingsError, match="jwt_secret"):
        load_settings(cfg, env={})


def test_invalid_value_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", env={})
    cfg = tmp_path / "o.toml"
    cfg.write_text("")
    with pytest.raises(SettingsError, match="api_port"):
        load_settings(cfg, env={"ORRANGE_API_PORT": "eighty"})
    with pytest.raises(SettingsError, match="log_format"):
        load_settings(cfg, env={"ORRANGE_LOG_FORMAT": "xml"})


def test_json_logs_carry_bound_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO", actor="matcher")
    get_logger("t", symbol="AMZN").info("event applied", seq=42)
    get_logger("t").debug("hidden")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "event applied"
    assert (line["actor"], line["symbol"], line["seq"]) == ("matcher", "AMZN", 42)
    assert line["level"] == "info" and line["timestamp"].endswith("Z")
    configure_logging("console", "INFO")
    get_logger("t").info("readable", seq=1)
    err = capsys.readouterr().err
    assert "readable" in err and "seq=1" in err
    with pytest.raises(ValueError):
        configure_logging("xml")  # type: ignore[arg-type]


def test_actor_config_from_settings() -> None:
    from orrange.runtime import ActorConfig

    s = load_settings(REPO_CONFIG, env={"ORRANGE_RUNTIME_BATCH_SIZE": "1000"})
    cfg = ActorConfig.from_settings("matcher", s, metrics_port=9101, heartbeat_interval_ms=1000)
    assert (cfg.name, cfg.nats_url, cfg.metrics_port) == ("matcher", "nats://127.0.0.1:4222", 9101)
    assert cfg.batch_size == 1000
    assert cfg.heartbeat_interval_ms == 1000
    assert cfg.duplicate_window_ms == s.runtime.duplicate_window_ms


def test_config_files_are_found_in_the_config_dir_then_cwd_then_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = Path(str(resources.files("orrange.defaults")))
    work = tmp_path / "work"
    (work / "config").mkdir(parents=True)
    override = tmp_path / "override"
    override.mkdir()
    monkeypatch.chdir(work)
    assert config_file("markets.toml", env={}) == packaged / "markets.toml"
    assert config_file("Procfile", env={}) == packaged / "Procfile"
    (work / "config" / "markets.toml").write_text("")
    assert config_file("markets.toml", env={}) == work / "config" / "markets.toml"
    env = {CONFIG_DIR_ENV: str(override)}
    assert config_file("markets.toml", env=env) == work / "config" / "markets.toml"
    (override / "markets.toml").write_text("")
    assert config_file("markets.toml", env=env) == override / "markets.toml"
    assert config_file("sources.toml", env=env) == packaged / "sources.toml"
    with pytest.raises(SettingsError, match=r"no configuration file 'nope\.toml'"):
        config_file("nope.toml", env=env)


def test_settings_come_from_the_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}) == Settings()  # the packaged orrange.toml
    (tmp_path / "orrange.toml").write_text("api_port = 9001\n")
    assert load_settings(env={CONFIG_DIR_ENV: str(tmp_path)}).api_port == 9001


def test_settings_env_gives_the_same_settings_back(tmp_path: Path) -> None:
    cfg = tmp_path / "o.toml"
    cfg.write_text(
        'api_port = 9002\nnats_url = "nats://10.0.0.2:4222"\n[runtime]\nbatch_size = 7\n'
    )
    settings = load_settings(cfg, env={})
    assert load_settings(env=settings_env(settings)) == settings
    assert load_settings(env=settings_env(Settings())) == Settings()
