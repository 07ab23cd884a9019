"""Security on real services: the local stack listens on 127.0.0.1 only; rtml's clients
authenticate to a private broker that requires SASL/SCRAM-SHA-256 and to a private
redis-server with requirepass, with the passwords read from files; a wrong password is a clear,
non-retriable error that does not echo the secret."""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from infra import kafka_broker, processes, redis_server
from infra.probes import probe_kafka, probe_redis
from rtml.errors import ServiceError
from rtml.settings import Settings, load_settings
from store.online import OnlineStore
from tests.integration.security.private_services import kafka_round_trip, launch_broker

KAFKA_PASSWORD = "scram-" + uuid.uuid4().hex
REDIS_PASSWORD = "redis-" + uuid.uuid4().hex
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex


def listening_addresses(pid: int) -> set[str]:
    """``ip:port`` of every TCP socket ``pid`` listens on (Linux procfs)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            host_hex, port_hex = local.split(":")
            # Little-endian 32-bit words; an IPv4-mapped IPv6 address (Java) is its IPv4 one.
            raw = b"".join(bytes.fromhex(host_hex[i : i + 8])[::-1] for i in range(0, width, 8))
            ip = ipaddress.ip_address(raw)
            mapped = getattr(ip, "ipv4_mapped", None)
            host = str(mapped or ip)
            addresses.add(f"{host}:{int(port_hex, 16)}")
    return addresses


def test_the_local_stack_listens_on_loopback_only(stack_settings: Settings) -> None:
    if not (stack_settings.kafka_is_managed and stack_settings.redis_is_managed):
        pytest.skip("an external service: not ours to check")
    kafka = kafka_broker.running_pid(stack_settings)
    redis = redis_server.running_pid(stack_settings)
    assert kafka is not None and redis is not None
    kafka_addresses = listening_addresses(kafka)
    assert kafka_addresses == {
        f"127.0.0.1:{stack_settings.kafka_port}",
        f"127.0.0.1:{stack_settings.kafka_controller_port}",
    }
    assert listening_addresses(redis) == {f"127.0.0.1:{stack_settings.redis_port}"}


# --- a private SASL/SCRAM broker and a redis-server with requirepass --------------------------


def sasl_properties(port: int, controller: int) -> dict[str, str]:
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="admin" password="{ADMIN_PASSWORD}";'
    )
    return {
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-256",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": jaas,
    }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Client settings for a private SASL_PLAINTEXT broker and a password-protected Redis."""
    if os.environ.get("RTML_TEST_KAFKA") or os.environ.get("RTML_TEST_REDIS"):
        pytest.skip("needs to start its own broker and redis-server")
    home = tmp_path_factory.mktemp("rtml-secured")
    (home / "kafka.secret").write_text(KAFKA_PASSWORD + "\n")
    (home / "redis.secret").write_text(REDIS_PASSWORD + "\n")
    port, controller, redis_port = (processes.free_port() for _ in range(3))
    plain = load_settings(
        rtml_state_dir=home,
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        kafka_controller_port=controller,
        kafka_managed=True,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        redis_managed=True,
        redis_password_file=home / "redis.secret",
    )
    settings = plain.model_copy(
        update={
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "SCRAM-SHA-256",
            "kafka_sasl_username": "rtml",
            "kafka_sasl_password": load_settings(
                kafka_sasl_password_file=home / "kafka.secret"
            ).kafka_sasl_password,
        }
    )
    scram = [
        f"SCRAM-SHA-256=[name=admin,password={ADMIN_PASSWORD}]",
        f"SCRAM-SHA-256=[name=rtml,password={KAFKA_PASSWORD}]",
    ]
    pid = launch_broker(
        plain,
        sasl_properties(port, controller),
        *(arg for user in scram for arg in ("--add-scram", user)),
    )
    try:
        redis_server.start(plain, timeout_s=30.0)
        kafka_broker.wait_ready(settings, pid, timeout_s=120.0)
        yield settings
    finally:
        processes.stop_process(pid, timeout_s=20.0)
        redis_server.stop(plain, timeout_s=10.0)


async def test_clients_authenticate_with_scram_and_a_wrong_password_is_refused(
    secured: Settings,
) -> None:
    cluster = await probe_kafka(secured, timeout_s=20.0)
    assert cluster["brokers"]
    await kafka_round_trip(secured)

    wrong = secured.model_copy(update={"kafka_sasl_password": SecretStr("not-the-password")})
    with pytest.raises(ServiceError) as refused:
        await probe_kafka(wrong, timeout_s=20.0)
    assert not refused.value.retriable
    assert "not-the-password" not in str(refused.value)
    assert KAFKA_PASSWORD not in str(refused.value)

    plaintext = secured.model_copy(
        update={"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": None}
    )
    with pytest.raises(ServiceError):  # the SASL listener does not speak PLAINTEXT
        await probe_kafka(plaintext, timeout_s=5.0)


async def test_redis_requires_its_password_from_the_file(secured: Settings) -> None:
    info = await probe_redis(secured)
    assert info["tcp_port"] == secured.redis_port
    store = OnlineStore.from_settings(secured, namespace=f"secured:{uuid.uuid4().hex[:6]}")
    try:
        await store.write("fraud", [("card-1", 1_000, b'{"v": 1}')])
        [row] = await store.read("fraud", ["card-1"])
        assert row is not None
    finally:
        await store.close()

    for password in (None, "not-the-password"):
        wrong = secured.model_copy(update={"redis_password": password and SecretStr(password)})
        with pytest.raises(ServiceError) as refused:
            await probe_redis(wrong)
        assert not refused.value.retriable
        assert REDIS_PASSWORD not in str(refused.value)
