"""Offline replay equals online processing of the same partitions; generator files round-trip."""

from __future__ import annotations

import argparse
import base64
import json
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.codec import encode
from contracts.events import FraudLabel, Transaction, UserEvent, UserProfile
from features import cli
from features.aggregates import GlobalViews
from features.config import FeatureConfig
from features.definitions import FRAUD, MINUTE_MS
from features.errors import ReplayInputError
from features.fraud import FraudFeatureEngine
from features.merchant_risk import MerchantRisk, append_merchant_risk
from features.partitioner import partition_for_key
from features.patterns import PatternEngine, shipped_rules
from features.recommendations import RecommendationFeatureEngine, recommendation_row_dict
from features.replay import (
    FeatureRecord,
    ProfileTombstone,
    ReplayStats,
    global_views,
    replay_directory,
    replay_fraud,
    replay_recommendations,
    split_partitions,
    write_records,
)
from rtml.settings import load_settings

PARTITIONS = 3
CONFIG = FeatureConfig(
    allowed_lateness_ms=10 * 60_000, previous_transaction_horizon_ms=86_400_000 + 600_000
)


def fraud_log(streams: Any, seed: int) -> list[Any]:
    """Transactions with profile updates and deletions spread through the log."""
    rng = random.Random(seed)
    log: list[Any] = list(streams.transactions(rng, 300, lateness=CONFIG.allowed_lateness_ms))
    for i in range(40):
        user = f"user-{rng.randrange(4)}"
        at = rng.randrange(len(log) + 1)
        if rng.random() < 0.2:
            log.insert(at, ProfileTombstone(user))
        else:
            profile = UserProfile(
                user_id=user,
                home_lat=rng.uniform(-90, 90),
                home_lon=rng.uniform(-180, 180),
                account_age_days=i,
                segment="s",
                updated_at=0,
            )
            log.insert(at, profile)
    return log


def by_id(records: list[FeatureRecord]) -> dict[str, FeatureRecord]:
    return {r.event_id: r for r in records}


@pytest.mark.parametrize("seed", range(3))
def test_fraud_replay_equals_online_processing(streams: Any, seed: int) -> None:
    log = fraud_log(streams, seed)
    # Labels of every third transaction, decided a minute after it; with no label delay they
    # count for the merchant's transactions from then on.
    config = CONFIG.model_copy(update={"label_delay_ms": 0})
    labels = [
        FraudLabel(
            tx.event_id,
            tx.card_id,
            tx.merchant_id,
            "fraud" if i % 2 else "legitimate",
            tx.event_time,
            tx.event_time + MINUTE_MS,
        )
        for i, tx in enumerate(r for r in log if isinstance(r, Transaction))
        if i % 3 == 0
    ]
    stats = ReplayStats()
    replayed = by_id(
        list(replay_fraud(log, partitions=PARTITIONS, config=config, stats=stats, labels=labels))
    )

    # Online: each partition's consumer sees the profile table as it was when the
    # transaction came, and processes in batches between profile changes; a label reaches the
    # actors once the stream's clock passes its decision (the live table prunes old days).
    engine = FraudFeatureEngine(config)
    patterns = PatternEngine(shipped_rules(), config)
    risk = MerchantRisk(config.label_delay_ms)
    pending = sorted(labels, key=lambda label: label.decided_at, reverse=True)
    clock = 0
    for p in range(PARTITIONS):
        engine.assign(p)
        patterns.assign(p)
    table: dict[str, UserProfile] = {}
    online: dict[str, Any] = {}
    late = 0
    for record in log:
        if isinstance(record, UserProfile):
            table[record.user_id] = record
        elif isinstance(record, ProfileTombstone):
            table.pop(record.user_id, None)
        else:
            clock = max(clock, record.event_time)
            while pending and pending[-1].decided_at <= clock:
                risk.add(pending.pop())
            p = partition_for_key(record.card_id.encode(), PARTITIONS)
            card_rows = engine.process_batch(p, [record], table).rows
            rows = patterns.process_batch(p, [record], card_rows, table).rows
            (row,) = append_merchant_risk([record], rows, risk)
            if row is None:
                late += 1
            else:
                online[record.event_id] = (p, FRAUD.as_dict(row))
    assert stats.late == late > 0
    assert stats.processed == len(online) == len(replayed)
    for event_id, (p, features) in online.items():
        assert replayed[event_id].partition == p
        assert replayed[event_id].features == features
    assert any(r.features["distance_from_home_km"] is not None for r in replayed.values())
    assert any(r.features["distance_from_home_km"] is None for r in replayed.values())
    shares = {r.features["merchant_fraud_share_1d"] for r in replayed.values()}
    assert None in shares and len(shares - {None}) > 1


def test_profile_table_is_as_of_the_transactions_place_in_the_log() -> None:
    def tx(i: int) -> Transaction:
        return Transaction(
            event_id=f"t{i}",
            card_id="c",
            user_id="u",
            merchant_id="m",
            merchant_category="x",
            amount=1.0,
            currency="EUR",
            lat=0.0,
            lon=0.0,
            event_time=1_700_000_000_000 + i,
            channel="pos",
        )

    def profile(age: int) -> UserProfile:
        return UserProfile(
            user_id="u", home_lat=0.0, home_lon=0.0, account_age_days=age, segment="s", updated_at=0
        )

    log = [tx(0), profile(1), tx(1), tx(2), profile(2), tx(3), ProfileTombstone("u"), tx(4)]
    ages = [r.features["account_age_days"] for r in replay_fraud(log, partitions=2)]
    assert ages == [None, 1.0, 1.0, 2.0, None]


