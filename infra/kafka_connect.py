"""The local Kafka Connect worker and the users CDC connector (Debezium PostgreSQL).

Started by ``rtml infra up`` when ``rtml_cdc`` is on: one worker in distributed mode (its
config, offsets and status live in compacted topics on the rtml broker, so the connector and its
position survive restarts), REST API on loopback. ``register_users_connector`` then PUTs the
connector's config: idempotent (create or update), for a managed or an external worker.

The connector streams ``public.users`` into the user-profiles topic in the contract's shape
(``contracts.events.UserProfile``) with stock single message transforms only:

- ``ExtractNewRecordState`` (Debezium) turns the change envelope into the row after the change;
  a DELETE becomes a tombstone, a real Kafka null value (``delete.tombstone.handling.mode=
  delete-to-tombstone``; the ``tombstone`` mode keeps a value schema, so the JSON converter
  writes the text ``null``, which is no tombstone, and ``drop`` drops both);
- ``ExtractField$Key`` makes the key the plain ``user_id`` (a string, as rtml's producers write);
- ``RegexRouter`` sends every record to the user-profiles topic;
- the JSON converter without schemas writes the row as the contract's JSON object (the users
  columns are the contract's fields; ``schema_version`` takes its default).

Files, under ``settings.kafka_connect_data_dir`` (``<rtml_state_dir>/connect``)::

    worker.properties  connect.pid  logs/server.log  logs/stdout.log
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from infra import kafka_broker, maven, processes
from rtml.errors import ConfigError, ServiceError, ServiceUnavailable
from rtml.settings import KAFKA_VERSION, Settings

log = logging.getLogger(__name__)

SERVICE = "kafka-connect"
LISTEN_HOST = "127.0.0.1"
MAIN_CLASS = "org.apache.kafka.connect.cli.ConnectDistributed"
RUNTIME_JAR = f"connect-runtime-{KAFKA_VERSION}.jar"
DEBEZIUM_JAR = "debezium-connector-postgres-{version}.jar"
PLUGIN_NAME = "debezium-postgres"
CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
JVM_HEAP = ("-Xms128m", "-Xmx512m")
GROUP_ID = "rtml-connect"


@dataclass(frozen=True)
class ConnectPaths:
    home: Path

    @classmethod
    def of(cls, settings: Settings) -> ConnectPaths:
        return cls(settings.kafka_connect_data_dir)

    @property
    def config(self) -> Path:
        return self.home / "worker.properties"

    @property
    def log4j_config(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def pid_file(self) -> Path:
        return self.home / "connect.pid"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.logs / "stdout.log"

    @property
    def lock(self) -> Path:
        return self.home / ".lock"


# --- configuration (pure) ----------------------------------------------------------------------


def check_managed(settings: Settings) -> None:
    host = settings.kafka_connect_url.split("://", 1)[1].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost"):
        raise ConfigError(
            f"the local Kafka Connect worker listens on {LISTEN_HOST} only, so "
            f"kafka_connect_url must name 127.0.0.1 or localhost, not {host!r}; set "
            "KAFKA_CONNECT_MANAGED=false to use yours"
        )
    if not settings.kafka_is_managed and settings.kafka_security_protocol != "PLAINTEXT":
        raise ConfigError(
            "the local Kafka Connect worker speaks PLAINTEXT to Kafka only; run Connect beside "
            "your cluster and set KAFKA_CONNECT_URL (KAFKA_CONNECT_MANAGED=false)"
        )


def worker_properties(settings: Settings) -> dict[str, str]:
    """The worker's properties: distributed mode, internal topics on the rtml broker."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": GROUP_ID,
        "config.storage.topic": f"{GROUP_ID}-configs",
        "offset.storage.topic": f"{GROUP_ID}-offsets",
        "status.storage.topic": f"{GROUP_ID}-status",
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        "offset.storage.partitions": "5",
        "status.storage.partitions": "1",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        # Source offsets (the replication slot's confirmed LSN) are flushed every second.
        "offset.flush.interval.ms": "1000",
        "listeners": f"http://{LISTEN_HOST}:{settings.kafka_connect_port}",
        "rest.advertised.host.name": LISTEN_HOST,
        "rest.advertised.port": str(settings.kafka_connect_port),
        "plugin.path": str(settings.debezium_plugin_dir),
        # Plugins declare themselves in META-INF/services: no slow classpath scan at start.
        "plugin.discovery": "service_load",
        "scheduled.rebalance.max.delay.ms": "0",
    }


