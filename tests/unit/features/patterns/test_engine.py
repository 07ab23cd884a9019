"""PatternEngine on hand-built sequences: the three shipped rules (matches and near misses, out
of order within the lateness), contiguity, quantifiers, negation, late events, alerts' ids,
bounded state, and restoring the serialized state in the middle of a match."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from contracts.events import Transaction, UserProfile
from features.config import FeatureConfig
from features.definitions import FRAUD, FRAUD_CARD, FRAUD_PATTERNS, HOUR_MS, MINUTE_MS, SECOND_MS
from features.fraud import FraudFeatureEngine
from features.patterns import (
    PatternBatch,
    PatternEngine,
    RuleSet,
    parse_rules,
    shipped_rules,
)
from features.patterns.engine import profile_change_id
from features.patterns.state import PatternStateV1
from features.state import encoder

T0 = 1_700_000_000_000
CONFIG = FeatureConfig()  # allowed lateness 1 h
PARIS = (48.8566, 2.3522)
NEW_YORK = (40.7128, -74.0060)
LONDON = (51.5074, -0.1278)


def tx(
    event_id: str,
    t: int,
    amount: float,
    *,
    place: tuple[float, float] = PARIS,
    card: str = "c1",
    channel: str = "online",
) -> Transaction:
    return Transaction(
        event_id=event_id,
        card_id=card,
        user_id="u-" + card,
        merchant_id="m1",
        merchant_category="electronics",
        amount=amount,
        currency="EUR",
        lat=place[0],
        lon=place[1],
        event_time=T0 + t,
        channel=channel,  # type: ignore[arg-type]
    )


def profile(card: str, home: tuple[float, float], t: int, segment: str = "s") -> UserProfile:
    return UserProfile(
        user_id="u-" + card,
        home_lat=home[0],
        home_lon=home[1],
        account_age_days=100,
        segment=segment,
        updated_at=T0 + t,
    )


class Harness:
    """The fraud engine and the pattern engine on partition 0, as the pipeline runs them."""

    def __init__(
        self, rules: RuleSet | None = None, feature_rules: Sequence[str] | None = None
    ) -> None:
        self.rules = rules if rules is not None else shipped_rules()
        names = feature_rules if feature_rules is not None else [r.name for r in FEATURE_RULES]
        self.feature_rules = tuple(names)
        self.fraud = FraudFeatureEngine(CONFIG)
        self.patterns = PatternEngine(self.rules, CONFIG, feature_rules=self.feature_rules)
        self.fraud.assign(0)
        self.patterns.assign(0)

    def run(
        self, txs: Sequence[Transaction], profiles: dict[str, UserProfile] | None = None
    ) -> PatternBatch:
        table = profiles or {}
        rows = self.fraud.process_batch(0, txs, table).rows
        return self.patterns.process_batch(0, txs, rows, table)

    def one(self, t: Transaction, profiles: dict[str, UserProfile] | None = None) -> dict:
        """The pattern features of one transaction ({} when late), alerts under "matches"."""
        batch = self.run([t], profiles)
        row = batch.rows[0]
        if row is None:
            return {}
        values = row[len(row) - 2 * len(self.feature_rules) :]
        out: dict[str, Any] = {}
        for i, name in enumerate(self.feature_rules):
            out[name] = (values[2 * i], values[2 * i + 1])
        out["matches"] = {m.rule: (m.event_ids, m.matches) for m in batch.matches}
        return out

    def restarted(self) -> Harness:
        """A new pair of engines restored from this one's changelog records."""
        other = Harness(self.rules, self.feature_rules)
        for engine, into in ((self.fraud, other.fraud), (self.patterns, other.patterns)):
            into.restore_partition(0, engine.serialize_partition(0))
            for key in engine.keys(0):
                into.restore(0, key, engine.serialize(0, key))
        return other


FEATURE_RULES = shipped_rules().rules


