"""Generated configuration: the broker's server.properties, redis.conf, java and maven parsing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra import kafka_broker, maven, redis_server
from infra.kafka_broker import BrokerPaths
from infra.redis_server import RedisPaths
from rtml.errors import ConfigError
from rtml.settings import Settings


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": "127.0.0.1:19092",
        "kafka_controller_port": 19093,
        "kafka_security_protocol": "PLAINTEXT",
        "redis_url": "redis://127.0.0.1:16379/0",
        "redis_password": None,
        "rtml_state_dir": tmp_path / "state",
        "rtml_cache_dir": tmp_path / "cache",
    }
    return Settings(**(values | overrides))


def test_broker_properties_single_node_on_loopback(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    paths = BrokerPaths.of(settings)
    props = kafka_broker.broker_properties(settings, paths)

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(settings.kafka_data_dir / "data")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.cleaner.enable"] == "true"
    assert int(props["log.cleaner.backoff.ms"]) <= 1000
    assert props["auto.create.topics.enable"] == "false"
    # Nothing listens beyond loopback.
    assert not re.search(r"://(0\.0\.0\.0)?:", props["listeners"])


def test_properties_render_and_parse_round_trip(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    props = kafka_broker.broker_properties(settings, BrokerPaths.of(settings))
    text = kafka_broker.render_properties(props, "line one\nline two")
    assert text.startswith("# line one\n# line two\n")
    assert kafka_broker.parse_properties(text) == props
    assert kafka_broker.parse_properties("a=C:\\\\dir\n!x\n\nb = 2\n") == {"a": "C:\\dir", "b": "2"}


def test_write_config_writes_both_files(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    paths = BrokerPaths.of(settings)
    kafka_broker.write_config(settings, paths)
    written = kafka_broker.parse_properties(paths.config.read_text())
    assert written == kafka_broker.broker_properties(settings, paths)
    log4j = paths.log4j_config.read_text()
    assert "${sys:rtml.kafka.log.dir" in log4j and "server.log" in log4j
    assert paths.logs.is_dir()


def test_java_command_uses_cached_jars_and_log_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maven.shutil, "which", lambda name: f"/opt/bin/{name}")
    settings = make_settings(tmp_path)
    paths = BrokerPaths.of(settings)
    command = kafka_broker.java_command(settings, paths, "kafka.Kafka", str(paths.config))
    assert command[0] == "/opt/bin/java"
    assert "-Xmx1g" in command
    assert f"-Dlog4j2.configurationFile={paths.log4j_config}" in command
    classpath = command[command.index("-cp") + 1]
    assert classpath == f"{settings.kafka_libs_dir}/*"
    assert command[-2:] == ["kafka.Kafka", str(paths.config)]


def test_missing_java_is_a_service_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maven.shutil, "which", lambda name: None)
    kafka_broker.check_java.cache_clear()
    try:
        with pytest.raises(kafka_broker.ServiceError, match="java is not on PATH"):
            kafka_broker.check_java()
    finally:
        kafka_broker.check_java.cache_clear()


def test_missing_maven_is_a_service_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maven.shutil, "which", lambda name: None)
    with pytest.raises(kafka_broker.ServiceError, match="mvn is not on PATH"):
        kafka_broker.ensure_jars(make_settings(tmp_path))


def test_jars_ready_needs_the_marker_of_this_pom(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert not kafka_broker.jars_ready(settings)
    settings.kafka_libs_dir.mkdir(parents=True)
    marker = settings.kafka_libs_dir / maven.MARKER
    marker.write_text("stale-hash\n")
    assert not kafka_broker.jars_ready(settings)
    marker.write_text(maven.fingerprint(kafka_broker._pom_text()) + "\n")
    assert kafka_broker.jars_ready(settings)
    assert settings.kafka_libs_dir.is_relative_to(settings.rtml_cache_dir)


def test_pom_names_the_broker_and_a_log4j2_binding() -> None:
    pom = kafka_broker._pom_text()
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "<kafka.version>4.4.0</kafka.version>" in pom
    assert "log4j-slf4j" in pom


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_402"', 8),
        ("no version here", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert kafka_broker.parse_java_major(output) == major


def test_maven_error_picks_the_first_error_line() -> None:
    output = (
        "[INFO] stuff\n[ERROR] Failed to execute goal: Could not resolve dependencies\n"
        "[ERROR] more\n"
    )
    assert maven.maven_error(output) == ("Failed to execute goal: Could not resolve dependencies")
    assert maven.maven_error("boom\n") == "boom"
    coloured = "\x1b[1;31m[ERROR]\x1b[0m Could not find artifact x:y:jar:1 in central -> [Help 1]\n"
    assert maven.maven_error(coloured) == "Could not find artifact x:y:jar:1 in central"


def test_new_cluster_id_is_a_kafka_uuid() -> None:
    ids = {kafka_broker.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
            },
            "PLAINTEXT only",
        ),
        ({"kafka_bootstrap_servers": "10.0.0.5:9092"}, "listens on 127.0.0.1 only"),
        ({"kafka_controller_port": 19092}, "must differ"),
    ],
)
def test_impossible_local_broker_settings(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        kafka_broker.check_managed(make_settings(tmp_path, **overrides))


def test_localhost_bootstrap_is_fine_for_a_local_broker(tmp_path: Path) -> None:
    kafka_broker.check_managed(make_settings(tmp_path, kafka_bootstrap_servers="localhost:9092"))


def test_redis_config_is_loopback_aof_everysec(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    paths = RedisPaths.of(settings)
    config = redis_server.redis_config(settings, paths)

    assert config["bind"] == "127.0.0.1"
    assert config["port"] == "16379"
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    # Overwrites of the same keys: rewritten at 5x the last rewrite, not at 2x (Redis's default).
    assert config["auto-aof-rewrite-percentage"] == "400"
    assert config["auto-aof-rewrite-min-size"] == "256mb"
    assert config["hash-max-listpack-value"] == "2048"  # online-store rows stay listpacks
    assert config["daemonize"] == "yes"
    assert config["pidfile"] == str(settings.redis_data_dir / "redis.pid")
    assert config["dir"] == str(settings.redis_data_dir)
    assert "requirepass" not in config
    text = redis_server.render_config(config, "header")
    assert text.startswith("# header\n")
    assert "\nappendonly yes\n" in text and "\nport 16379\n" in text


def test_redis_config_sets_the_password_quoted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, redis_password='se"cr et\\')
    config = redis_server.redis_config(settings, RedisPaths.of(settings))
    assert config["requirepass"] == '"se\\"cr et\\\\"'


def test_redis_port_comes_from_the_url(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, redis_url="redis://localhost/0")
    assert redis_server.redis_config(settings, RedisPaths.of(settings))["port"] == "6379"


def test_impossible_local_redis_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REDIS_MANAGED=false"):
        redis_server.check_managed(make_settings(tmp_path, redis_url="rediss://127.0.0.1:6380/0"))


def test_fatal_reason_is_the_last_exception_in_the_broker_log(tmp_path: Path) -> None:
    paths = BrokerPaths(tmp_path)
    assert kafka_broker._fatal_reason(paths) == ""
    paths.logs.mkdir()
    paths.server_log.write_text(
        "[t] INFO starting\n"
        "[t] ERROR Exiting Kafka due to fatal exception (kafka.Kafka$)\n"
        "java.lang.RuntimeException: Stored node id 2 doesn't match previous node id 1\n"
        "\tat org.apache.kafka.Foo.verify(Foo.java:1)\n"
    )
    assert kafka_broker._fatal_reason(paths) == (
        ": Stored node id 2 doesn't match previous node id 1"
    )
