"""Every record honours its contract, except the malformed ones, which fail as intended."""

from __future__ import annotations

from collections import Counter

import msgspec
import numpy as np
import pytest

from contracts.codec import REASONS, EventDecoder
from contracts.events import Transaction, UserEvent, UserProfile
from producers.config import GeneratorConfig
from producers.corruption import DEFECTS, REASON, Corruptor
from producers.records import Stream
from rtml.errors import InvalidEvent

EVENT_TYPES = {
    Stream.TRANSACTIONS: Transaction,
    Stream.USER_EVENTS: UserEvent,
    Stream.USER_PROFILES: UserProfile,
}


def _reason(stream: Stream, value: bytes | None, max_bytes: int) -> str | None:
    try:
        decoded = EventDecoder(EVENT_TYPES[stream], max_bytes=max_bytes).decode(value)
    except InvalidEvent as exc:
        return exc.reason
    assert decoded.unknown_fields == ()
    return None


def test_every_record_decodes_or_fails_with_its_defect(generated) -> None:
    max_bytes = generated.config.max_record_bytes
    decoders = {s: EventDecoder(t, max_bytes=max_bytes) for s, t in EVENT_TYPES.items()}
    failures = Counter()
    for record in generated.records:
        if record.stream is Stream.USER_PROFILES and record.value is None:
            assert record.defect is None  # a tombstone is valid on the compacted topic
            continue
        try:
            decoded = decoders[record.stream].decode(record.value)
        except InvalidEvent as exc:
            assert exc.reason == record.defect, (record, exc)
            failures[(record.stream, exc.reason)] += 1
            continue
        assert record.defect is None, record
        assert decoded.unknown_fields == ()
        event = decoded.event
        key = event.card_id if record.stream is Stream.TRANSACTIONS else event.user_id
        assert record.key == key
        time = event.updated_at if record.stream is Stream.USER_PROFILES else event.event_time
        assert record.event_time == time
    # Every reason the generator can produce shows up for every stream it applies to.
    for defect in DEFECTS:
        for stream in defect.streams:
            assert failures[(stream, defect.reason)] > 0, (stream, defect.name)


def test_malformed_share_is_the_configured_fraction(generated) -> None:
    broken = sum(r.defect is not None for r in generated.records)
    share = broken / len(generated.records)
    assert share == pytest.approx(generated.config.malformed_fraction, rel=0.15)


def test_fraud_is_never_malformed(generated) -> None:
    assert not any(r.label is not None and r.defect is not None for r in generated.records)


def test_defect_reasons_are_dead_letter_reasons() -> None:
    assert set(REASON.values()) <= set(REASONS)


@pytest.mark.parametrize(("defect", "stream"), [(d.name, s) for d in DEFECTS for s in d.streams])
def test_each_defect_fails_with_its_reason(defect: str, stream: Stream) -> None:
    """Many draws of each defect on a real value: always the advertised reason."""
    config = GeneratorConfig(max_record_bytes=1024)
    corruptor = Corruptor(config, np.random.SeedSequence(1))
    value = _sample(stream)
    assert _reason(stream, value, config.max_record_bytes) is None
    for _ in range(200):
        broken = corruptor.corrupt(value, stream, defect)
        assert _reason(stream, broken, config.max_record_bytes) == REASON[defect], broken


def _sample(stream: Stream) -> bytes:
    event: msgspec.Struct
    if stream is Stream.TRANSACTIONS:
        event = Transaction(
            "tx-1",
            "c01",
            "u01",
            "m01",
            "grocery",
            12.5,
            "USD",
            -33.9,
            151.2,
            1_700_000_000_000,
            "pos",
        )
    elif stream is Stream.USER_EVENTS:
        event = UserEvent("ue-1", "u01", "i0042", "books", "view", 1_700_000_000_000)
    else:
        event = UserProfile("u01", 51.5, -0.12, 1200, "standard", 1_700_000_000_000)
    return msgspec.json.encode(event)