def test_rows_are_the_card_then_the_pattern_features() -> None:
    h = Harness()
    row = h.run([tx("a", 0, 10.0)]).rows[0]
    names = FRAUD_CARD.names + FRAUD_PATTERNS.names
    assert row is not None and len(row) == len(names)
    assert FRAUD.names[: len(names)] == names  # the merchant risk follows (append_merchant_risk)
    features = dict(zip(names, row, strict=True))
    assert features["amount"] == 10.0
    assert features["pattern_card_testing_matched"] == 0
    assert features["pattern_card_testing_count"] == 0


# -- card testing: 3+ under 2.00, then one over 200.00, within 10 minutes ---------------------


def test_card_testing_matches_and_alerts_with_the_events() -> None:
    h = Harness()
    for i, amount in enumerate([1.0, 1.99, 0.5]):
        assert h.one(tx(f"p{i}", i * MINUTE_MS, amount))["card_testing"] == (0, 0)
    out = h.one(tx("big", 3 * MINUTE_MS, 250.0))
    assert out["card_testing"] == (1, 1)
    assert out["matches"]["card_testing"] == (("p0", "p1", "p2", "big"), 1)
    # The match stays in the flag while it is within 10 minutes of a later transaction...
    assert h.one(tx("later", 12 * MINUTE_MS, 20.0))["card_testing"] == (1, 1)
    # ...and leaves it after: (t - 10 min, t] no longer holds its end.
    assert h.one(tx("much-later", 13 * MINUTE_MS + 1, 20.0))["card_testing"] == (0, 0)


def test_card_testing_counts_one_match_per_starting_probe() -> None:
    h = Harness()
    for i in range(5):
        h.one(tx(f"p{i}", i * SECOND_MS, 1.0))
    out = h.one(tx("big", 10 * SECOND_MS, 900.0))
    # Runs from p0, p1 and p2 have >= 3 probes; the alert names the earliest (longest) one.
    assert out["card_testing"] == (1, 3)
    assert out["matches"]["card_testing"] == (("p0", "p1", "p2", "p3", "p4", "big"), 3)


@pytest.mark.parametrize(
    ("amounts", "last_at"),
    [
        ([1.0, 1.0], 3 * MINUTE_MS),  # only two probes
        ([1.0, 2.0, 1.0], 3 * MINUTE_MS),  # 2.00 is not under 2.00
        ([1.0, 1.0, 1.0], 10 * MINUTE_MS + 1),  # first probe to cashout: over 10 minutes
    ],
)
def test_card_testing_near_misses(amounts: list[float], last_at: int) -> None:
    h = Harness()
    for i, amount in enumerate(amounts):
        h.one(tx(f"p{i}", i, amount))
    out = h.one(tx("big", last_at, 250.0))
    assert out["card_testing"] == (0, 0)
    assert "card_testing" not in out["matches"]


def test_card_testing_exactly_at_the_bounds() -> None:
    h = Harness()
    for i in range(3):
        h.one(tx(f"p{i}", i, 1.0))
    assert h.one(tx("200", 5, 200.0))["card_testing"] == (0, 0)  # not over 200.00
    assert h.one(tx("ok", 10 * MINUTE_MS, 200.01))["card_testing"] == (1, 1)  # within: <=


def test_card_testing_cashout_before_the_probes_does_not_match() -> None:
    h = Harness()
    h.one(tx("big", 0, 250.0))
    for i in range(3):
        out = h.one(tx(f"p{i}", (i + 1) * SECOND_MS, 1.0))
    assert out["card_testing"] == (0, 0)


def test_other_cards_do_not_mix() -> None:
    h = Harness()
    for i in range(3):
        h.one(tx(f"p{i}", i, 1.0, card="c1"))
    assert h.one(tx("big", 5, 250.0, card="c2"))["card_testing"] == (0, 0)


