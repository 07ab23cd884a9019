"""Input quality from raw records: null/missing ratio per field, rejected values by field and
reason, unknown fields and schema_version changes; garbage never breaks the follower."""

from __future__ import annotations

from types import SimpleNamespace

import msgspec
import pytest

from contracts.events import Transaction
from monitoring.quality import InputQuality
from rtml.settings import load_settings


def tx(**changes: object) -> dict[str, object]:
    raw = msgspec.to_builtins(
        Transaction("e1", "c1", "u1", "m1", "grocery", 9.5, "EUR", 48.8, 2.3, 1_000, "pos")
    )
    raw.update(changes)
    return raw


def rec(value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(value=value)


def test_counts_nulls_rejections_unknown_fields_and_versions() -> None:
    quality = InputQuality(load_settings(), "tx", Transaction)
    missing = tx()
    del missing["merchant_id"]
    records = [
        rec(msgspec.json.encode(tx())),
        rec(msgspec.json.encode(missing)),
        rec(msgspec.json.encode(tx(merchant_id=None))),
        rec(msgspec.json.encode(tx(amount=-1.0))),
        rec(msgspec.json.encode(tx(device="ios"))),
        rec(msgspec.json.encode(tx(schema_version=2))),
        rec(b"\xff\xfe not utf-8"),
        rec(b"{broken"),
        rec(None),
        rec(b"[1, 2]"),
    ]
    quality.apply(records)
    ratios = quality.null_ratios()
    # merchant_id: missing, null, and the 4 unreadable records.
    assert ratios["tx.merchant_id"] == pytest.approx(6 / 10)
    assert ratios["tx.amount"] == pytest.approx(4 / 10)
    assert quality.rejected["amount:out_of_range"] == 1
    assert quality.rejected["merchant_id:missing_field"] == 1
    assert quality.rejected["record:invalid_encoding"] == 1
    assert quality.rejected["record:malformed_json"] == 2
    assert quality.rejected["record:missing_value"] == 1
    assert quality.unknown_fields == {"device": 1}
    assert quality.schema_version_changes == 1  # 1 -> 2 (the rest is unreadable)
    drift = quality.schema_drift()
    assert drift == {"tx.device": pytest.approx(0.1), "tx.schema_version": pytest.approx(0.1)}
    assert quality.null_ratios(min_records=11) == {}


def test_samples_large_batches_evenly() -> None:
    quality = InputQuality(load_settings(), "tx", Transaction, max_per_poll=10)
    quality.apply([rec(msgspec.json.encode(tx())) for _ in range(1_000)])
    assert quality.records == 10