def users_connector_config(settings: Settings) -> dict[str, str]:
    """The Debezium connector that streams ``public.users`` into user-profiles."""
    slot = settings.rtml_cdc_connector.replace("-", "_")
    config = {
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": settings.database_host,
        "database.port": str(settings.database_port),
        "database.user": settings.database_user,
        "database.dbname": settings.database_name,
        "topic.prefix": settings.rtml_cdc_connector,
        "table.include.list": "public.users",
        "slot.name": slot,
        "publication.name": slot,
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "initial",
        "tombstones.on.delete": "true",
        "decimal.handling.mode": "double",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "transforms": "unwrap,key,route",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "transforms.unwrap.delete.tombstone.handling.mode": "delete-to-tombstone",
        "transforms.key.type": "org.apache.kafka.connect.transforms.ExtractField$Key",
        "transforms.key.field": "user_id",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": ".*",
        "transforms.route.replacement": settings.rtml_topics.user_profiles.name,
    }
    if settings.database_password is not None:
        config["database.password"] = settings.database_password.get_secret_value()
    return config


# --- jars --------------------------------------------------------------------------------------


def ensure_jars(settings: Settings) -> None:
    """The worker's jars and the Debezium plugin, from Maven Central once."""
    from rtml.settings import DEBEZIUM_VERSION

    for pom, libs, expect in (
        ("connect-pom.xml", settings.kafka_connect_libs_dir, RUNTIME_JAR),
        (
            "debezium-pom.xml",
            settings.debezium_plugin_dir / PLUGIN_NAME,
            DEBEZIUM_JAR.format(version=DEBEZIUM_VERSION),
        ),
    ):
        maven.ensure_jars(maven.pom_text(pom), libs, expect=expect, what=f"the jars of {pom}")


# --- process -----------------------------------------------------------------------------------


def write_config(settings: Settings, paths: ConnectPaths) -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    header = "Generated by `rtml infra up` from the rtml settings; edits are overwritten."
    paths.config.write_text(
        kafka_broker.render_properties(worker_properties(settings), header), encoding="utf-8"
    )
    log4j = resources.files("infra").joinpath("log4j2.properties").read_text(encoding="utf-8")
    paths.log4j_config.write_text(log4j, encoding="utf-8")


def _command(settings: Settings, paths: ConnectPaths) -> list[str]:
    return [
        kafka_broker._java_executable(),
        *JVM_HEAP,
        *kafka_broker.JVM_OPTS,
        f"-Dlog4j2.configurationFile={paths.log4j_config}",
        f"-Drtml.kafka.log.dir={paths.logs}",
        "-cp",
        f"{settings.kafka_connect_libs_dir}/*",
        MAIN_CLASS,
        str(paths.config),
    ]


def running_pid(settings: Settings) -> int | None:
    paths = ConnectPaths.of(settings)
    return processes.live_pid(paths.pid_file, (MAIN_CLASS, str(paths.config)))