def test_cards_without_runs_share_empty_ones_and_a_match_stays_on_its_card() -> None:
    """A new card allocates no list per rule (they are shared empty tuples until it gets a run
    or a match); the card that gets some has its own, and after a restore too."""
    h = Harness()
    h.one(tx("quiet", 0, 50.0, card="c0"))
    for i in range(3):
        h.one(tx(f"p{i}", i, 1.0, card="c1"))
    assert h.one(tx("big", 5, 250.0, card="c1"))["card_testing"] == (1, 1)
    h.one(tx("quiet2", 6, 50.0, card="c2"))
    keys = h.patterns._partition(0).keys
    quiet, busy, other = keys["c0"], keys["c1"], keys["c2"]
    assert quiet.done is other.done and all(d == () for d in quiet.done)
    # Impossible travel starts a run at every transaction; the other rules have none here.
    assert [type(r) for r in quiet.runs] == [tuple, list, tuple] and quiet.runs[0] == ()
    assert isinstance(busy.done, list) and busy.done is not quiet.done
    assert h.one(tx("quiet3", 7, 50.0, card="c0"))["card_testing"] == (0, 0)
    assert h.restarted().patterns._partition(0).keys["c0"].done is quiet.done
    assert h.restarted().one(tx("big2", 8, 250.0, card="c1"))["card_testing"] == (1, 1)


def test_a_cards_runs_stay_the_same_list_from_event_to_event() -> None:
    """Impossible travel keeps a live run on every card: it is updated in place, not a new
    list per event for the garbage collector; a rule whose runs all die shares the empty
    tuple again."""
    h = Harness()
    h.one(tx("a", 0, 1.0, card="c1"))
    state = h.patterns._partition(0).keys["c1"]
    travel, probes = state.runs[1], state.runs[0]
    assert isinstance(travel, list) and isinstance(probes, list)  # a probe started card testing
    h.one(tx("b", MINUTE_MS, 50.0, card="c1"))
    assert state.runs[1] is travel and [run[3] for run in travel] == [("b",)]
    h.one(tx("c", 20 * MINUTE_MS, 50.0, card="c1"))  # the probe's run is past its 10 minutes
    assert state.runs[1] is travel and state.runs[0] == ()


# -- out of order (within the allowed lateness) ------------------------------------------------


def test_an_out_of_order_probe_sees_only_its_past_and_later_events_see_the_match() -> None:
    h = Harness()
    h.one(tx("p0", 0, 1.0))
    h.one(tx("p1", 1 * MINUTE_MS, 1.0))
    assert h.one(tx("big", 4 * MINUTE_MS, 250.0))["card_testing"] == (0, 0)  # 2 probes so far
    # p2 happened before the cashout but arrives after it: its own past has no cashout.
    out = h.one(tx("p2", 2 * MINUTE_MS, 1.0))
    assert out["card_testing"] == (0, 0) and out["matches"] == {}
    # A later event sees the match (p0, p1, p2, big) in event-time order.
    assert h.one(tx("next", 5 * MINUTE_MS, 30.0))["card_testing"] == (1, 1)


def test_an_out_of_order_cashout_completes_the_match_itself() -> None:
    h = Harness()
    for i in range(3):
        h.one(tx(f"p{i}", i * MINUTE_MS, 1.0))
    h.one(tx("x", 20 * MINUTE_MS, 30.0))
    out = h.one(tx("big", 5 * MINUTE_MS, 250.0))  # 15 minutes late, within the hour
    assert out["card_testing"] == (1, 1)
    assert out["matches"]["card_testing"] == (("p0", "p1", "p2", "big"), 1)
    # At 20 min + 1 ms the match (ending at 5 min) is older than 10 minutes.
    assert h.one(tx("y", 20 * MINUTE_MS + 1, 30.0))["card_testing"] == (0, 0)


def test_arrival_order_within_the_lateness_does_not_change_later_features() -> None:
    events = [tx(f"p{i}", i * MINUTE_MS, 1.0) for i in range(4)] + [tx("big", 6 * MINUTE_MS, 300)]
    orders = [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [1, 4, 0, 3, 2], [2, 0, 4, 1, 3]]
    finals = []
    for order in orders:
        h = Harness()
        for i in order:
            h.one(events[i])
        finals.append(h.one(tx("probe", 7 * MINUTE_MS, 50.0))["card_testing"])
    assert finals == [(1, 2)] * len(orders)  # runs from p0 and p1 have >= 3 probes


def test_late_events_are_not_processed() -> None:
    h = Harness()
    h.one(tx("now", 2 * HOUR_MS, 5.0))
    assert h.one(tx("old", HOUR_MS - 1, 1.0)) == {}  # below the watermark
    assert h.patterns.serialize(0, "c1") is not None


