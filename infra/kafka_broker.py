"""The local Kafka broker: Apache Kafka 4.4 in KRaft mode, one combined broker+controller node.

Lifecycle (synchronous; the ``rtml infra`` commands call it):

1. ``ensure_jars``: the broker's jars, copied from Maven Central by ``mvn`` (``infra/pom.xml``)
   into ``settings.kafka_libs_dir`` once; a marker file holding the pom's hash says the copy is
   complete, so later starts download nothing.
2. ``format_storage``: ``kafka.tools.StorageTool format`` once, with a cluster id kept in the
   state dir; the data dir then keeps every record across restarts.
3. ``launch``: ``java kafka.Kafka server.properties`` detached, with a pid file and its output
   appended to a log file; ``wait_ready`` polls until it answers metadata requests.

Files, all under ``settings.kafka_data_dir`` (``<rtml_state_dir>/kafka``)::

    server.properties  log4j2.properties  cluster.id  kafka.pid
    data/              the log dirs (topic partitions, KRaft metadata log)
    logs/server.log    the broker's log; logs/stdout.log its stdout and stderr
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from infra import maven, processes
from infra.probes import probe_kafka
from rtml.errors import ConfigError, ServiceError, ServiceUnavailable
from rtml.settings import KAFKA_VERSION, Settings

log = logging.getLogger(__name__)

SERVICE = "kafka"
LISTEN_HOST = "127.0.0.1"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
BROKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
MIN_JAVA = 17
JVM_HEAP = ("-Xms256m", "-Xmx1g")
TOOL_HEAP = ("-Xmx256m",)
# As Kafka's own kafka-server-start.sh, with a heap sized for a laptop or a 2-core dev box.
JVM_OPTS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


@dataclass(frozen=True)
class BrokerPaths:
    """Where the local broker keeps its files (one place for every path)."""

    home: Path

    @classmethod
    def of(cls, settings: Settings) -> BrokerPaths:
        return cls(settings.kafka_data_dir)

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def config(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def cluster_id(self) -> Path:
        return self.home / "cluster.id"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

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
    """Raise ConfigError where settings ask for a local broker it cannot be."""
    if settings.kafka_security_protocol != "PLAINTEXT":
        raise ConfigError(
            f"the local Kafka broker speaks PLAINTEXT only, but kafka_security_protocol is "
            f"{settings.kafka_security_protocol}; set KAFKA_MANAGED=false to use your cluster"
        )
    host = processes.parse_host_port(settings.kafka_bootstrap_servers.split(",")[0]).host
    if host not in ("127.0.0.1", "localhost"):
        raise ConfigError(
            f"the local Kafka broker listens on {LISTEN_HOST} only, so kafka_bootstrap_servers "
            f"must be {LISTEN_HOST}:<port> or localhost:<port>, not "
            f"{settings.kafka_bootstrap_servers!r}"
        )
    if settings.kafka_port == settings.kafka_controller_port:
        raise ConfigError(
            f"kafka_controller_port must differ from the broker port {settings.kafka_port}"
        )


def broker_properties(settings: Settings, paths: BrokerPaths) -> dict[str, str]:
    """The broker's ``server.properties`` as a dict: single node, loopback only."""
    port, cport = settings.kafka_port, settings.kafka_controller_port
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LISTEN_HOST}:{cport}",
        "listeners": f"PLAINTEXT://{LISTEN_HOST}:{port},CONTROLLER://{LISTEN_HOST}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{LISTEN_HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(paths.data),
        # Topics come from settings.rtml_topics (or tests' own); a typo must not make one.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # KIP-890's check that a transactional produce's partition was added to the
        # transaction: aiokafka (no transaction V2) races it after each commit, and the broker
        # answers old clients NOT_ENOUGH_REPLICAS, which aiokafka retries (hundreds a minute,
        # each a retry delay). aiokafka adds partitions before producing to them anyway.
        "transaction.partition.verification.enable": "false",
        # Two cores: fewer threads than the defaults.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
        # Compaction (user-profiles): the cleaner runs, and looks for work every second.
        "log.cleaner.enable": "true",
        "log.cleaner.threads": "1",
        "log.cleaner.backoff.ms": "1000",
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        "log.retention.hours": "168",
        "log.retention.check.interval.ms": "60000",
        "message.max.bytes": str(max(1024 * 1024, settings.rtml_max_record_bytes + 1024)),
        "controlled.shutdown.enable": "true",
    }


def render_properties(properties: dict[str, str], header: str = "") -> str:
    """Java .properties text; backslashes escaped (paths on Windows-like systems stay intact)."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{key}={value.replace(chr(92), chr(92) * 2)}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def parse_properties(text: str) -> dict[str, str]:
    """The inverse of ``render_properties`` for the simple files we write."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        result[key.strip()] = value.strip().replace("\\\\", "\\")
    return result


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as ``Uuid``)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):  # Kafka refuses ids that look like flags
            return cluster_id


