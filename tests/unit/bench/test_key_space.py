from __future__ import annotations

import msgspec
import pytest

from bench.key_space import key_space_batches
from contracts.events import Transaction
from producers.records import Stream


def test_every_card_pays_once_in_the_first_pass_then_at_random() -> None:
    cards, count = 1_200, 7_000
    records = [r for batch in key_space_batches(cards, count, span_ms=86_400_000, start_ms=10**12)
               for r in batch]  # fmt: skip
    decoder = msgspec.json.Decoder(Transaction)
    txs = [decoder.decode(r.value or b"") for r in records]
    assert len(records) == count
    assert [r.seq for r in records] == list(range(count))
    pairs = zip(records, txs, strict=True)
    assert all(r.stream is Stream.TRANSACTIONS and r.key == t.card_id for r, t in pairs)
    assert len({t.card_id for t in txs[:cards]}) == cards  # each card exactly once
    assert {t.card_id for t in txs[cards:]} <= {t.card_id for t in txs[:cards]}
    assert len({t.event_id for t in txs}) == count
    times = [t.event_time for t in txs]
    assert times == sorted(times)  # in order: nothing is late
    assert times[0] == 10**12 and times[-1] < 10**12 + 86_400_000


def test_the_key_space_is_reproducible_and_checks_its_sizes() -> None:
    def first(seed: int) -> list[bytes | None]:
        return [
            r.value for r in next(key_space_batches(10, 20, span_ms=1_000, start_ms=0, seed=seed))
        ]

    assert first(1) == first(1) != first(2)
    with pytest.raises(ValueError, match="positive"):
        next(key_space_batches(0, 10, span_ms=1, start_ms=0))
