"""Settings: defaults, the environment, the TOML file, precedence and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtml.errors import ConfigError
from rtml.settings import Settings, load_settings

ENV_NAMES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "RAY_ADDRESS",
    "RTML_CONFIG",
    "RTML_STATE_DIR",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray ./rtml.toml


def test_defaults_are_the_local_stack() -> None:
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.ray_address is None
    assert settings.kafka_is_managed and settings.redis_is_managed
    topics = settings.rtml_topics
    assert (topics.transactions.name, topics.transactions.partitions) == ("transactions", 8)
    assert (topics.user_events.name, topics.user_events.partitions) == ("user-events", 8)
    assert topics.user_profiles.config == {"cleanup.policy": "compact"}
    names = {t.name for t in topics.all()}
    assert {"fraud-scores", "fraud-alerts", "recommendations", "dead-letter", "ops-alerts"} <= names


def test_environment_uses_the_operator_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092, kafka-2:9092")
    monkeypatch.setenv("REDIS_URL", "rediss://cache.internal:6380/1")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setenv("RTML_TOPICS__TRANSACTIONS__PARTITIONS", "32")
    monkeypatch.setenv("RTML_STATE_DIR", "/var/lib/rtml")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.ray_address == "ray://head:10001"
    assert settings.rtml_topics.transactions.partitions == 32
    assert settings.rtml_topics.transactions.name == "transactions"  # partial override
    assert settings.rtml_state_dir == Path("/var/lib/rtml")
    # Existing services: nothing local is managed.
    assert not settings.kafka_is_managed
    assert not settings.redis_is_managed


def test_toml_file_and_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "custom.toml"
    config.write_text(
        'kafka_bootstrap_servers = "broker:29092"\n'
        'redis_url = "redis://10.0.0.5:6379/0"\n'
        "[rtml_topics.fraud_scores]\n"
        'name = "scores-v2"\n'
    )
    monkeypatch.setenv("RTML_CONFIG", str(config))
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "broker:29092"
    assert settings.rtml_topics.fraud_scores.name == "scores-v2"
    assert settings.rtml_topics.fraud_scores.partitions == 8
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env-broker:9092")  # env beats file
    assert load_settings().kafka_bootstrap_servers == "env-broker:9092"
    # explicit overrides beat both
    assert load_settings(kafka_bootstrap_servers="x:1").kafka_bootstrap_servers == "x:1"


def test_rtml_toml_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "rtml.toml").write_text("ray_num_cpus = 3\n")
    assert load_settings().ray_num_cpus == 3


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"kafka_bootstrap_servers": "no-port"}, "kafka_bootstrap_servers"),
        ({"kafka_bootstrap_servers": "host:99999"}, "not host:port"),
        ({"kafka_bootstrap_servers": " , "}, "at least one"),
        ({"redis_url": "http://x"}, "redis_url"),
        ({"kafka_security_protocol": "SASL_SSL"}, "kafka_sasl_mechanism"),
        ({"kafka_security_protocol": "BOGUS"}, "kafka_security_protocol"),
        ({"rtml_topics": {"transactions": {"partitions": 0}}}, "partitions"),
        ({"rtml_topics": {"transactions": {"name": "bad name!"}}}, "name"),
    ],
)
def test_invalid_settings_name_the_field(overrides: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    assert fragment in str(info.value)


def test_missing_config_file_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_CONFIG", "/nonexistent/rtml.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_sasl_settings_pass_through_and_secrets_stay_hidden() -> None:
    settings = load_settings(
        kafka_bootstrap_servers="broker:9096",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="rtml",
        kafka_sasl_password="s3cret",
        redis_password="r3dis",
    )
    kwargs = settings.kafka_client_kwargs()
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "rtml"
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert settings.redis_client_kwargs() == {"password": "r3dis"}
    assert "s3cret" not in repr(settings) and "r3dis" not in repr(settings)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.redis_url = "redis://elsewhere:6379/0"  # type: ignore[misc]
    assert isinstance(settings, Settings)
