"""A small generated stream shared by the producer tests (built once per session)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from contracts.codec import EventDecoder
from contracts.events import Transaction, UserEvent, UserProfile
from producers.config import DAY_MS, GeneratorConfig
from producers.records import Record, Stream
from producers.stream import EventGenerator

START_MS = 1_700_006_400_000  # a midnight UTC

# More of every defect than the defaults, so a small stream has plenty of each.
TEST_CONFIG = GeneratorConfig(
    seed=42,
    users=1_500,
    merchants=1_500,
    items=2_000,
    fraud_rate=0.01,
    profile_update_rate=0.05,
    profile_delete_rate=0.01,
    out_of_order_fraction=0.05,
    late_fraction=0.01,
    malformed_fraction=0.02,
)
DAYS = 4

DECODERS = {
    Stream.TRANSACTIONS: EventDecoder(Transaction),
    Stream.USER_EVENTS: EventDecoder(UserEvent),
    Stream.USER_PROFILES: EventDecoder(UserProfile),
}


@dataclass
class Generated:
    config: GeneratorConfig
    generator: EventGenerator
    records: list[Record]

    def valid(self, stream: Stream) -> list:
        """Decoded valid events of ``stream`` in emission order (tombstones skipped)."""
        decoder = DECODERS[stream]
        return [
            decoder.decode(r.value).event
            for r in self.records
            if r.stream is stream and r.defect is None and r.value is not None
        ]


def generate(config: GeneratorConfig = TEST_CONFIG, days: float = DAYS) -> Generated:
    generator = EventGenerator(config, start_ms=START_MS, end_ms=START_MS + int(days * DAY_MS))
    return Generated(config, generator, list(generator))


@pytest.fixture(scope="session")
def generated() -> Generated:
    return generate()


@pytest.fixture(scope="session")
def make_stream():
    """``make_stream(config=TEST_CONFIG, days=DAYS) -> Generated``."""
    return generate


@pytest.fixture(scope="session")
def test_config() -> GeneratorConfig:
    return TEST_CONFIG
