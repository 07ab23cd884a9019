"""Secrets (SASL password, Redis password, API key) come from the environment or from files,
reach the clients that need them, and never show in reprs, dumps, errors or logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from consumers.kafka_io import make_consumer, make_producer
from infra.probes import redis_address, redis_client
from rtml.errors import ConfigError
from rtml.settings import load_settings
from store.online import connect_redis

SECRETS = ("kafka-pw-0123", "redis-pw-4567", "api-key-89ab")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "KAFKA_SASL_PASSWORD",
        "REDIS_PASSWORD",
        "RTML_API_KEY",
        "KAFKA_SASL_PASSWORD_FILE",
        "REDIS_PASSWORD_FILE",
        "RTML_API_KEY_FILE",
        "RTML_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def secret_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name, secret in zip(("kafka", "redis", "api"), SECRETS, strict=True):
        path = tmp_path / f"{name}.secret"
        path.write_text(secret + "\n")  # as `echo secret > file` writes it
        path.chmod(0o600)
        files[name] = path
    return files


def sasl_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    files = secret_files(tmp_path)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "rtml")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(files["kafka"]))
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(files["redis"]))
    monkeypatch.setenv("RTML_API_KEY_FILE", str(files["api"]))
    return load_settings(kafka_bootstrap_servers="kafka.internal:9096")


def test_secrets_come_from_files_without_the_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = sasl_settings(monkeypatch, tmp_path)
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == SECRETS[0]
    assert settings.redis_client_kwargs()["password"] == SECRETS[1]
    assert settings.rtml_api_key is not None
    assert settings.rtml_api_key.get_secret_value() == SECRETS[2]


def test_an_explicit_secret_wins_over_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(secret_files(tmp_path)["redis"]))
    monkeypatch.setenv("REDIS_PASSWORD", "from-env")
    assert load_settings().redis_client_kwargs()["password"] == "from-env"


def test_an_unreadable_secret_file_is_a_config_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RTML_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="rtml_api_key_file: cannot read"):
        load_settings()


async def test_the_clients_get_the_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = sasl_settings(monkeypatch, tmp_path)
    consumer = make_consumer(settings, group_id=None)
    producer = make_producer(settings, transactional_id="t")
    for client in (consumer._client, producer.client):
        assert client._security_protocol == "SASL_PLAINTEXT"
        assert client._sasl_mechanism == "SCRAM-SHA-256"
        assert client._sasl_plain_username == "rtml"
        assert client._sasl_plain_password == SECRETS[0]
    await producer.stop()  # nothing started: only releases what the constructors made
    await consumer.stop()
    for redis in (connect_redis(settings), redis_client(settings)):
        assert redis.connection_pool.connection_kwargs["password"] == SECRETS[1]
        await redis.aclose()


def test_secrets_never_show_in_reprs_dumps_errors_or_logs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = sasl_settings(monkeypatch, tmp_path)
    texts = [repr(settings), str(settings), settings.model_dump_json(), redis_address(settings)]
    monkeypatch.setenv("RTML_DELIVERY", "sometimes")  # an invalid value beside the secrets
    with pytest.raises(ConfigError) as error:
        load_settings()
    texts += [str(error.value), caplog.text]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
    monkeypatch.delenv("RTML_DELIVERY")
    with pytest.raises(ConfigError, match="must not hold a password") as error:
        load_settings(redis_url=f"redis://:{SECRETS[1]}@127.0.0.1:6379/0")
    assert SECRETS[1] not in str(error.value)
