"""The one typed settings object of an rtml process.

Built once (``load_settings``) from, in order of precedence: explicit overrides, environment
variables, a TOML config file, defaults. Passed down explicitly; business code never reads the
environment itself.

Environment names are the field names in upper case. The connection settings use the names
operators already know (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``, ``RAY_ADDRESS``); everything
rtml-specific starts with ``RTML_``. Nested sections use ``__``, e.g.
``RTML_TOPICS__TRANSACTIONS__PARTITIONS=16``.

The config file is ``$RTML_CONFIG`` if set, else ``rtml.toml`` in the working directory if it
exists. Its keys are the field names (``kafka_bootstrap_servers = "..."``,
``[rtml_topics.transactions]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from features.config import FeatureConfig
from features.patterns.language import DEFAULT_RULES_PATH
from monitoring.config import MonitoringConfig

_SECRET_FILES = ("kafka_sasl_password", "redis_password", "rtml_api_key")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE = "postgresql://rtml@127.0.0.1:5432/rtml"
DEFAULT_KAFKA_CONNECT = "http://127.0.0.1:8083"
KAFKA_VERSION = "4.4.0"
DEBEZIUM_VERSION = "3.7.0.Final"


class TopicSpec(BaseModel):
    """One Kafka topic: its name, partition count and topic-level configs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=1, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1)
    config: dict[str, str] = Field(default_factory=dict)


def _topic(name: str, partitions: int = 1, **config: str) -> Any:
    return Field(default_factory=lambda: TopicSpec(name=name, partitions=partitions, config=config))


class Topics(BaseModel):
    """Every topic rtml reads or writes. Partitions are the unit of parallelism."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transactions: TopicSpec = _topic("transactions", 8)
    user_events: TopicSpec = _topic("user-events", 8)
    user_profiles: TopicSpec = _topic("user-profiles", 8, **{"cleanup.policy": "compact"})
    fraud_scores: TopicSpec = _topic("fraud-scores", 8)
    fraud_alerts: TopicSpec = _topic("fraud-alerts", 1)
    recommendations: TopicSpec = _topic("recommendations", 8)
    dead_letter: TopicSpec = _topic("dead-letter", 1)
    ops_alerts: TopicSpec = _topic("ops-alerts", 1)
    # Analysts' decisions: kept forever (small), the history the merchant risk is trained on.
    fraud_labels: TopicSpec = _topic("fraud-labels", 1, **{"retention.ms": "-1"})
    # The feature log: one record per transaction with the features computed for it.
    fraud_features: TopicSpec = _topic("fraud-features", 8)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """A partial override (``RTML_TOPICS__X__PARTITIONS=16``) keeps the other keys."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, field in cls.model_fields.items():
            value = data.get(name)
            if isinstance(value, dict) and field.default_factory is not None:
                default = field.default_factory()  # type: ignore[call-arg]
                merged[name] = {**default.model_dump(), **value}
        return merged

    def all(self) -> list[TopicSpec]:
        return [getattr(self, name) for name in type(self).model_fields]


