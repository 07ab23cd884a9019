"""The fraud pipeline's fast feature-row encoding writes exactly the JSON of ``FeatureRow``."""

from __future__ import annotations

import msgspec
import pytest

from consumers.pipelines.fraud_features import FeatureRow, feature_row_payload
from consumers.scoring import features_json
from contracts.codec import encode
from features.definitions import FRAUD_FEATURE_NAMES


def _row(seed: int) -> tuple[object, ...]:
    values: list[object] = []
    for i in range(len(FRAUD_FEATURE_NAMES)):
        kind = (i + seed) % 4
        values.append(None if kind == 0 else i * 7 if kind == 1 else i / 3 + 0.1 * seed)
    return tuple(values)


@pytest.mark.parametrize("seed", range(4))
def test_payload_equals_the_feature_row_encoding(seed: int) -> None:
    row = _row(seed)
    expected = encode(
        FeatureRow(
            "e-1", "card-9", 1_700_000_000_123, dict(zip(FRAUD_FEATURE_NAMES, row, strict=True)), 42
        )
    )
    payload = feature_row_payload("e-1", "card-9", 1_700_000_000_123, features_json(row), 42)
    assert payload == expected
    decoded = msgspec.json.decode(payload, type=FeatureRow)
    assert list(decoded.features) == list(FRAUD_FEATURE_NAMES)
    assert tuple(decoded.features.values()) == row


@pytest.mark.parametrize("delta", [-1, 1])
def test_a_row_of_another_length_is_refused(delta: int) -> None:
    row = _row(0)
    row = row[:-1] if delta < 0 else (*row, 1.0)
    with pytest.raises(TypeError):
        features_json(row)
