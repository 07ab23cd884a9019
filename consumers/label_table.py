"""The fraud-labels topic in memory: the merchant-risk side of the fraud features.

Labels are keyed by merchant, transactions by card, so every fraud actor keeps all labels, like
the profile table (a GlobalKTable): read from the beginning to the end offsets before the first
batch (read_committed), then followed in the background. Because a label counts only for
transactions at least the label delay (event time) after its decision (features/merchant_risk),
what an actor computes does not depend on when it read a label, as long as it read it within
the delay: the staleness bound is the time from a decision to the actors (the outbox relay's
interval plus the follower's poll, about two seconds), against a delay of days. A restored or
restarted actor reads the whole topic again before processing, so its features are the ones
the crashed actor computed: the state is exactly-once by construction.

Invalid label records are counted and skipped (rtml's case service writes this topic; nothing
else should).
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import ConsumerRecord

from consumers.topic_follower import TopicFollower
from contracts.codec import EventDecoder
from contracts.events import FraudLabel
from features.merchant_risk import MerchantRisk
from rtml.errors import InvalidEvent
from rtml.settings import Settings


class LabelTable(TopicFollower):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.rtml_topics.fraud_labels.name)
        self._decoder = EventDecoder(FraudLabel, max_bytes=settings.rtml_max_record_bytes)
        self.risk = MerchantRisk(settings.rtml_features.label_delay_ms)
        self.invalid = 0

    def apply(self, records: Iterable[ConsumerRecord]) -> None:
        add = self.risk.add
        for record in records:
            try:
                add(self._decoder.decode(record.value).event)
            except InvalidEvent:
                self.invalid += 1