class AutoscaleSettings(BaseModel):
    """The consumer autoscaler (``consumers/autoscaler.py``): bounds, lag thresholds, timing.

    Scale up when the lag is above ``scale_up_lag`` and would take longer than
    ``target_drain_s`` to drain at the current rates; scale down (one actor at a time) only
    after the lag stayed under ``scale_down_lag`` for a whole window and the remaining actors
    could carry the input rate at ``downscale_utilization`` of their measured capacity. The two
    thresholds are the hysteresis; the cooldowns let a rebalance (state restore) settle before
    its dip in throughput is read as a trend.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_actors: int = Field(default=1, ge=1)
    # None: the input topic's partition count (an actor beyond it would idle).
    max_actors: int | None = Field(default=None, ge=1)
    interval_s: float = Field(default=5.0, gt=0)
    # Rates and the lag trend are measured over this much history.
    window_s: float = Field(default=30.0, gt=0)
    scale_up_lag: int = Field(default=20_000, ge=1)
    scale_down_lag: int = Field(default=1_000, ge=0)
    target_drain_s: float = Field(default=60.0, gt=0)
    upscale_cooldown_s: float = Field(default=30.0, ge=0)
    downscale_cooldown_s: float = Field(default=120.0, ge=0)
    downscale_utilization: float = Field(default=0.6, gt=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> AutoscaleSettings:
        if self.max_actors is not None and self.max_actors < self.min_actors:
            raise ValueError(f"max_actors ({self.max_actors}) < min_actors ({self.min_actors})")
        if self.scale_down_lag >= self.scale_up_lag:
            raise ValueError(
                f"scale_down_lag ({self.scale_down_lag}) must be below scale_up_lag "
                f"({self.scale_up_lag}): the gap is the hysteresis"
            )
        if self.window_s < 2 * self.interval_s:
            raise ValueError(
                f"window_s ({self.window_s}) must span at least two intervals ({self.interval_s})"
            )
        return self


class PlacementSettings(BaseModel):
    """Where consumer actors run on a Ray cluster.

    ``consumer_resource``: a custom resource that CPU worker nodes advertise (cluster.yaml:
    ``resources: {consumer: 16}``); each actor asks for ``num_cpus`` of it too, so consumers
    land on those nodes. Requested only when the cluster has it, so one machine without custom
    resources still runs everything; ``require_consumer_resource`` requests it regardless, for
    an autoscaling cluster whose consumer nodes start on demand (the pending request is what
    makes Ray's autoscaler add one). ``spread``: Ray's SPREAD strategy, one actor per node
    first (a lost node takes fewer partitions with it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_cpus: float = Field(default=0.25, gt=0)
    consumer_resource: str | None = Field(default="consumer", min_length=1)
    require_consumer_resource: bool = False
    spread: bool = True

    @model_validator(mode="after")
    def _check(self) -> PlacementSettings:
        if self.require_consumer_resource and self.consumer_resource is None:
            raise ValueError("require_consumer_resource needs a consumer_resource name")
        return self


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _default_home(env: str, fallback: str) -> Path:
    """``$env/rtml`` when the XDG variable is set, else ``~/<fallback>/rtml``."""
    base = os.environ.get(env)
    return (Path(base) if base else Path.home() / fallback) / "rtml"


class Settings(BaseSettings):
    """Connection, topic and local-stack settings. Frozen: build a new one to change it."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        env_nested_delimiter="__",
        populate_by_name=True,
    )

    # Kafka. SASL/SSL settings pass straight through to the aiokafka clients.
    kafka_bootstrap_servers: str = DEFAULT_KAFKA
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None  # the password is the file's content
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_client_id: str = "rtml"
    kafka_request_timeout_ms: int = Field(default=30_000, ge=1_000)
    # The wait before retrying when a transaction starts while the broker still writes the
    # previous one's markers (CONCURRENT_TRANSACTIONS); aiokafka hard-codes 20 ms. See
    # consumers/kafka_io.py.
    kafka_txn_retry_backoff_ms: float = Field(default=2.0, gt=0, le=1_000)
    # Whether `rtml infra up` runs a local broker for this address. None: yes when the bootstrap
    # address is one loopback host:port (the broker then listens there).
    kafka_managed: bool | None = None
    kafka_controller_port: int = Field(default=9093, gt=0, lt=65536)

    # Redis: the online feature store. A rediss:// URL turns TLS on.
    redis_url: str = DEFAULT_REDIS
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = None
    redis_ssl_ca_certs: Path | None = None
    # Whether `rtml infra up` runs a local redis-server. None: yes for a loopback redis:// URL.
    redis_managed: bool | None = None

    # PostgreSQL: the users table (streamed to user-profiles by CDC) and the analysts' cases.
    # Used only when rtml_cdc is on (or by `rtml cases`). A loopback postgresql:// URL means
    # `rtml infra up` runs a local server (database_managed overrides).
    database_url: str = DEFAULT_DATABASE
    database_password: SecretStr | None = None
    database_managed: bool | None = None
    # Kafka Connect (distributed mode) running the Debezium PostgreSQL source connector. A
    # loopback http:// URL means `rtml infra up` runs a local worker (kafka_connect_managed).
    kafka_connect_url: str = DEFAULT_KAFKA_CONNECT
    kafka_connect_managed: bool | None = None

    # Ray. None starts a local Ray instance with ray_num_cpus logical CPUs.
    ray_address: str | None = None
    ray_num_cpus: int = Field(default=8, ge=1)
    # The port of the local Ray node's Prometheus endpoint (the consumer actors' and Serve
    # replicas' metrics, ray_rtml_*). None: Ray picks a free one (see docs/monitoring.md).
    ray_metrics_export_port: int | None = Field(default=None, gt=0, lt=65536)
    # Start the local Ray with RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (Serve's throughput mode: gRPC
    # handles, direct ingress without the proxy, user code on the replica's loop, buffered
    # request logs); a cluster (ray_address) takes it from its own environment. On 2 cores it
    # raised the HTTP recommendations rate from 87 to 133 req/s (docs/serving.md).
    ray_serve_throughput_optimized: bool = True

    # rtml itself.
    rtml_topics: Topics = Field(default_factory=Topics)
    rtml_state_dir: Path = Field(
        default_factory=lambda: _default_home("XDG_STATE_HOME", ".local/state")
    )
    rtml_cache_dir: Path = Field(default_factory=lambda: _default_home("XDG_CACHE_HOME", ".cache"))
    rtml_max_record_bytes: int = Field(default=64 * 1024, ge=256)
    rtml_features: FeatureConfig = Field(default_factory=FeatureConfig)
    # Complex event pattern rules of the fraud pipeline (YAML, docs/patterns.md); the default
    # is the versioned set shipped in features/patterns/rules.yaml.
    rtml_pattern_rules: Path = DEFAULT_RULES_PATH
    # Publish every computed fraud feature row to the fraud-features topic (the feature log).
    rtml_emit_feature_rows: bool = False
    # exactly_once: outputs, state and offsets in one Kafka transaction (the default; needs a
    # broker with transactions). at_least_once: for brokers without them; a crash may repeat
    # outputs, as identical duplicates.
    rtml_delivery: Literal["exactly_once", "at_least_once"] = "exactly_once"
    # Exactly once with keyed state, the input offset a batch covers travels in its changelog
    # transaction (the truth a restarted partition resumes from); the consumer group's
    # committed offset, which lag monitoring reads, is then advisory and committed this often
    # (and when a member stops). Seconds.
    rtml_group_offset_commit_interval_s: float = Field(default=1.0, gt=0.0, le=300.0)
    # Records per poll batch of a consumer, at most: one batch is one model call and one
    # transaction per input partition. Batches only fill up when the consumer is behind;
    # bigger ones spread each transaction's fixed cost over more records (the fraud drain here:
    # 10,000 -> 31,600 and 34,600 tx/s against 25,500 and 26,300 with 5,000, docs/benchmarks.md)
    # for more memory and a longer cycle while catching up.
    rtml_max_poll_records: int = Field(default=10_000, ge=1, le=1_000_000)
    # Commit a batch while the next one is polled and processed (a record waits about
    # max(process, commit) per cycle instead of their sum, given a spare core); false (the
    # default): commit before the next poll. On 2 shared cores overlapping was slower (the two
    # compete for the CPU; docs/benchmarks.md).
    rtml_overlap_commits: bool = False
    # Begin a batch's transactions before it is processed, adding the partitions they will
    # most likely write (the changelog's, and those the last transaction wrote), so the broker
    # records them meanwhile and the commit is one produce and the EndTxn (one round trip
    # less). Without overlapped commits only; consumers/partition_session.py.
    rtml_begin_transactions_ahead: bool = True
    # Keep taking fetched records while a batch is processed and committed, so the fetcher
    # always has a fetch outstanding (aiokafka fetches nothing while its buffer holds records);
    # false: poll once per cycle, and a record can wait a cycle more (consumers/runner.py).
    rtml_prefetch: bool = True
    # Python's full garbage collections scan every container object: with 100k cards of state
    # (1.6M objects) one takes ~0.4 s, and they recur as the state grows, stalling the loop (at
    # 1M cards for longer than the group's session timeout). With rtml_gc_freeze the runner
    # collects what the batches left and then freezes the heap, so collections never scan the
    # state; false leaves Python's collector as it is.
    rtml_gc_freeze: bool = True
    # With rtml_gc_freeze, also unfreeze and run a full collection between batches every this
    # many seconds (cyclic garbage among frozen objects; the state itself is freed by reference
    # counting). It blocks the loop ~0.4 s per 100k cards: keep it off (0) with large state.
    rtml_gc_full_collection_s: float = Field(default=0.0, ge=0.0)
    # With rtml_gc_freeze, Python's automatic collections are off in the consume loop and the
    # runner collects (then freezes) at the end of a turn of its loop (a batch, an idle poll, a
    # recovery) at most this often: 0 every turn.
    # Cyclic garbage (asyncio's, aiokafka's) waits at most this long to be freed.
    rtml_gc_collect_interval_s: float = Field(default=1.0, ge=0.0)
    # Score transactions with the FraudScorer deployment of the Serve app ``rtml_serve_app``.
    rtml_fraud_scoring: bool = True
    rtml_fraud_alert_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    rtml_serve_app: str = "rtml"
    # Refresh a user's top-K (Recommender deployment) on activity, at most once per interval.
    rtml_recommend_on_activity: bool = True
    rtml_recommend_k: int = Field(default=20, ge=1, le=1000)
    rtml_recommend_interval_s: float = Field(default=5.0, ge=0.0)
    rtml_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Scale-out: the consumer autoscaler and where consumer actors run.
    rtml_autoscale: AutoscaleSettings = Field(default_factory=AutoscaleSettings)
    rtml_placement: PlacementSettings = Field(default_factory=PlacementSettings)
    # The database loop (docs/database.md): `rtml infra up` also starts (or checks) PostgreSQL
    # and Kafka Connect and registers the users CDC connector. Off by default: the core stack
    # needs neither.
    rtml_cdc: bool = False
    rtml_cdc_connector: str = Field(default="rtml-users", pattern=r"^[a-z0-9_-]{1,48}$")
    # The analysts' case page (`rtml cases serve`).
    rtml_cases_host: str = "127.0.0.1"
    rtml_cases_port: int = Field(default=8001, gt=0, lt=65536)

    # The HTTP API's key: None leaves it open. Clients send it as ``X-API-Key`` or
    # ``Authorization: Bearer``. From the environment (RTML_API_KEY) or a file
    # (RTML_API_KEY_FILE), never from the Serve config, so it is not written to disk by rtml.
    rtml_api_key: SecretStr | None = None
    rtml_api_key_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        """``X_file`` fills secret ``X`` with the file's content (trailing newline stripped)
        when ``X`` itself is not set: secrets come from the environment or from files."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for secret in _SECRET_FILES:
            path = data.get(f"{secret}_file")
            if path and data.get(secret) is None:
                try:
                    merged[secret] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise ValueError(f"{secret}_file: cannot read {path}: {exc.strerror}") from None
        return merged

    # The in-process alert rules' thresholds and timings (`rtml monitor`, docs/monitoring.md).
    rtml_monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("must name at least one host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} must start with redis://, rediss:// or unix://")
        if urlsplit(value).password:  # the URL shows in reprs and messages: no secrets in it
            raise ValueError(
                "must not hold a password; set REDIS_PASSWORD or REDIS_PASSWORD_FILE instead"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in ("postgresql", "postgres") or not parsed.hostname:
            raise ValueError(f"{value!r} must be postgresql://user@host:port/database")
        if not parsed.path.strip("/") or not parsed.username:
            raise ValueError(f"{value!r} must name a user and a database")
        return value

    @field_validator("kafka_connect_url")
    @classmethod
    def _check_connect_url(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{value!r} must be http://host:port")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_sasl(self) -> Settings:
        sasl = (self.kafka_sasl_mechanism, self.kafka_sasl_username, self.kafka_sasl_password)
        if self.kafka_security_protocol.startswith("SASL_") and not all(sasl):
            raise ValueError(
                f"kafka_security_protocol={self.kafka_security_protocol} needs "
                "kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    # Derived locations of the local stack.
    @property
    def kafka_data_dir(self) -> Path:
        return self.rtml_state_dir / "kafka"

    @property
    def redis_data_dir(self) -> Path:
        return self.rtml_state_dir / "redis"

    @property
    def kafka_libs_dir(self) -> Path:
        return self.rtml_cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    @property
    def kafka_is_managed(self) -> bool:
        """True when the local stack runs the broker (`rtml infra up` starts and stops it)."""
        if self.kafka_managed is not None:
            return self.kafka_managed
        servers = self.kafka_bootstrap_servers.split(",")
        return len(servers) == 1 and servers[0].rpartition(":")[0] in _LOOPBACK

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap_servers.split(",")[0].rpartition(":")[2])

    @property
    def redis_is_managed(self) -> bool:
        if self.redis_managed is not None:
            return self.redis_managed
        parsed = urlsplit(self.redis_url)
        return parsed.scheme == "redis" and parsed.hostname in _LOOPBACK

    @property
    def redis_port(self) -> int:
        return urlsplit(self.redis_url).port or 6379

    @property
    def database_is_managed(self) -> bool:
        if self.database_managed is not None:
            return self.database_managed
        return urlsplit(self.database_url).hostname in _LOOPBACK

    @property
    def database_port(self) -> int:
        return urlsplit(self.database_url).port or 5432

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.strip("/")

    @property
    def database_user(self) -> str:
        return urlsplit(self.database_url).username or ""

    @property
    def database_host(self) -> str:
        return urlsplit(self.database_url).hostname or ""

    @property
    def postgres_data_dir(self) -> Path:
        return self.rtml_state_dir / "postgres"

    @property
    def kafka_connect_is_managed(self) -> bool:
        if self.kafka_connect_managed is not None:
            return self.kafka_connect_managed
        parsed = urlsplit(self.kafka_connect_url)
        return parsed.scheme == "http" and parsed.hostname in _LOOPBACK

    @property
    def kafka_connect_port(self) -> int:
        return urlsplit(self.kafka_connect_url).port or 8083

    @property
    def kafka_connect_data_dir(self) -> Path:
        return self.rtml_state_dir / "connect"

    @property
    def kafka_connect_libs_dir(self) -> Path:
        return self.rtml_cache_dir / f"kafka-connect-{KAFKA_VERSION}" / "libs"

    @property
    def debezium_plugin_dir(self) -> Path:
        """Connect's ``plugin.path``: one folder per plugin below it."""
        return self.rtml_cache_dir / f"debezium-{DEBEZIUM_VERSION}" / "plugins"

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments shared by every aiokafka client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
            "client_id": self.kafka_client_id,
            "request_timeout_ms": self.kafka_request_timeout_ms,
        }
        if self.kafka_security_protocol.startswith("SASL_"):
            assert self.kafka_sasl_password is not None  # checked by _check_sasl
            kwargs |= {
                "sasl_mechanism": self.kafka_sasl_mechanism,
                "sasl_plain_username": self.kafka_sasl_username,
                "sasl_plain_password": self.kafka_sasl_password.get_secret_value(),
            }
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
                certfile=str(self.kafka_ssl_certfile) if self.kafka_ssl_certfile else None,
                keyfile=str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
            )
        return kwargs

    def redis_client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.redis_password is not None:
            kwargs["password"] = self.redis_password.get_secret_value()
        if self.redis_ssl_ca_certs is not None:
            kwargs["ssl_ca_certs"] = str(self.redis_ssl_ca_certs)
        return kwargs


def _config_file() -> Path | None:
    explicit = os.environ.get("RTML_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"RTML_CONFIG={explicit} does not exist")
        return path
    local = Path("rtml.toml")
    return local if local.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build the process's settings; raises ``rtml.errors.ConfigError`` with every problem."""
    from pydantic import ValidationError

    from rtml.errors import ConfigError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