def java_command(
    settings: Settings,
    paths: BrokerPaths,
    main_class: str,
    *args: str,
    heap: tuple[str, ...] = JVM_HEAP,
) -> list[str]:
    """The ``java`` command line that runs ``main_class`` from the cached jars."""
    return [
        _java_executable(),
        *heap,
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={paths.log4j_config}",
        f"-Drtml.kafka.log.dir={paths.logs}",
        "-cp",
        f"{settings.kafka_libs_dir}/*",
        main_class,
        *args,
    ]


def parse_java_major(version_output: str) -> int | None:
    """The major version from ``java -version`` output (``"17.0.15"`` -> 17, ``"1.8.0"`` -> 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


# --- java and the jars -------------------------------------------------------------------------


def _java_executable() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError(
            "java",
            f"java is not on PATH; the local Kafka broker needs Java {MIN_JAVA} or newer "
            "(e.g. apt-get install -y openjdk-17-jre-headless)",
        )
    return java


@functools.cache
def check_java() -> int:
    """The major version of ``java`` on PATH; ServiceError when missing or older than 17."""
    java = _java_executable()
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError("java", f"{java} -version failed: {exc}") from exc
    major = parse_java_major(result.stderr + result.stdout)
    if major is None or major < MIN_JAVA:
        raise ServiceError(
            "java",
            f"{java} is Java {major or 'of unknown version'}; the local Kafka broker needs "
            f"Java {MIN_JAVA} or newer",
        )
    return major


POM = "pom.xml"  # the broker's jars (infra/pom.xml), fetched like every JVM service's


def _pom_text() -> str:
    return maven.pom_text(POM)


def jars_ready(settings: Settings) -> bool:
    return maven.jars_ready(settings.kafka_libs_dir, _pom_text())


def ensure_jars(settings: Settings, *, timeout_s: float = 900.0) -> Path:
    """The broker's jars in ``settings.kafka_libs_dir``, downloaded by Maven on the first call."""
    return maven.ensure_jars(
        _pom_text(),
        settings.kafka_libs_dir,
        expect=BROKER_JAR,
        what="the Kafka jars",
        timeout_s=timeout_s,
    )


# --- storage and process -----------------------------------------------------------------------


def write_config(settings: Settings, paths: BrokerPaths) -> None:
    """(Re)write server.properties and log4j2.properties from the settings."""
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    header = "Generated by `rtml infra up` from the rtml settings; edits are overwritten."
    paths.config.write_text(
        render_properties(broker_properties(settings, paths), header), encoding="utf-8"
    )
    log4j = resources.files("infra").joinpath("log4j2.properties").read_text(encoding="utf-8")
    paths.log4j_config.write_text(log4j, encoding="utf-8")


def is_formatted(paths: BrokerPaths) -> bool:
    return (paths.data / "meta.properties").is_file()


def format_storage(settings: Settings, paths: BrokerPaths) -> None:
    """Format the KRaft storage once; a formatted data dir is left alone."""
    if is_formatted(paths):
        return
    if paths.cluster_id.is_file():
        cluster_id = paths.cluster_id.read_text(encoding="ascii").strip()
    else:
        cluster_id = new_cluster_id()
        paths.cluster_id.write_text(cluster_id + "\n", encoding="ascii")
    log.info("formatting Kafka storage in %s (cluster id %s)", paths.data, cluster_id)
    command = java_command(
        settings,
        paths,
        STORAGE_TOOL,
        "format",
        "--config",
        str(paths.config),
        "--cluster-id",
        cluster_id,
        "--ignore-formatted",
        heap=TOOL_HEAP,
    )
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(
            SERVICE, f"formatting the storage in {paths.data} failed: {exc}"
        ) from exc
    if result.returncode != 0 or not is_formatted(paths):
        output = (result.stderr + result.stdout).strip().splitlines()
        raise ServiceError(
            SERVICE,
            f"formatting the storage in {paths.data} failed: {output[-1] if output else '?'}",
        )


def running_pid(settings: Settings) -> int | None:
    """The pid of our broker for these settings if it runs; cleans a stale pid file."""
    paths = BrokerPaths.of(settings)
    return processes.live_pid(paths.pid_file, (MAIN_CLASS, str(paths.config)))


def _check_ports_free(settings: Settings) -> None:
    for what, port in (
        ("broker", settings.kafka_port),
        ("controller", settings.kafka_controller_port),
    ):
        if processes.port_in_use(LISTEN_HOST, port):
            raise ServiceError(
                SERVICE,
                f"{LISTEN_HOST}:{port} (the Kafka {what} port) is already in use by a process "
                "rtml did not start here; stop it, choose another port, or set "
                "KAFKA_MANAGED=false to use a broker that is already running",
            )


