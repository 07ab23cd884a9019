"""TLS on real services: rtml's clients reach a private broker with an SSL listener and a private
redis-server with TLS and requirepass, verifying the servers against the CA from settings; a
client without that CA refuses the connection."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from infra import kafka_broker, processes
from infra.probes import probe_kafka, probe_redis
from rtml.errors import ServiceError
from rtml.settings import Settings, load_settings
from store.online import OnlineStore
from tests.integration.security.private_services import kafka_round_trip, launch_broker, make_ca

REDIS_PASSWORD = "tls-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Tls:
    kafka: Settings  # SSL to the broker, CA from settings
    redis: Settings  # rediss:// with the CA and the password


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    if os.environ.get("RTML_TEST_KAFKA") or os.environ.get("RTML_TEST_REDIS"):
        pytest.skip("needs to start its own broker and redis-server")
    if shutil.which("openssl") is None or shutil.which("redis-server") is None:
        pytest.skip("needs openssl and redis-server")
    home = tmp_path_factory.mktemp("rtml-tls")
    ca, cert, key = make_ca(home / "certs")
    keystore = home / "certs" / "server-keystore.pem"  # Kafka's PEM keystore: key + chain
    keystore.write_text(key.read_text() + cert.read_text())
    port, controller, redis_port = (processes.free_port() for _ in range(3))
    plain = load_settings(
        rtml_state_dir=home,
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        kafka_controller_port=controller,
        kafka_managed=True,
    )
    pid = launch_broker(
        plain,
        {
            "listeners": f"SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"SSL://127.0.0.1:{port}",
            "inter.broker.listener.name": "SSL",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SSL:SSL",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(ca),
            "ssl.client.auth": "none",
        },
    )
    options = {
        "port": "0",  # TLS only
        "tls-port": str(redis_port),
        "bind": "127.0.0.1",
        "tls-cert-file": str(cert),
        "tls-key-file": str(key),
        "tls-ca-cert-file": str(ca),
        "tls-auth-clients": "no",
        "requirepass": REDIS_PASSWORD,
        "save": "",
        "appendonly": "no",
        "dir": str(home),
    }
    redis_args = ["redis-server", *(arg for k, v in options.items() for arg in (f"--{k}", v))]
    redis = subprocess.Popen(
        redis_args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kafka = plain.model_copy(update={"kafka_security_protocol": "SSL", "kafka_ssl_cafile": ca})
    redis_settings = load_settings(
        redis_url=f"rediss://127.0.0.1:{redis_port}/0",
        redis_ssl_ca_certs=ca,
        redis_password=REDIS_PASSWORD,
    )
    try:
        kafka_broker.wait_ready(kafka, pid, timeout_s=120.0)
        assert processes.wait_until(lambda: processes.port_accepts("127.0.0.1", redis_port), 20)
        yield Tls(kafka, redis_settings)
    finally:
        processes.stop_process(pid, timeout_s=20.0)
        redis.terminate()
        redis.wait(timeout=20)


async def test_kafka_clients_speak_tls_and_verify_the_broker(tls: Tls, tmp_path: Path) -> None:
    await kafka_round_trip(tls.kafka)
    other_ca, _, _ = make_ca(tmp_path / "other")
    untrusted = tls.kafka.model_copy(update={"kafka_ssl_cafile": other_ca})
    with pytest.raises(ServiceError):  # the broker's certificate is not signed by this CA
        await probe_kafka(untrusted, timeout_s=5.0)


async def test_redis_over_tls_with_auth(tls: Tls, tmp_path: Path) -> None:
    info = await probe_redis(tls.redis)
    assert info["redis_version"]
    store = OnlineStore.from_settings(tls.redis, namespace=f"tls:{uuid.uuid4().hex[:6]}")
    try:
        await store.write("fraud", [("card-1", 1_000, b'{"v": 1}')])
        [row] = await store.read("fraud", ["card-1"])
        assert row is not None
    finally:
        await store.close()
    other_ca, _, _ = make_ca(tmp_path / "other")
    for settings in (
        tls.redis.model_copy(update={"redis_ssl_ca_certs": other_ca}),
        tls.redis.model_copy(update={"redis_password": SecretStr("wrong")}),
    ):
        with pytest.raises(ServiceError):
            await asyncio.wait_for(probe_redis(settings), 30)
