"""Training data: reading event logs (both line formats), labels, next-item targets, time splits."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from contracts.events import FraudLabel, Transaction, UserEvent, UserProfile
from features.definitions import DAY_MS, FRAUD_FEATURE_NAMES, HOUR_MS
from rtml.errors import ConfigError
from training.data import (
    EventLog,
    TimeSplit,
    decision_log,
    fraud_examples,
    read_log,
    recsys_examples,
)

T0 = 1_735_689_600_000  # 2025-01-01T00:00Z


def tx(n: int, t: int, card: str = "c1", amount: float = 10.0) -> Transaction:
    return Transaction(f"tx-{n}", card, "u1", "m1", "grocery", amount, "USD", 40.0, -74.0, t, "pos")


def profile(t: int, age: int) -> UserProfile:
    return UserProfile("u1", 40.0, -74.0, age, "standard", t)


def ev(n: int, t: int, item: str, kind: str = "view", user: str = "u1") -> UserEvent:
    return UserEvent(f"ue-{n}", user, item, "books", kind, t)  # type: ignore[arg-type]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def envelope(seq: int, key: str, value: bytes) -> bytes:
    return b'{"seq":%d,"key":"%s","value":%s}' % (seq, key.encode(), value)


def test_reads_contract_lines_and_labels(tmp_path: Path) -> None:
    enc = msgspec.json.encode
    write_lines(
        tmp_path / "transactions.jsonl",
        [enc(tx(1, T0)), b'{"event_id": "broken"}', enc(tx(2, T0 + 1000, amount=99.0))],
    )
    write_lines(tmp_path / "user-profiles.jsonl", [enc(profile(T0 + 500, 7))])
    write_lines(tmp_path / "labels.jsonl", [b'{"event_id": "tx-2", "label": 1}'])
    log = read_log(tmp_path, recsys=False)
    assert [type(r).__name__ for r in log.fraud_log] == [
        "Transaction",
        "UserProfile",
        "Transaction",
    ]
    assert log.labels == {"tx-2": 1}
    assert log.stats.invalid == 1
    examples = fraud_examples(log, partitions=2)
    assert examples.y.tolist() == [0, 1]
    age = list(examples.x[:, 14])  # account_age_days: the profile applies from T0 + 500 on
    assert np.isnan(age[0]) and age[1] == 7.0


def test_reads_generator_envelopes_in_production_order(tmp_path: Path) -> None:
    enc = msgspec.json.encode
    write_lines(
        tmp_path / "transactions.jsonl",
        [envelope(1, "c1", enc(tx(1, T0))), envelope(4, "c1", enc(tx(2, T0 + 10)))],
    )
    write_lines(
        tmp_path / "user-profiles.jsonl",
        [
            envelope(2, "u1", enc(profile(T0 + 50, 3))),  # later in time, earlier in the log
            b'{"seq":3,"key":"u1","value_b64":"e2JhZA==","defect":"malformed_json"}',
        ],
    )
    (tmp_path / "labels.jsonl").write_text("")
    log = read_log(tmp_path, recsys=False)
    assert [getattr(r, "event_id", "profile") for r in log.fraud_log] == ["tx-1", "profile", "tx-2"]
    assert log.stats.invalid == 1


def test_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_log(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"has no transactions\.jsonl"):
        read_log(tmp_path, recsys=False)
    (tmp_path / "transactions.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"labels\.jsonl does not exist"):
        read_log(tmp_path, recsys=False)
    (tmp_path / "labels.jsonl").write_text("garbage\n")
    with pytest.raises(ConfigError, match=r"labels\.jsonl:1: not a label line"):
        read_log(tmp_path, recsys=False)


def test_next_item_targets_skip_the_same_item() -> None:
    events = [
        ev(1, T0, "a"),
        ev(2, T0 + 1_000, "a", "click"),  # same item: not a target of event 1
        ev(3, T0 + 2_000, "b"),
        ev(4, T0 + 3_000, "b", "purchase"),
        ev(5, T0 + 4_000, "a"),  # a revisit is a target
        ev(6, T0 + 500, "z", user="u2"),  # a user with one event: no example
    ]
    examples = recsys_examples(EventLog(user_events=events), partitions=2)
    got = sorted(zip(examples.event_time.tolist(), examples.target, strict=True))
    assert got == [(T0, "b"), (T0 + 1_000, "b"), (T0 + 2_000, "a"), (T0 + 3_000, "a")]
    # Features are as of the event itself: its item is the newest recent item.
    first = examples.rows[int(np.argmin(examples.event_time))]
    assert first[3] == ["a"]
    assert examples.item_category == {"a": "books", "b": "books", "z": "books"}


def test_time_split_by_days_after_a_warmup() -> None:
    times = np.arange(T0, T0 + 14 * DAY_MS, HOUR_MS)
    split = TimeSplit.by_fractions(times)
    assert split.train_start == T0 + DAY_MS  # a day of warm-up
    assert (split.val_start - T0) % DAY_MS == 0 and (split.test_start - T0) % DAY_MS == 0
    assert split.train_start < split.val_start < split.test_start < split.end
    train, val, test = split.masks(times)
    assert not (train & val).any() and not (val & test).any()
    assert times[train].max() < times[val].min() <= times[val].max() < times[test].min()
    assert json.loads(json.dumps(split.to_dict()))["test"].endswith("Z")
    short = TimeSplit.by_fractions(np.arange(T0, T0 + DAY_MS, 60_000))
    assert (short.val_start - T0) % HOUR_MS == 0
    with pytest.raises(ConfigError, match="too little time"):
        TimeSplit.by_fractions(np.array([T0, T0 + 1]))


def test_labeled_history_feeds_the_merchant_risk_after_the_delay(tmp_path: Path) -> None:
    """labels.jsonl exported from fraud-labels: the decisions drive the merchant risk."""
    enc = msgspec.json.encode
    decided = T0 + HOUR_MS
    later = decided + 7 * DAY_MS + 60_000
    write_lines(
        tmp_path / "transactions.jsonl",
        [enc(tx(1, T0)), enc(tx(2, decided + 60_000)), enc(tx(3, later))],
    )
    label = FraudLabel("tx-1", "c1", "m1", "fraud", T0, decided)
    write_lines(tmp_path / "labels.jsonl", [enc(label)])
    log = read_log(tmp_path, recsys=False)
    assert log.labels == {"tx-1": 1} and log.decisions == [label]
    examples = fraud_examples(log, partitions=1)
    share = examples.x[:, list(FRAUD_FEATURE_NAMES).index("merchant_fraud_share_7d")]
    assert np.isnan(share[0]) and np.isnan(share[1])  # not yet 7 days old
    assert share[2] == 1.0


def test_a_generated_log_decides_every_transaction_a_day_later() -> None:
    log = EventLog(fraud_log=[tx(1, T0), tx(2, T0 + 1)], labels={"tx-2": 1})
    decisions = decision_log(log)
    assert [(d.event_id, d.label, d.decided_at - d.event_time) for d in decisions] == [
        ("tx-1", "legitimate", DAY_MS),
        ("tx-2", "fraud", DAY_MS),
    ]