# -- impossible travel: consecutive transactions faster than 900 km/h -------------------------


def test_impossible_travel() -> None:
    h = Harness()
    h.one(tx("paris", 0, 20.0, place=PARIS))
    out = h.one(tx("nyc", HOUR_MS, 20.0, place=NEW_YORK))  # ~5,800 km in an hour
    assert out["impossible_travel"] == (1, 1)
    assert out["matches"]["impossible_travel"] == (("paris", "nyc"), 1)


def test_impossible_travel_near_misses() -> None:
    h = Harness()
    h.one(tx("paris", 0, 20.0, place=PARIS))
    # Paris -> London is ~344 km: 30 minutes is ~690 km/h.
    assert h.one(tx("london", 30 * MINUTE_MS, 20.0, place=LONDON))["impossible_travel"] == (0, 0)
    # Paris -> New York in 7 hours: ~830 km/h, and beyond the 6 h within anyway.
    h2 = Harness()
    h2.one(tx("paris", 0, 20.0, place=PARIS))
    assert h2.one(tx("nyc", 7 * HOUR_MS, 20.0, place=NEW_YORK))["impossible_travel"] == (0, 0)


def test_impossible_travel_out_of_order_uses_each_events_own_speed() -> None:
    h = Harness()
    h.one(tx("paris", 0, 20.0, place=PARIS))
    h.one(tx("paris2", 2 * HOUR_MS, 20.0, place=PARIS))
    # New York at 1 h arrives last: its previous transaction (Paris at 0) is 1 h before.
    out = h.one(tx("nyc", HOUR_MS, 20.0, place=NEW_YORK))
    assert out["impossible_travel"] == (1, 1)
    assert out["matches"]["impossible_travel"] == (("paris", "nyc"), 1)


# -- account takeover: home location changes, then a transaction over 500.00 within 1 h -------


def test_account_takeover() -> None:
    h = Harness()
    home = {"u-c1": profile("c1", PARIS, 0)}
    assert h.one(tx("a", 10 * MINUTE_MS, 20.0), home)["account_takeover"] == (0, 0)
    moved = {"u-c1": profile("c1", NEW_YORK, 20 * MINUTE_MS)}
    out = h.one(tx("b", 30 * MINUTE_MS, 600.0), moved)
    assert out["account_takeover"] == (1, 1)
    change = profile_change_id("u-c1", T0 + 20 * MINUTE_MS)
    assert out["matches"]["account_takeover"] == ((change, "b"), 1)


@pytest.mark.parametrize(
    ("new_home", "amount", "at", "segment"),
    [
        (NEW_YORK, 500.0, 30 * MINUTE_MS, "s"),  # not over 500.00
        (NEW_YORK, 600.0, 80 * MINUTE_MS + 1, "s"),  # more than 1 h after the change
        (PARIS, 600.0, 30 * MINUTE_MS, "vip"),  # a change, but not of the home
    ],
)
def test_account_takeover_near_misses(
    new_home: tuple[float, float], amount: float, at: int, segment: str
) -> None:
    h = Harness()
    h.one(tx("a", 10 * MINUTE_MS, 20.0), {"u-c1": profile("c1", PARIS, 0)})
    changed = {"u-c1": profile("c1", new_home, 20 * MINUTE_MS, segment)}
    assert h.one(tx("b", at, amount), changed)["account_takeover"] == (0, 0)


def test_account_takeover_needs_a_profile_seen_before() -> None:
    h = Harness()  # the card's first transaction already sees the new home: nothing to compare
    moved = {"u-c1": profile("c1", NEW_YORK, 20 * MINUTE_MS)}
    assert h.one(tx("b", 30 * MINUTE_MS, 600.0), moved)["account_takeover"] == (0, 0)


