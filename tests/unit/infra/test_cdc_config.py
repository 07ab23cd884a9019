"""The database loop's generated configuration: PostgreSQL options, the Connect worker, the users
connector, and the settings that say what is managed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contracts.events import UserProfile
from database.schema import STATEMENTS, USERS_TABLE
from infra import kafka_connect, postgres_server
from rtml.errors import ConfigError
from rtml.settings import Settings, load_settings


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": "127.0.0.1:19092",
        "database_url": "postgresql://rtml@127.0.0.1:15432/rtml",
        "kafka_connect_url": "http://127.0.0.1:18083",
        "rtml_state_dir": tmp_path / "state",
        "rtml_cache_dir": tmp_path / "cache",
        "rtml_cdc": True,
    }
    return Settings(**(values | overrides))


def test_postgres_listens_on_loopback_with_logical_decoding(tmp_path: Path) -> None:
    options = postgres_server.server_options(make_settings(tmp_path))
    assert options["listen_addresses"] == "127.0.0.1"
    assert options["port"] == "15432"
    assert options["wal_level"] == "logical"
    assert int(options["max_replication_slots"]) >= 1


def test_managed_postgres_and_connect_must_be_loopback(tmp_path: Path) -> None:
    remote = make_settings(tmp_path, database_url="postgresql://app@db.internal:5432/app")
    assert not remote.database_is_managed
    with pytest.raises(ConfigError, match="DATABASE_MANAGED=false"):
        postgres_server.check_managed(remote.model_copy(update={"database_managed": True}))
    connect = make_settings(tmp_path, kafka_connect_url="http://connect:8083")
    assert not connect.kafka_connect_is_managed
    with pytest.raises(ConfigError, match="KAFKA_CONNECT_MANAGED=false"):
        kafka_connect.check_managed(connect.model_copy(update={"kafka_connect_managed": True}))


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "postgresql://127.0.0.1:5432/rtml", "postgresql://u@h:5432/"]
)
def test_bad_database_urls_say_what_is_expected(url: str) -> None:
    with pytest.raises(ConfigError, match=r"postgresql://user@host:port/database|user and a"):
        load_settings(database_url=url)


def test_worker_is_distributed_with_internal_topics_on_the_broker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    props = kafka_connect.worker_properties(settings)
    assert props["bootstrap.servers"] == "127.0.0.1:19092"
    assert {props[f"{kind}.storage.topic"] for kind in ("config", "offset", "status")} == {
        "rtml-connect-configs",
        "rtml-connect-offsets",
        "rtml-connect-status",
    }
    assert props["listeners"] == "http://127.0.0.1:18083"
    assert props["plugin.path"] == str(settings.debezium_plugin_dir)


def test_users_connector_writes_the_contract_to_user_profiles(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    config = kafka_connect.users_connector_config(settings)
    assert config["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert config["plugin.name"] == "pgoutput"
    assert config["table.include.list"] == "public.users"
    assert config["transforms.route.replacement"] == "user-profiles"
    assert config["transforms.key.field"] == "user_id"
    assert config["value.converter.schemas.enable"] == "false"
    assert config["transforms.unwrap.delete.tombstone.handling.mode"] == "delete-to-tombstone"
    assert "database.password" not in config


def test_users_columns_are_the_contract_fields() -> None:
    """The JSON converter writes the columns as they are: they must be UserProfile's fields."""
    ddl = next(s for s in STATEMENTS if f"CREATE TABLE IF NOT EXISTS {USERS_TABLE} " in s)
    columns = re.findall(r"^\s+([a-z_]+) (?:text|double precision|integer|bigint)", ddl, re.M)
    fields = [f for f in UserProfile.__struct_fields__ if f != "schema_version"]
    assert columns == fields
