"""The fraud velocity features in Bytewax: ``stateful_map`` keyed by card.

One worker (``run_main``), Kafka in and out through Bytewax's connectors (confluent-kafka),
the card's recent transactions as the step's state. No recovery is configured (Bytewax keeps
state in memory and snapshots it only with a recovery store), so its state is not durable:
a difference in its favour. Runs until the bench stops it.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from bench.peer_jobs.common import check, dead_letter, dumps, features, parse_args
from bench.reference_features import CardState, new_state

Checked = tuple[KafkaSourceMessage, dict[str, Any] | str]


def _check(msg: KafkaSourceMessage) -> Checked:
    return msg, check(msg.value)


def _features(state: CardState | None, tx: dict[str, Any]) -> tuple[CardState, bytes]:
    state = state or new_state()
    return state, dumps(features(state, tx))


def _dead(item: Checked) -> KafkaSinkMessage:
    msg, error = item
    return KafkaSinkMessage(msg.key, dumps(dead_letter(msg.partition, msg.offset, str(error))))


def build(args: Any) -> Dataflow:
    flow = Dataflow("rtml-fraud-features")
    source = op.input("in", flow, KafkaSource([args.bootstrap], [args.input], tail=True))
    checked = op.map("check", source, _check)
    valid = op.branch("valid", checked, lambda item: isinstance(item[1], dict))
    keyed = op.map("key", valid.trues, lambda item: (item[1]["card_id"], item[1]))
    rows = op.stateful_map("features", keyed, _features)
    out = op.map("encode", rows, lambda kv: KafkaSinkMessage(kv[0].encode(), kv[1]))
    op.output("features-out", out, KafkaSink([args.bootstrap], args.output))
    op.output(
        "dead-out",
        op.map("dead", valid.falses, _dead),
        KafkaSink([args.bootstrap], args.dead_letter),
    )
    return flow


def main() -> None:
    run_main(build(parse_args()))


if __name__ == "__main__":
    main()
