"""Data quality and drift alerts on the real broker: fraud-scores records carrying features
from a shifted generator raise PSI above 0.2 against the artifact's reference and fire; input
records with a missing field fire the null-ratio rule, an added field and a schema_version
change fire schema_drift, out-of-range values are counted by field; all resolve when the
traffic is normal again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import numpy as np
from aiokafka import AIOKafkaProducer

from contracts.codec import encode
from contracts.events import FraudScore, OpsAlert, Transaction
from features.definitions import FEATURE_SET_VERSION, FRAUD, FRAUD_FEATURE_NAMES
from models.artifacts import FORMAT_VERSION, Manifest, Reference, feature_entries
from monitoring.alerts import default_rules
from monitoring.config import MonitoringConfig
from monitoring.monitor import Monitor, Watch
from producers.config import GeneratorConfig
from producers.runner import Window, write_history
from rtml.settings import Settings
from training.data import fraud_examples, read_log

VERSION = "fraud-20250101000000-test0001"


def features_of(tmp_path: Path, seed: int, **shift: float) -> np.ndarray:
    out = tmp_path / f"log-{seed}"
    write_history(GeneratorConfig(seed=seed, users=400, **shift), out, Window.last_days(1.0))
    return fraud_examples(read_log(out, recsys=False), partitions=2).x


def write_manifest(models_dir: Path, rows: np.ndarray, scores: np.ndarray) -> None:
    reference = {name: Reference.fit(rows[:, j]) for j, name in enumerate(FRAUD_FEATURE_NAMES)}
    reference["score"] = Reference.fit(scores)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        kind="fraud",
        version=VERSION,
        created_at="2025-01-01T00:00:00Z",
        feature_set_version=FEATURE_SET_VERSION,
        feature_group=FRAUD.name,
        features=feature_entries(FRAUD),
        hyperparameters={},
        normalization=[],
        training_data={},
        metrics={},
        reference=reference,
        files={},
        torch_version="test",
    )
    where = models_dir / "fraud" / VERSION
    where.mkdir(parents=True)
    (where / "manifest.json").write_bytes(msgspec.json.encode(manifest))


def score_record(row: np.ndarray, score: float, n: int) -> bytes:
    now = time.time_ns() // 1_000_000
    features = {
        k: (None if np.isnan(v) else float(v))
        for k, v in zip(FRAUD_FEATURE_NAMES, row, strict=True)
    }
    return encode(FraudScore(f"e{n}", f"c{n % 50}", score, VERSION, features, now, now, now))


def transaction(n: int, *, broken: bool) -> bytes:
    tx = Transaction(
        f"t{n}", f"c{n % 50}", "u1", "m1", "grocery", 12.5, "USD", 40.0, -74.0,
        time.time_ns() // 1_000_000, "pos",
    )  # fmt: skip
    raw = msgspec.to_builtins(tx)
    if broken and n % 4 == 0:
        del raw["merchant_id"]  # missing: null ratio of merchant_id = 50%
        raw["extra_field"] = 1  # schema drift
    elif broken and n % 8 == 2:
        raw["amount"] = -3.0  # out of range
        raw["schema_version"] = 2
    return msgspec.json.encode(raw)


async def test_drift_and_null_ratio_fire_and_resolve(
    stack_settings: Settings, new_topic, producer: AIOKafkaProducer, read_topic, tmp_path: Path
) -> None:
    scores_topic = await new_topic(partitions=2)
    tx_topic = await new_topic()
    alerts_topic = await new_topic()
    baseline = features_of(tmp_path, seed=0)
    rng = np.random.default_rng(0)
    write_manifest(tmp_path / "models", baseline, rng.beta(1, 20, 5_000))
    # Shuffled: a window of a few seconds must see a sample of the whole day, not an hour of it.
    # Normal traffic is the reference's own world (a small world of another seed differs a
    # little by itself, and a few seconds' window adds sampling noise on top).
    normal = rng.permutation(baseline)
    shifted = rng.permutation(features_of(tmp_path, seed=2, txns_per_user_day=12.0))
    config = MonitoringConfig(
        interval_s=0.25,
        for_s=0.5,
        resolve_s=1.0,
        drift_window_s=3.0,
        drift_min_samples=200,
        quality_window_s=3.0,
        quality_min_samples=50,
    )
    settings = stack_settings.model_copy(update={"rtml_monitoring": config})
    watch = Watch(
        groups={},
        scores_topic=scores_topic,
        models_dir=tmp_path / "models",
        quality_topics={tx_topic: Transaction},
        alerts_topic=alerts_topic,
    )
    # This test is about quality and drift; latency (of this test's own records) is not judged.
    judged = ("feature_drift_psi", "null_ratio", "schema_drift")
    rules = [r for r in default_rules(config) if r.name in judged]
    monitor = Monitor(settings, watch, rules=rules)
    await monitor.start()
    events: list[OpsAlert] = []
    n = 0

    async def traffic(rows: np.ndarray, *, broken: bool, seconds: float) -> None:
        nonlocal n
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent = []
            for _ in range(120):
                row = rows[n % len(rows)]
                value = score_record(row, float(rng.beta(1, 20)), n)
                sent.append(await producer.send(scores_topic, value, key=b"k%d" % (n % 7)))
                if n % 2 == 0:
                    sent.append(await producer.send(tx_topic, transaction(n, broken=broken)))
                n += 1
            await asyncio.gather(*sent)
            events.extend((await monitor.tick()).events)
            await asyncio.sleep(0.25)

    def states(rule: str) -> list[str]:
        return [e.state for e in events if e.rule == rule]

    try:
        await traffic(normal, broken=False, seconds=4.0)
        for _ in range(30):  # a cold broker: the monitor's readers may start a little late
            if VERSION in (report := await monitor.tick()).drift:
                break
            await traffic(normal, broken=False, seconds=0.5)
        assert events == [], [(e.rule, e.subject, e.state) for e in events]
        assert report.drift[VERSION]["amount"][0] < 0.2  # PSI is measured, and low
        moved = {"transaction_count_1h", "unique_merchants_24h"}  # see tests/unit/monitoring

        def drifted() -> set[str]:
            return {e.subject for e in events if e.rule == "feature_drift_psi"}

        for _ in range(60):
            await traffic(shifted, broken=True, seconds=0.5)
            if moved <= drifted() and states("null_ratio") and len(states("schema_drift")) == 2:
                break
        assert moved <= drifted(), drifted()
        assert {e.subject for e in events if e.rule == "null_ratio"} == {f"{tx_topic}.merchant_id"}
        assert {e.subject for e in events if e.rule == "schema_drift"} == {
            f"{tx_topic}.extra_field",
            f"{tx_topic}.schema_version",
        }
        quality = monitor.quality[tx_topic]
        assert quality.unknown_fields["extra_field"] > 0
        assert quality.schema_version_changes > 0
        assert quality.rejected["amount:out_of_range"] > 0
        for _ in range(60):
            await traffic(normal, broken=False, seconds=0.5)
            if not monitor.evaluator.firing():
                break
        assert monitor.evaluator.firing() == []
        assert set(states("feature_drift_psi")) == {"firing", "resolved"}
        assert states("null_ratio") == ["firing", "resolved"]
        assert sorted(states("schema_drift")) == ["firing", "firing", "resolved", "resolved"]
    finally:
        await monitor.stop()
    published = [
        msgspec.json.decode(r.value, type=OpsAlert) for r in await read_topic(alerts_topic)
    ]
    assert len(published) == len(events)