def test_a_change_seen_after_the_big_transaction_in_event_time_does_not_precede_it() -> None:
    h = Harness()
    h.one(tx("a", 0, 20.0), {"u-c1": profile("c1", PARIS, 0)})
    h.one(tx("big", 10 * MINUTE_MS, 600.0))  # no profile joined (e.g. not loaded yet)
    # The change (at 5 min) is first seen by a small transaction at 20 min: it goes in at 5 min,
    # before "big", so a later event sees the match (change, big).
    moved = {"u-c1": profile("c1", NEW_YORK, 5 * MINUTE_MS)}
    assert h.one(tx("c", 20 * MINUTE_MS, 5.0), moved)["account_takeover"] == (1, 1)


# -- the language's other parts ---------------------------------------------------------------


def custom(text: str) -> Harness:
    import yaml

    rules = parse_rules(yaml.safe_load(text), feature_rules=())
    return Harness(rules, feature_rules=[r.name for r in rules.rules])


STRICT_VS_RELAXED = """
version: 1
rules:
  - name: strict
    within: 1h
    steps:
      - {name: small, where: {amount: {lt: 2}}}
      - {name: big, where: {amount: {gt: 200}}, contiguity: strict}
  - name: relaxed
    within: 1h
    steps:
      - {name: small, where: {amount: {lt: 2}}}
      - {name: big, where: {amount: {gt: 200}}}
  - name: guarded
    within: 1h
    steps:
      - {name: small, where: {amount: {lt: 2}}}
      - {name: no_pos, negated: true, where: {channel: {eq: pos}}}
      - {name: big, where: {amount: {gt: 200}}}
  - name: two_or_three
    within: 1h
    steps:
      - {name: small, where: {amount: {lt: 2}}, times: {min: 2, max: 3}, contiguity: strict}
      - {name: big, where: {amount: {gt: 200}}}
"""


def test_strict_and_relaxed_contiguity() -> None:
    h = custom(STRICT_VS_RELAXED)
    h.one(tx("s", 0, 1.0))
    h.one(tx("mid", 1, 50.0))
    out = h.one(tx("big", 2, 300.0))
    assert out["strict"] == (0, 0)  # "mid" is between
    assert out["relaxed"] == (1, 1)
    h = custom(STRICT_VS_RELAXED)
    h.one(tx("s", 0, 1.0))
    assert h.one(tx("big", 2, 300.0))["strict"] == (1, 1)


def test_negation_not_followed_by() -> None:
    h = custom(STRICT_VS_RELAXED)
    h.one(tx("s", 0, 1.0))
    h.one(tx("shop", 1, 50.0, channel="pos"))
    assert h.one(tx("big", 2, 300.0))["guarded"] == (0, 0)
    h = custom(STRICT_VS_RELAXED)
    h.one(tx("s", 0, 1.0))
    h.one(tx("web", 1, 50.0, channel="online"))
    assert h.one(tx("big", 2, 300.0))["guarded"] == (1, 1)


def test_quantifier_bounds_with_strict_repetitions() -> None:
    h = custom(STRICT_VS_RELAXED)
    for i in range(4):
        h.one(tx(f"s{i}", i, 1.0))
    out = h.one(tx("big", 10, 300.0))
    # Runs from s0 (4 smalls: took 3, then a 4th small it could not take is skipped: relaxed
    # to the cashout), s1 (3), s2 (2) match; s3 alone has 1.
    assert out["two_or_three"] == (1, 3)
    assert out["matches"] == {}  # no rule of this set alerts
    h = custom(STRICT_VS_RELAXED)
    h.one(tx("s0", 0, 1.0))
    h.one(tx("mid", 1, 50.0))  # strict repetitions: "mid" breaks the run before its 2nd small
    h.one(tx("s1", 2, 1.0))
    assert h.one(tx("big", 3, 300.0))["two_or_three"] == (0, 0)


# -- state: restore mid-match, bounded, other rule sets ---------------------------------------


def test_restore_in_the_middle_of_a_match() -> None:
    h = Harness()
    h.one(tx("p0", 0, 1.0), {"u-c1": profile("c1", PARIS, 0)})
    h.one(tx("p1", MINUTE_MS, 1.0))
    h.one(tx("p2", 2 * MINUTE_MS, 1.0))
    restored = h.restarted()
    assert restored.patterns.serialize(0, "c1") == h.patterns.serialize(0, "c1")
    moved = {"u-c1": profile("c1", NEW_YORK, 3 * MINUTE_MS)}
    for engine in (h, restored):
        out = engine.one(tx("big", 4 * MINUTE_MS, 700.0), moved)
        assert out["card_testing"] == (1, 1)
        assert out["account_takeover"] == (1, 1)
        assert out["matches"]["card_testing"] == (("p0", "p1", "p2", "big"), 1)


