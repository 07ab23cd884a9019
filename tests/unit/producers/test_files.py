"""JSON-lines files keep every record byte for byte, and the labels beside them."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from producers.files import JsonlWriter, read_labels, read_stream
from producers.fraud_scenarios import FraudLabel
from producers.records import Stream
from producers.runner import Window, write_history


def test_round_trip_is_lossless(generated, tmp_path: Path) -> None:
    with JsonlWriter(tmp_path) as writer:
        writer.write(generated.records)
    for stream in Stream:
        stored = list(read_stream(tmp_path, stream))
        original = [r for r in generated.records if r.stream is stream]
        assert [(s.seq, s.key, s.payload, s.defect) for s in stored] == [
            (r.seq, r.key, r.value, r.defect) for r in original
        ]
    labels = list(read_labels(tmp_path))
    assert labels == [
        msgspec.json.decode(r.label, type=FraudLabel) for r in generated.records if r.label
    ]
    assert writer.counts["labels"] == len(labels) > 0


def test_valid_values_are_inline_json(generated, tmp_path: Path) -> None:
    with JsonlWriter(tmp_path) as writer:
        writer.write(generated.records[:2000])
    for line in (tmp_path / "transactions.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "defect" in row:
            assert isinstance(row["value_b64"], str | None)
        else:
            assert row["value"]["card_id"] == row["key"]


def test_write_history_caps_the_count_and_writes_a_manifest(test_config, tmp_path: Path) -> None:
    window = Window(0, 86_400_000)
    summary = write_history(test_config, tmp_path, window, count=5_000)
    assert summary.total == 5_000 and summary.labels == len(list(read_labels(tmp_path)))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"]["seed"] == test_config.seed
    assert (manifest["start_ms"], manifest["end_ms"]) == (0, 86_400_000)
    assert sum(len(list(read_stream(tmp_path, s))) for s in Stream) == 5_000