def launch(settings: Settings) -> int:
    """Start the broker detached and return its pid (without waiting for it to answer).

    Downloads the jars and formats the storage first when needed.
    """
    check_managed(settings)
    paths = BrokerPaths.of(settings)
    _check_ports_free(settings)
    check_java()
    ensure_jars(settings)
    write_config(settings, paths)
    format_storage(settings, paths)
    command = java_command(settings, paths, MAIN_CLASS, str(paths.config))
    try:
        pid = processes.start_detached(
            command, log_path=paths.stdout_log, pid_file=paths.pid_file, cwd=paths.home
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(SERVICE, f"could not start the broker: {exc}") from exc
    log.info("started Kafka broker pid %d on %s", pid, settings.kafka_bootstrap_servers)
    return pid


def wait_ready(settings: Settings, pid: int | None, timeout_s: float) -> None:
    """Poll until the cluster answers a metadata request; ServiceError if our broker dies,
    ServiceUnavailable on timeout (with the tail of the broker log, for our broker).

    ``pid`` is our broker's (its death ends the wait at once), or None for an external cluster.
    """
    paths = BrokerPaths.of(settings)
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while True:
        if pid is not None and not processes.pid_alive(pid):
            processes.remove_pid(paths.pid_file)
            raise ServiceError(
                SERVICE,
                f"the broker exited during startup{_fatal_reason(paths)}; last lines of "
                f"{paths.server_log}:\n{_log_tails(paths)}",
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tail = f"; last lines of {paths.server_log}:\n{_log_tails(paths)}" if pid else ""
            raise ServiceUnavailable(
                SERVICE,
                f"no broker answered at {settings.kafka_bootstrap_servers} within "
                f"{timeout_s:.0f} s ({last_error}){tail}",
            )
        problem = answers(settings, timeout_s=min(remaining, 10.0))
        if problem is None:
            return
        last_error = problem
        time.sleep(0.2)


def answers(settings: Settings, *, timeout_s: float = 5.0) -> str | None:
    """None when the cluster answers a metadata request, else why not (a short phrase).

    ServiceError (not retriable, e.g. authentication) propagates.
    """
    servers = [processes.parse_host_port(s) for s in settings.kafka_bootstrap_servers.split(",")]
    # A plain TCP check first: aiokafka logs every refused connection as an error.
    connect_timeout = min(1.0, timeout_s / len(servers))
    if not any(processes.port_accepts(s.host, s.port, connect_timeout) for s in servers):
        return "nothing accepts connections there"
    try:
        asyncio.run(probe_kafka(settings, timeout_s=timeout_s))
    except ServiceUnavailable as exc:
        return str(exc).removeprefix(f"{SERVICE}: ")
    return None


_EXCEPTION = re.compile(r"^(?:Caused by: )?[\w.$]+(?:Exception|Error): (.+)$")


def _fatal_reason(paths: BrokerPaths) -> str:
    """``": <message>"`` of the last exception in the broker's logs, or ``""``."""
    lines = processes.tail(paths.server_log, 200) + "\n" + processes.tail(paths.stdout_log, 50)
    reasons = [m.group(1) for m in map(_EXCEPTION.match, lines.splitlines()) if m]
    return f": {reasons[-1]}" if reasons else ""


def _log_tails(paths: BrokerPaths) -> str:
    return processes.tail(paths.stdout_log, 5) + "\n" + processes.tail(paths.server_log, 15)


def ensure_launched(settings: Settings) -> tuple[int, bool]:
    """Launch our broker unless it runs: ``(pid, started_now)``; does not wait for it."""
    paths = BrokerPaths.of(settings)
    with processes.file_lock(paths.lock):
        pid = running_pid(settings)
        if pid is None:
            return launch(settings), True
    running = parse_properties(paths.config.read_text(encoding="utf-8"))
    if running != broker_properties(settings, paths):
        raise ServiceError(
            SERVICE,
            f"the broker running from {paths.home} (pid {pid}) was started with other settings "
            f"(listeners {running.get('listeners')}); run `rtml infra down` first, then `up`",
        )
    return pid, False


def start(settings: Settings, *, timeout_s: float = 60.0) -> tuple[int, bool]:
    """Ensure our broker runs and answers: ``(pid, started_now)``."""
    pid, started = ensure_launched(settings)
    wait_ready(settings, pid, timeout_s)
    return pid, started


def stop(settings: Settings, *, timeout_s: float = 30.0) -> int | None:
    """Stop our broker (SIGTERM: controlled shutdown; SIGKILL after ``timeout_s``).

    Returns the pid it stopped, None when none was running. Idempotent.
    """
    paths = BrokerPaths.of(settings)
    if not paths.pid_file.exists():
        return None
    with processes.file_lock(paths.lock):
        pid = running_pid(settings)
        if pid is None:
            return None
        log.info("stopping Kafka broker pid %d", pid)
        try:
            clean = processes.stop_process(pid, timeout_s=timeout_s)
        except OSError as exc:
            raise ServiceError(SERVICE, f"could not stop the broker: {exc}") from exc
        if not clean:
            log.warning("Kafka broker pid %d was killed; its next start recovers its logs", pid)
        processes.remove_pid(paths.pid_file)
        return pid
