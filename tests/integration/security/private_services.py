"""A private Kafka broker with a listener configuration of the test's choosing (SASL, TLS),
a TLS certificate authority, and the Kafka round trip the security tests check."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

from consumers.kafka_io import make_consumer, make_producer
from infra import kafka_broker, processes
from infra.topics import ensure_topics
from rtml.settings import Settings, TopicSpec


def launch_broker(plain: Settings, listeners: dict[str, str], *format_args: str) -> int:
    """Start a broker for ``plain``'s ports and state dir with ``listeners`` overriding its
    PLAINTEXT listener properties; ``format_args`` go to the storage format (``--add-scram``).
    Returns its pid (not yet answering)."""
    paths = kafka_broker.BrokerPaths.of(plain)
    kafka_broker.ensure_jars(plain)
    kafka_broker.write_config(plain, paths)
    properties = kafka_broker.broker_properties(plain, paths) | listeners
    paths.config.write_text(kafka_broker.render_properties(properties))
    paths.cluster_id.write_text(kafka_broker.new_cluster_id() + "\n")
    command = kafka_broker.java_command(
        plain,
        paths,
        kafka_broker.STORAGE_TOOL,
        "format",
        "--config",
        str(paths.config),
        "--cluster-id",
        paths.cluster_id.read_text().strip(),
        *format_args,
        heap=kafka_broker.TOOL_HEAP,
    )
    formatted = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert formatted.returncode == 0, formatted.stderr + formatted.stdout
    return processes.start_detached(
        kafka_broker.java_command(plain, paths, kafka_broker.MAIN_CLASS, str(paths.config)),
        log_path=paths.stdout_log,
        pid_file=paths.pid_file,
        cwd=paths.home,
    )


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost: (ca.pem, server.pem, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    san = directory / "san.ext"
    san.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca), "-days", "1", "-subj", "/CN=rtml test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(san))  # fmt: skip
    return ca, cert, key


async def kafka_round_trip(settings: Settings) -> None:
    """Create a topic, write one record in a transaction, read it back in a consumer group."""
    topic = TopicSpec(name=f"secured-{uuid.uuid4().hex[:6]}", partitions=1)
    await ensure_topics(settings, [topic])
    producer = make_producer(settings, transactional_id=f"secured-{uuid.uuid4().hex[:6]}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic.name, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = make_consumer(settings, topic.name, group_id=f"secured-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            batch: dict = {}
            while not batch:
                batch = await consumer.getmany(timeout_ms=500)
        assert [r.value for rs in batch.values() for r in rs] == [b"hello"]
    finally:
        await consumer.stop()
