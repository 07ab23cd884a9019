"""The local stack: the Kafka broker and Redis a developer or a test session runs.

    rtml infra up | down | status      (infra.cli)

Modules, from the processes up:

    processes       pid files, detached starts, liveness, stops, port probes (sync)
    probes          one bounded "does it answer?" for Kafka and Redis (async)
    kafka_broker    Apache Kafka 4.4 in KRaft mode: jars via Maven (pom.xml), storage format,
                    server.properties, start/stop/wait (log4j2.properties: its logging)
    redis_server    redis-server with AOF: redis.conf, start/stop/wait
    topics          ensure_topics (idempotent creation), describe_topics (end offsets),
                    read_topic (everything up to the end offsets) (async)
    stack           up / down / status of the whole, returning data (sync)
    cli             the `rtml infra` subcommand, printing that data

Other packages and tests call ``infra.topics.ensure_topics(settings, specs)``; the test stack
fixtures live in ``tests/integration/conftest.py``.
"""
