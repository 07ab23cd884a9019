"""The local PostgreSQL: the distribution's server binaries, one cluster under the state dir.

Started by ``rtml infra up`` when ``rtml_cdc`` is on and ``database_url`` is a loopback address.
``initdb`` once (trust authentication, loopback TCP only, no Unix socket), then ``postgres``
detached with ``wal_level=logical`` so the Debezium connector can stream the users table.
``ensure_database`` then creates the database of ``database_url`` and applies the schema
(``database/schema.py``); that step runs for an external database too.

PostgreSQL refuses to run as root. As root (CI containers) the server runs as the ``postgres``
system user the Debian package creates, with CAP_DAC_READ_SEARCH so it can reach a data dir
below root's private state dir (pytest's temp dirs are mode 0700).

Files, all under ``settings.postgres_data_dir`` (``<rtml_state_dir>/postgres``)::

    data/           the cluster (PG_VERSION, postgresql.conf, ...)
    postgres.pid    our pid file; postgres.log its output
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from database.connection import connect
from database.schema import apply_schema
from infra import processes
from rtml.errors import ConfigError, ServiceError, ServiceUnavailable
from rtml.settings import Settings

log = logging.getLogger(__name__)

SERVICE = "postgres"
LISTEN_HOST = "127.0.0.1"
SYSTEM_USER = "postgres"


@dataclass(frozen=True)
class PostgresPaths:
    home: Path

    @classmethod
    def of(cls, settings: Settings) -> PostgresPaths:
        return cls(settings.postgres_data_dir)

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "postgres.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def lock(self) -> Path:
        return self.home / ".lock"


def server_options(settings: Settings) -> dict[str, str]:
    """``-c`` options of the server: loopback TCP only, logical decoding for CDC."""
    return {
        "listen_addresses": LISTEN_HOST,
        "port": str(settings.database_port),
        "unix_socket_directories": "",
        "wal_level": "logical",
        "max_wal_senders": "8",
        "max_replication_slots": "8",
        "max_connections": "50",
        "shared_buffers": "64MB",
    }


def check_managed(settings: Settings) -> None:
    host = settings.database_host
    if host not in ("127.0.0.1", "localhost"):
        raise ConfigError(
            f"the local PostgreSQL listens on {LISTEN_HOST} only, so database_url must name "
            f"127.0.0.1 or localhost, not {host!r}; set DATABASE_MANAGED=false to use yours"
        )


def bin_dir() -> Path:
    """Where ``postgres`` and ``initdb`` are: PATH, else the newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("postgres")
    if on_path is not None and shutil.which("initdb") is not None:
        return Path(on_path).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not versions:
        raise ServiceError(
            SERVICE,
            "PostgreSQL's server binaries were not found (on PATH or in /usr/lib/postgresql); "
            "install them (apt-get install -y postgresql) or point DATABASE_URL at a server",
        )
    return versions[-1].parent