def test_state_written_in_the_v1_format_restores_mid_match() -> None:
    """Changelogs written before PatternStateV2 still restore (ages before ``last``, flat runs)."""
    h = Harness()
    h.one(tx("p0", 0, 1.0), {"u-c1": profile("c1", PARIS, 0)})
    h.one(tx("p1", MINUTE_MS, 1.0))
    h.one(tx("p2", 2 * MINUTE_MS, 1.0))
    st = h.patterns._partition(0).keys["c1"]
    last = st.last
    v1 = encoder.encode(
        PatternStateV1(
            rules=h.patterns.rules.fingerprint,
            last=last,
            ages=[last - e[0] for e in st.events],
            kinds=[e[1] for e in st.events],
            masks=[e[2] for e in st.events],
            ids=[e[3] for e in st.events],
            runs=[
                (r, run[0], run[1], last - run[2], list(run[3]))
                for r, runs in enumerate(st.runs)
                for run in runs
            ],
            done=[[last - t for t in done] for done in st.done],
            profile=st.profile,
        )
    )
    restored = Harness()
    restored.fraud.restore_partition(0, h.fraud.serialize_partition(0))
    restored.patterns.restore_partition(0, h.patterns.serialize_partition(0))
    restored.fraud.restore(0, "c1", h.fraud.serialize(0, "c1"))
    restored.patterns.restore(0, "c1", v1)
    assert restored.patterns.serialize(0, "c1") == h.patterns.serialize(0, "c1")
    out = restored.one(tx("big", 4 * MINUTE_MS, 700.0))
    assert out["matches"]["card_testing"] == (("p0", "p1", "p2", "big"), 1)


def test_state_is_bounded_by_the_rules_horizon() -> None:
    rules = parse_rules(
        {
            "version": 1,
            "rules": [
                {"name": "r", "within": "10m", "steps": [{"name": "a"}, {"name": "b"}]},
            ],
        },
        feature_rules=(),
    )
    h = Harness(rules, feature_rules=["r"])
    for i in range(50):
        h.one(tx(f"e{i}", i * SECOND_MS, 1.0))
    assert len(h.patterns.serialize(0, "c1") or b"") > 0
    # Another card moves the clock: c1's events are older than watermark - 2 * within.
    h.one(tx("other", HOUR_MS + 21 * MINUTE_MS, 1.0, card="c2"))
    assert h.patterns.serialize(0, "c1") is None  # nothing left: a tombstone
    assert "c1" not in h.patterns.keys(0)


def test_state_of_another_rule_set_starts_afresh_but_keeps_the_profile() -> None:
    h = Harness()
    h.one(tx("p0", 0, 1.0), {"u-c1": profile("c1", PARIS, 0)})
    data = h.patterns.serialize(0, "c1")
    other_rules = shipped_rules().model_copy(update={"version": 99})
    other = PatternEngine(other_rules, CONFIG)
    other.assign(0)
    other.restore(0, "c1", data)
    assert other.reset_keys == 1
    fraud = FraudFeatureEngine(CONFIG)
    fraud.assign(0)
    moved = {"u-c1": profile("c1", NEW_YORK, MINUTE_MS)}
    big = tx("big", 2 * MINUTE_MS, 700.0)
    rows = fraud.process_batch(0, [big], moved).rows
    batch = other.process_batch(0, [big], rows, moved)
    assert [m.rule for m in batch.matches] == ["account_takeover"]  # the profile was kept


def test_corrupt_state_is_refused_with_where_it_came_from() -> None:
    from features.errors import StateDecodeError

    h = Harness()
    with pytest.raises(StateDecodeError, match="partition 0 key 'c1'"):
        h.patterns.restore(0, "c1", b"\x93\xa2c1\x01")