@pytest.mark.parametrize("seed", range(3))
def test_recommendation_replay_equals_online_processing(streams: Any, seed: int) -> None:
    events = streams.user_events(random.Random(seed), 400, lateness=CONFIG.allowed_lateness_ms)
    stats = ReplayStats()
    replayed = by_id(
        list(replay_recommendations(events, partitions=PARTITIONS, config=CONFIG, stats=stats))
    )
    parts = split_partitions(events, PARTITIONS, lambda e: e.user_id)
    views = global_views(parts, CONFIG)
    engine = RecommendationFeatureEngine(CONFIG)
    published = GlobalViews()
    rows = {}
    for p, evs in enumerate(parts):
        engine.assign(p)
        for i in range(0, len(evs), 13):
            result = engine.process_batch(p, evs[i : i + 13], views)
            published.apply(engine.drain_view_deltas(p))
            for ev, row in zip(evs[i : i + 13], result.rows, strict=True):
                if row is not None:
                    rows[ev.event_id] = recommendation_row_dict(row)
    assert stats.late > 0 and stats.processed == len(rows) == len(replayed)
    assert {k: r.features for k, r in replayed.items()} == rows
    # The exact offline counts are what the online engines publish, slice by slice.
    assert published.categories._slices == views.categories._slices
    assert published.items._slices == views.items._slices


def envelope(seq: int, key: str, value: bytes | None, defect: str | None = None) -> bytes:
    head = {"seq": seq, "key": key}
    if defect is not None:
        head |= {"value_b64": base64.b64encode(value or b"").decode(), "defect": defect}
        return json.dumps(head).encode() + b"\n"
    if value is None:
        return json.dumps(head | {"value": None}).encode() + b"\n"
    return b'{"seq":%d,"key":"%s","value":%s}\n' % (seq, key.encode(), value)


def write_generator_files(directory: Path) -> None:
    base = {
        "card_id": "c1",
        "user_id": "u1",
        "merchant_id": "m",
        "merchant_category": "x",
        "amount": 10.0,
        "currency": "EUR",
        "lat": 0.0,
        "lon": 0.0,
        "channel": "pos",
    }
    txs = [
        Transaction(event_id=f"t{i}", event_time=1_700_000_000_000 + i, **base)  # type: ignore[arg-type]
        for i in range(4)
    ]
    profile = UserProfile(
        user_id="u1", home_lat=0.0, home_lon=1.0, account_age_days=9, segment="s", updated_at=0
    )
    (directory / "transactions.jsonl").write_bytes(
        envelope(0, "c1", encode(txs[0]))
        + envelope(2, "c1", encode(txs[1]))
        + envelope(3, "c1", b'{"event_id": 1}', defect="invalid_type")
        + envelope(5, "c1", encode(txs[2]))
        + b"\n"
        + envelope(6, "c1", None)
        + envelope(7, "c1", encode(txs[3]))
    )
    (directory / "user-profiles.jsonl").write_bytes(
        envelope(1, "u1", encode(profile)) + envelope(4, "u1", None)
    )
    event = UserEvent(
        event_id="v1", user_id="u1", item_id="i", category="k", event_type="view", event_time=5
    )
    (directory / "user-events.jsonl").write_bytes(envelope(8, "u1", encode(event)))


def test_replay_directory_reads_generator_stream_files(tmp_path: Path) -> None:
    write_generator_files(tmp_path)
    stats = ReplayStats()
    records = list(replay_directory(tmp_path, "fraud", partitions=4, stats=stats))
    assert [r.event_id for r in records] == ["t0", "t1", "t2", "t3"]
    assert [r.features["account_age_days"] for r in records] == [None, 9.0, None, None]
    assert records[1].features["distance_from_home_km"] == pytest.approx(111.195, abs=1e-3)
    assert records[0].partition == partition_for_key(b"c1", 4)
    assert stats.invalid == 2  # the broken value and the null transaction
    recs = list(replay_directory(tmp_path, "recommendations", partitions=4))
    assert [r.event_id for r in recs] == ["v1"] and recs[0].features["view_count_30m"] == 1

    with pytest.raises(ReplayInputError, match="does not exist"):
        replay_directory(tmp_path / "missing", "fraud", partitions=1)
    (tmp_path / "transactions.jsonl").write_text("not json\n")
    with pytest.raises(ReplayInputError, match=r"transactions.jsonl:1: not a stream file line"):
        list(replay_directory(tmp_path, "fraud", partitions=1))


def test_cli_replay_writes_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_generator_files(tmp_path)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "out" / "fraud.jsonl"
    args = parser.parse_args(["features", "replay", "--input", str(tmp_path), "--output", str(out)])
    assert args.run(load_settings(), args) == 0
    lines = out.read_bytes().splitlines()
    rows = [msgspec.json.decode(line, type=FeatureRecord) for line in lines]
    assert [r.event_id for r in rows] == ["t0", "t1", "t2", "t3"]
    assert "wrote 4 fraud feature rows" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["features", "replay", "--input", "x", "--output", "y", "--partitions", "0"]
        )


def test_write_records_round_trip(tmp_path: Path) -> None:
    record = FeatureRecord("e", "k", 1, 0, {"a": 1.5, "b": None, "c": {"x": 0.5}, "d": ["i"]})
    path = tmp_path / "rows.jsonl"
    assert write_records([record, record], path) == 2
    assert [
        msgspec.json.decode(line, type=FeatureRecord) for line in path.read_bytes().splitlines()
    ] == [record, record]