def _as_server_user(command: list[str]) -> list[str]:
    """``command`` run as the ``postgres`` user when we are root (see the module docstring)."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ServiceError(SERVICE, "as root, setpriv (util-linux) is needed to run postgres")
    return [
        setpriv,
        f"--reuid={SYSTEM_USER}",
        f"--regid={SYSTEM_USER}",
        "--init-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
        "--",
        *command,
    ]


def _prepare_data_dir(paths: PostgresPaths) -> None:
    paths.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SYSTEM_USER)
        except KeyError as exc:
            raise ServiceError(
                SERVICE, f"running as root needs the {SYSTEM_USER!r} system user (apt postgresql)"
            ) from exc
        os.chown(paths.data, user.pw_uid, user.pw_gid)
    paths.data.chmod(0o700)


def is_initialized(paths: PostgresPaths) -> bool:
    return (paths.data / "PG_VERSION").is_file()


def initdb(settings: Settings, paths: PostgresPaths) -> None:
    """Create the cluster once: superuser = the user of database_url, trust auth (loopback)."""
    if is_initialized(paths):
        return
    _prepare_data_dir(paths)
    command = _as_server_user(
        [
            str(bin_dir() / "initdb"),
            "-D",
            str(paths.data),
            "-U",
            settings.database_user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
    )
    log.info("initializing PostgreSQL in %s", paths.data)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(SERVICE, f"initdb in {paths.data} failed: {exc}") from exc
    if result.returncode != 0 or not is_initialized(paths):
        lines = (result.stderr + result.stdout).strip().splitlines()
        raise ServiceError(SERVICE, f"initdb in {paths.data} failed: {lines[-1] if lines else '?'}")


def _server_command(settings: Settings, paths: PostgresPaths) -> list[str]:
    options = [f"--{key}={value}" for key, value in server_options(settings).items()]
    return _as_server_user([str(bin_dir() / "postgres"), "-D", str(paths.data), *options])


def running_pid(settings: Settings) -> int | None:
    paths = PostgresPaths.of(settings)
    return processes.live_pid(paths.pid_file, ("postgres", str(paths.data)))


def ensure_launched(settings: Settings) -> tuple[int, bool]:
    """Launch our server unless it runs: ``(pid, started_now)``; does not wait for it."""
    check_managed(settings)
    paths = PostgresPaths.of(settings)
    paths.home.mkdir(parents=True, exist_ok=True)
    with processes.file_lock(paths.lock):
        pid = running_pid(settings)
        if pid is not None:
            return pid, False
        if processes.port_in_use(LISTEN_HOST, settings.database_port):
            raise ServiceError(
                SERVICE,
                f"{LISTEN_HOST}:{settings.database_port} is already in use by a process rtml "
                "did not start here; choose another port in DATABASE_URL or set "
                "DATABASE_MANAGED=false to use that server",
            )
        initdb(settings, paths)
        try:
            pid = processes.start_detached(
                _server_command(settings, paths),
                log_path=paths.log_file,
                pid_file=paths.pid_file,
                cwd=paths.home,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(SERVICE, f"could not start postgres: {exc}") from exc
        log.info("started PostgreSQL pid %d on port %d", pid, settings.database_port)
        return pid, True


def wait_ready(settings: Settings, pid: int | None, timeout_s: float) -> None:
    """Poll until the server accepts a connection to its maintenance database."""
    paths = PostgresPaths.of(settings)
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        if pid is not None and not processes.pid_alive(pid):
            processes.remove_pid(paths.pid_file)
            raise ServiceError(
                SERVICE,
                f"postgres exited during startup; last lines of {paths.log_file}:\n"
                + processes.tail(paths.log_file, 10),
            )
        problem = answers(settings, timeout_s=max(0.5, min(5.0, deadline - time.monotonic())))
        if problem is None:
            return
        last = problem
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(
                SERVICE,
                f"no PostgreSQL answered at {settings.database_host}:{settings.database_port} "
                f"within {timeout_s:.0f} s ({last})",
            )
        time.sleep(0.2)


def answers(settings: Settings, *, timeout_s: float = 5.0) -> str | None:
    """None when the server accepts a connection, else why not."""
    if not processes.port_accepts(settings.database_host, settings.database_port, 1.0):
        return "nothing accepts connections there"

    async def probe() -> None:
        connection = await connect(settings, database="postgres", timeout_s=timeout_s)
        await connection.close()

    try:
        asyncio.run(probe())
    except ServiceUnavailable as exc:
        return str(exc).removeprefix(f"{SERVICE}: ")
    return None


def ensure_database(settings: Settings) -> bool:
    """Create the database of ``database_url`` if missing, and apply the schema.

    Returns True when the database was created now.
    """

    async def run() -> bool:
        created = False
        admin = await connect(settings, database="postgres")
        try:
            exists = await admin.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", settings.database_name
            )
            if not exists:
                name = settings.database_name.replace('"', '""')
                await admin.execute(f'CREATE DATABASE "{name}"')
                created = True
        finally:
            await admin.close()
        connection = await connect(settings)
        try:
            await apply_schema(connection)
        finally:
            await connection.close()
        return created

    return asyncio.run(run())


def stop(settings: Settings, *, timeout_s: float = 30.0) -> int | None:
    """Stop our server (SIGTERM: smart shutdown is too polite for a replication client, so
    SIGINT = fast shutdown). Returns the pid stopped, None when none ran. Idempotent."""
    import signal

    paths = PostgresPaths.of(settings)
    if not paths.pid_file.exists():
        return None
    with processes.file_lock(paths.lock):
        pid = running_pid(settings)
        if pid is None:
            return None
        log.info("stopping PostgreSQL pid %d", pid)
        try:
            processes.stop_process(pid, timeout_s=timeout_s, sig=signal.SIGINT)
        except OSError as exc:
            raise ServiceError(SERVICE, f"could not stop postgres: {exc}") from exc
        processes.remove_pid(paths.pid_file)
        return pid
