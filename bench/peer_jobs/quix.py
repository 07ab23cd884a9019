"""The fraud velocity features in Quix Streams: a stateful function per card.

The per-event sliding windows of the definitions (``(t - W, t]`` around each transaction, for
1 min, 5 min, 1 h and 24 h, plus the previous transaction) are no tumbling or hopping window,
so the features are a stateful ``apply``: the card's recent transactions live in Quix's state
(RocksDB, with its changelog topic), read and written per event, keyed by the message key
(``card_id``). Quix's defaults otherwise: at-least-once, a checkpoint every 5 s.
"""

from __future__ import annotations

import logging
from typing import Any

from quixstreams import Application, State, message_context

from bench.peer_jobs.common import check, dead_letter, features, parse_args
from bench.reference_features import new_state


def _with_features(tx: dict[str, Any], state: State) -> dict[str, Any]:
    card = state.get("card") or new_state()
    out = features(card, tx)
    state.set("card", card)
    return out


def _dead_letter(error: str) -> dict[str, Any]:
    ctx = message_context()
    return dead_letter(ctx.partition, ctx.offset, error)


def main() -> None:
    args = parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel=logging.WARNING,
    )
    source = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    output = app.topic(args.output, key_serializer="bytes", value_serializer="json")
    dead = app.topic(args.dead_letter, key_serializer="bytes", value_serializer="json")
    checked = app.dataframe(source).apply(check)
    checked.filter(lambda v: isinstance(v, str)).apply(_dead_letter).to_topic(dead)
    valid = checked.filter(lambda v: isinstance(v, dict))
    valid.apply(_with_features, stateful=True).to_topic(output)
    app.run()


if __name__ == "__main__":
    main()
