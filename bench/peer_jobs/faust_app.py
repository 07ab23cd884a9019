"""The fraud velocity features in Faust (faust-streaming): an agent and a table per card.

One worker, one agent (concurrency 1), the card's recent transactions in a ``Table`` (in
memory, with Faust's changelog topic), at least once (Faust's commit every 2.8 s), aiokafka
underneath, ``await topic.send`` per output as Faust's docs do, with a producer linger of
5 ms like the other peers'. The table is keyed by ``card_id``, the input's key, so it is
co-partitioned with the input as Faust requires.
"""

from __future__ import annotations

import logging
import os
import sys

import faust

from bench.peer_jobs.common import check, dead_letter, dumps, features, parse_args
from bench.reference_features import new_state

log = logging.getLogger(__name__)


def build(args) -> faust.App:
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=args.state_dir,
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        processing_guarantee="at_least_once",
        # Faust's default is 0: one produce request per record. 5 ms is librdkafka's default
        # (Quix, Bytewax) and rtml's producer setting.
        producer_linger_ms=5,
    )
    source = app.topic(
        args.input, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    output = app.topic(args.output, key_serializer="raw", value_serializer="raw")
    dead = app.topic(args.dead_letter, key_serializer="raw", value_serializer="raw")
    cards = app.Table("cards", default=None, partitions=args.partitions)  # JSON values

    @app.agent(source)
    async def process(stream):
        # The worker's logging setup leaves aiokafka and Faust at DEBUG, which formats a
        # record per message sent (~10% of the time): quiet them, as a deployment would.
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            async for event in stream.events():
                tx = check(event.value)
                if isinstance(tx, str):
                    message = event.message
                    value = dumps(dead_letter(message.partition, message.offset, tx))
                    await dead.send(key=event.key, value=value)
                    continue
                key = tx["card_id"]
                state = cards.get(key) or new_state()
                row = features(state, tx)
                cards[key] = state
                await output.send(key=event.key, value=dumps(row))
        except Exception:
            # Faust logs a crashed agent and keeps the worker up, idle: exit, so the bench
            # reports the failure instead of waiting for records that never come.
            log.exception("the agent crashed")
            os._exit(1)

    return app


def main() -> None:
    args = parse_args()
    app = build(args)
    logging.basicConfig(level=logging.WARNING)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
