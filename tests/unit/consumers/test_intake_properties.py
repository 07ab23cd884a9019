"""Any records into a pipeline's intake: each becomes exactly one valid event or exactly one
dead letter that names its reason and keeps the original bytes; nothing is dropped."""

from __future__ import annotations

import json

import msgspec
from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.pipelines.intake import Intake
from contracts.codec import REASONS, dead_letter_payload
from contracts.events import DeadLetter, Transaction
from rtml.settings import Settings

VALID = json.dumps(
    {
        "event_id": "t-1",
        "card_id": "card-1",
        "user_id": "user-1",
        "merchant_id": "m-1",
        "merchant_category": "grocery",
        "amount": 12.5,
        "currency": "EUR",
        "lat": 52.52,
        "lon": 13.405,
        "event_time": 1_700_000_000_000,
        "channel": "pos",
    }
).encode()

values = st.one_of(
    st.just(VALID),
    st.binary(max_size=400),
    st.none(),
    st.binary(min_size=1, max_size=40).map(lambda b: VALID[:-1] + b),  # corrupted tails
    st.integers(1, len(VALID) - 1).map(lambda n: VALID[:n]),  # truncated
)


def record(offset: int, key: bytes | None, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(
        topic="transactions",
        partition=3,
        offset=offset,
        timestamp=1_700_000_000_000 + offset,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=[],
    )


@settings(max_examples=200, deadline=1_000)
@given(st.lists(st.tuples(st.binary(max_size=20) | st.none(), values), max_size=30))
def test_every_record_is_one_event_or_one_dead_letter(
    items: list[tuple[bytes | None, bytes | None]],
) -> None:
    intake = Intake(Transaction, Settings(rtml_max_record_bytes=256))
    records = [record(i, key, value) for i, (key, value) in enumerate(items)]
    out: list = []
    events, sources = intake.decode(records, out)

    assert len(events) == len(sources)
    assert len(events) + len(out) == len(records)
    letters = [msgspec.json.decode(o.value, type=DeadLetter) for o in out]
    accepted = {s.offset for s in sources}
    rejected = {letter.offset for letter in letters}
    assert accepted.isdisjoint(rejected) and accepted | rejected == set(range(len(records)))
    assert [s.offset for s in sources] == sorted(accepted)  # input order is kept
    for letter, output in zip(letters, out, strict=True):
        assert letter.error.kind in REASONS and letter.error.message
        assert dead_letter_payload(letter) == records[letter.offset].value
        assert (letter.source_topic, letter.partition) == ("transactions", 3)
        assert output.key == b"transactions:3" and output.topic == intake.dead_letters.topic
    assert sum(intake.dead_letters.counts.values()) == len(out)
