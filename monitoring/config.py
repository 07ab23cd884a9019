"""Thresholds and timings of the in-process alert rules (``Settings.rtml_monitoring``).

Environment: ``RTML_MONITORING__LAG_RECORDS=50000``, ``RTML_MONITORING__STALENESS_S=120``...
The defaults are the issue's SLOs: features older than 5 minutes, end-to-end p99 above 200 ms,
PSI above 0.2.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MonitoringConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_s: float = Field(default=5.0, gt=0)  # between evaluations
    # Hysteresis: a condition must hold for ``for_s`` to fire and be clear for ``resolve_s`` to
    # resolve, so a flapping signal does not spam the ops-alerts topic.
    for_s: float = Field(default=30.0, ge=0)
    resolve_s: float = Field(default=60.0, ge=0)

    lag_records: int = Field(default=100_000, ge=1)  # total lag of a group
    lag_for_s: float = Field(default=120.0, ge=0)
    # Burrow-style consumer status: judged over this window of offset snapshots.
    consumer_window_s: float = Field(default=120.0, gt=0)
    staleness_s: float = Field(default=300.0, gt=0)  # age of a feature group's newest update
    latency_p99_s: float = Field(default=0.2, gt=0)  # end to end, input append -> score read
    latency_window_s: float = Field(default=60.0, gt=0)
    latency_min_samples: int = Field(default=100, ge=1)
    null_ratio: float = Field(default=0.05, gt=0, le=1)  # share of nulls of an input field
    quality_window_s: float = Field(default=60.0, gt=0)
    quality_min_samples: int = Field(default=200, ge=1)
    # Share of an input's records with an unknown field (or schema_version changes per
    # record) above which schema drift fires: a producer rolling out a new field trips it,
    # the odd corrupt record does not.
    schema_drift_ratio: float = Field(default=0.01, gt=0, le=1)
    psi: float = Field(default=0.2, gt=0)
    drift_window_s: float = Field(default=300.0, gt=0)
    drift_min_samples: int = Field(default=1_000, ge=10)
    # Volume: the input rate over ``volume_window_s`` against its mean over the preceding
    # ``volume_baseline_s``; topics whose baseline is below ``volume_min_rate`` are not judged.
    volume_window_s: float = Field(default=60.0, gt=0)
    volume_baseline_s: float = Field(default=900.0, gt=0)
    volume_spike_factor: float = Field(default=3.0, gt=1)
    volume_drop_factor: float = Field(default=0.3, gt=0, lt=1)
    volume_min_rate: float = Field(default=1.0, ge=0)