def ensure_launched(settings: Settings) -> tuple[int, bool]:
    """Launch our worker unless it runs: ``(pid, started_now)``; does not wait for it."""
    check_managed(settings)
    paths = ConnectPaths.of(settings)
    paths.home.mkdir(parents=True, exist_ok=True)
    with processes.file_lock(paths.lock):
        pid = running_pid(settings)
        if pid is not None:
            running = kafka_broker.parse_properties(paths.config.read_text(encoding="utf-8"))
            if running != worker_properties(settings):
                raise ServiceError(
                    SERVICE,
                    f"the worker running from {paths.home} (pid {pid}) was started with other "
                    "settings; run `rtml infra down` first, then `up`",
                )
            return pid, False
        if processes.port_in_use(LISTEN_HOST, settings.kafka_connect_port):
            raise ServiceError(
                SERVICE,
                f"{LISTEN_HOST}:{settings.kafka_connect_port} is already in use by a process "
                "rtml did not start here; choose another port in KAFKA_CONNECT_URL or set "
                "KAFKA_CONNECT_MANAGED=false to use that worker",
            )
        kafka_broker.check_java()
        ensure_jars(settings)
        write_config(settings, paths)
        try:
            pid = processes.start_detached(
                _command(settings, paths),
                log_path=paths.stdout_log,
                pid_file=paths.pid_file,
                cwd=paths.home,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(SERVICE, f"could not start the worker: {exc}") from exc
        log.info("started Kafka Connect pid %d on %s", pid, settings.kafka_connect_url)
        return pid, True


# --- REST --------------------------------------------------------------------------------------


def _request(
    settings: Settings, method: str, path: str, body: Any = None, *, timeout_s: float = 10.0
) -> tuple[int, Any]:
    """One REST call: ``(status, decoded JSON or None)``; ServiceUnavailable when unreachable."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        settings.kafka_connect_url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(SERVICE, f"{settings.kafka_connect_url}: {exc}") from exc
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def answers(settings: Settings, *, timeout_s: float = 5.0) -> str | None:
    """None when the worker's REST API answers and has joined its group, else why not."""
    if not _accepts(settings):
        return "nothing accepts connections there"
    try:
        status, body = _request(settings, "GET", "/connectors", timeout_s=timeout_s)
    except ServiceUnavailable as exc:
        return str(exc).removeprefix(f"{SERVICE}: ")
    # 503/404 while the worker is still starting (joining the group, reading its config topic).
    return None if status == 200 else f"HTTP {status}: {body}"


def _accepts(settings: Settings) -> bool:
    rest = settings.kafka_connect_url.split("://", 1)[1]
    host_port = processes.parse_host_port(rest.split("/", 1)[0])
    return processes.port_accepts(host_port.host, host_port.port, 1.0)


def wait_ready(settings: Settings, pid: int | None, timeout_s: float) -> None:
    paths = ConnectPaths.of(settings)
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        if pid is not None and not processes.pid_alive(pid):
            processes.remove_pid(paths.pid_file)
            raise ServiceError(
                SERVICE,
                f"the worker exited during startup; last lines of {paths.server_log}:\n"
                + processes.tail(paths.stdout_log, 5)
                + "\n"
                + processes.tail(paths.server_log, 15),
            )
        problem = answers(settings)
        if problem is None:
            return
        last = problem
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(
                SERVICE,
                f"Kafka Connect did not answer at {settings.kafka_connect_url} within "
                f"{timeout_s:.0f} s ({last})",
            )
        time.sleep(0.5)


def register_users_connector(settings: Settings, *, timeout_s: float = 60.0) -> bool:
    """Create or update the users connector (PUT is idempotent); True when its config changed.

    Retries while the worker is still rebalancing (409) or forwarding to a leader it has not
    found yet; a config the worker rejects (400) is a ServiceError with its message.
    """
    name = quote(settings.rtml_cdc_connector, safe="")
    config = users_connector_config(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = _request(settings, "GET", f"/connectors/{name}/config")
        if status == 200 and isinstance(body, dict):
            body.pop("name", None)  # the worker adds the connector's name
            if body == config:
                return False
        status, body = _request(settings, "PUT", f"/connectors/{name}/config", config)
        if status in (200, 201):
            log.info("connector %s registered on %s", name, settings.kafka_connect_url)
            return True
        if status not in (409, 500, 503) or time.monotonic() >= deadline:
            message = body.get("message", body) if isinstance(body, dict) else body
            raise ServiceError(SERVICE, f"registering connector {name}: HTTP {status}: {message}")
        time.sleep(1.0)


def connector_state(settings: Settings) -> tuple[str, list[str]]:
    """The connector's state and its tasks' states (``("RUNNING", ["RUNNING"])``), or
    ``("MISSING", [])``."""
    state, tasks, _ = _status(settings)
    return state, tasks


def _status(settings: Settings) -> tuple[str, list[str], str]:
    name = quote(settings.rtml_cdc_connector, safe="")
    status, body = _request(settings, "GET", f"/connectors/{name}/status")
    if status == 404:
        return "MISSING", [], ""
    if status != 200 or not isinstance(body, dict):
        return f"HTTP {status}", [], ""
    tasks = body.get("tasks", [])
    traces = [t.get("trace", "") for t in tasks if t.get("state") == "FAILED"]
    traces.append(body.get("connector", {}).get("trace", ""))
    state = body.get("connector", {}).get("state", "?")
    return state, [t.get("state", "?") for t in tasks], "\n".join(t for t in traces if t)


def wait_connector_running(settings: Settings, timeout_s: float = 60.0) -> None:
    """Poll until the connector and its task run; ServiceError with the trace if one failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        state, tasks, trace = _status(settings)
        if state == "RUNNING" and tasks and all(task == "RUNNING" for task in tasks):
            return
        if state == "FAILED" or "FAILED" in tasks:
            first = trace.strip().splitlines()[:3]
            raise ServiceError(
                SERVICE, f"connector {settings.rtml_cdc_connector} failed: {' | '.join(first)}"
            )
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(
                SERVICE,
                f"connector {settings.rtml_cdc_connector} is {state} (tasks {tasks}) after "
                f"{timeout_s:.0f} s",
            )
        time.sleep(0.5)


def stop(settings: Settings, *, timeout_s: float = 30.0) -> int | None:
    paths = ConnectPaths.of(settings)
    if not paths.pid_file.exists():
        return None
    with processes.file_lock(paths.lock):
        pid = running_pid(settings)
        if pid is None:
            return None
        log.info("stopping Kafka Connect pid %d", pid)
        try:
            processes.stop_process(pid, timeout_s=timeout_s)
        except OSError as exc:
            raise ServiceError(SERVICE, f"could not stop the worker: {exc}") from exc
        processes.remove_pid(paths.pid_file)
        return pid
