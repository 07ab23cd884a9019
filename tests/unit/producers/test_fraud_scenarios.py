"""Fraud labels: where they point, how many there are, and what each scenario looks like."""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import defaultdict
from dataclasses import replace
from statistics import median

import msgspec
import pytest

from contracts.events import Transaction
from producers.config import SCENARIOS
from producers.fraud_scenarios import FAR_KM, FraudLabel
from producers.geography import haversine_km
from producers.records import Stream


@pytest.fixture(scope="module")
def fraud_world(make_stream, test_config):
    """A week of transactions only (no sessions: faster), enough scenarios for statistics."""
    config = replace(test_config, users=5_000, sessions_per_user_day=0.0, merchants=3_000)
    generated = make_stream(config, days=7)
    txns: dict[str, Transaction] = {t.event_id: t for t in generated.valid(Stream.TRANSACTIONS)}
    labels = [msgspec.json.decode(r.label, type=FraudLabel) for r in generated.records if r.label]
    homes: dict[str, tuple[list[int], list[tuple[float, float]]]] = defaultdict(lambda: ([], []))
    for p in generated.valid(Stream.USER_PROFILES):
        homes[p.user_id][0].append(p.updated_at)
        homes[p.user_id][1].append((p.home_lat, p.home_lon))
    return generated, txns, labels, homes


def _home(homes, user_id: str, time: int) -> tuple[float, float] | None:
    """The home of the user's latest valid profile before ``time`` (None: none was valid)."""
    times, places = homes[user_id]
    i = bisect_right(times, time) - 1
    return places[i] if i >= 0 else None


def test_every_label_points_at_its_valid_transaction(fraud_world) -> None:
    generated, txns, labels, _ = fraud_world
    assert labels
    for label in labels:
        txn = txns[label.event_id]
        assert (label.card_id, label.user_id, label.event_time) == (
            txn.card_id,
            txn.user_id,
            txn.event_time,
        )
        assert label.label == 1 and label.scenario in SCENARIOS
    assert len({label.event_id for label in labels}) == len(labels)
    # The truth stays out of the events.
    assert not any(b"scenario" in (r.value or b"") for r in generated.records)


def test_fraud_share_is_the_configured_rate(fraud_world) -> None:
    generated, txns, labels, _ = fraud_world
    assert len(labels) / len(txns) == pytest.approx(generated.config.fraud_rate, rel=0.3)
    by_scenario = {s: sum(label.scenario == s for label in labels) for s in SCENARIOS}
    assert all(count > 50 for count in by_scenario.values()), by_scenario


def _instances(fraud_world, scenario: str) -> list[list[Transaction]]:
    """The transactions of each instance of ``scenario``, except those the window's end cut."""
    generated, txns, labels, _ = fraud_world
    groups: dict[str, list[Transaction]] = defaultdict(list)
    for label in labels:
        if label.scenario == scenario:
            groups[label.scenario_id].append(txns[label.event_id])
    cutoff = generated.generator.end_ms - 12 * 3_600_000
    return [
        sorted(g, key=lambda t: t.event_time)
        for g in groups.values()
        if min(t.event_time for t in g) < cutoff
    ]


def test_card_testing_is_a_burst_of_small_amounts(fraud_world) -> None:
    instances = _instances(fraud_world, "card_testing")
    assert len(instances) > 10
    for txns in instances:
        small = [t for t in txns if t.amount <= 5.0]
        assert len(small) >= 3 and len(small) >= len(txns) - 1  # maybe one cash-out at the end
        gaps = [b.event_time - a.event_time for a, b in itertools.pairwise(small)]
        assert median(gaps) <= 10 * 60_000
        assert len({t.card_id for t in txns}) == 1
    online = sum(t.channel == "online" for txns in instances for t in txns)
    assert online / sum(map(len, instances)) > 0.6


def test_account_takeover_jumps_far_from_home_and_spends_big(fraud_world) -> None:
    _, all_txns, _, homes = fraud_world
    instances = _instances(fraud_world, "account_takeover")
    assert len(instances) > 10
    usual: dict[str, list[float]] = defaultdict(list)
    for t in all_txns.values():
        usual[t.user_id].append(t.amount)
    big = 0
    for txns in instances:
        for t in txns:
            home = _home(homes, t.user_id, t.event_time)
            assert home is None or haversine_km(t.lat, t.lon, *home) > FAR_KM * 0.9
        big += max(t.amount for t in txns) > 3 * median(usual[txns[0].user_id])
    assert big / len(instances) > 0.8


def test_merchant_spree_hits_many_shops_quickly(fraud_world) -> None:
    instances = _instances(fraud_world, "merchant_spree")
    assert len(instances) > 10
    for txns in instances:
        assert len(txns) >= 8
        assert len({t.merchant_id for t in txns}) >= 8
        assert txns[-1].event_time - txns[0].event_time < 8 * 3_600_000
        assert all(t.channel == "pos" for t in txns)


def test_legit_noise_resembles_fraud(fraud_world) -> None:
    """Trips put legit payments far from home; bursts put several small online amounts, or
    several shops, within minutes: features alone cannot separate fraud perfectly."""
    _, txns, labels, homes = fraud_world
    fraud = {label.event_id for label in labels}
    legit = [t for t in txns.values() if t.event_id not in fraud]
    homes_then = [_home(homes, t.user_id, t.event_time) for t in legit]
    far = sum(
        home is not None and haversine_km(t.lat, t.lon, *home) > FAR_KM
        for t, home in zip(legit, homes_then, strict=True)
    )
    assert far > sum(label.scenario == "account_takeover" for label in labels)

    by_card: dict[str, list[Transaction]] = defaultdict(list)
    for t in legit:
        by_card[t.card_id].append(t)
    small_bursts = shop_bursts = 0
    for card_txns in by_card.values():
        card_txns.sort(key=lambda t: t.event_time)
        for i in range(len(card_txns) - 2):
            window = card_txns[i : i + 3]
            span = window[-1].event_time - window[0].event_time
            small_bursts += span < 10 * 60_000 and all(t.amount < 10 for t in window)
            shop_bursts += span < 2 * 3_600_000 and len({t.merchant_id for t in window}) == 3
    assert small_bursts > 20 and shop_bursts > 20
