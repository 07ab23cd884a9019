"""The feature engine's tunables: lateness, idle timeout, retention horizons, per-key caps.

A frozen pydantic model so it can sit in ``rtml.settings.Settings`` as a nested section
(``RTML_FEATURES__ALLOWED_LATENESS_MS=...``) and be checked across fields when built. The
window lengths themselves are part of the feature definitions (``features.definitions``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.definitions import (
    DAY_MS,
    FRAUD_LONG_WINDOW_MS,
    HOUR_MS,
    INTEREST_WINDOW_MS,
    MINUTE_MS,
)


class FeatureConfig(BaseModel):
    """How long events may be late, when quiet partitions advance, how long state lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # An event with event_time < (max event_time seen in its partition) - allowed_lateness_ms
    # is late: not processed, reported to the caller (dead-letter reason "late").
    allowed_lateness_ms: int = Field(default=HOUR_MS, ge=0, le=7 * DAY_MS)
    # A partition that received no event for this long (processing time) has its event-time
    # clock advanced by the processing time elapsed since its last event (advance_idle).
    idle_timeout_ms: int = Field(default=MINUTE_MS, ge=1_000)
    # previous-transaction features look back at most this far (event time).
    previous_transaction_horizon_ms: int = Field(default=7 * DAY_MS, ge=MINUTE_MS)
    # recent_items and purchased_items keep items whose event is at most this old.
    history_horizon_ms: int = Field(default=7 * DAY_MS, ge=MINUTE_MS)
    # Hard cap on buffered events per key (a runaway key cannot exhaust memory). A key above
    # it forgets its oldest events: its window features become approximate; see docs.
    max_events_per_key: int = Field(default=50_000, ge=100)
    # A fraud label counts in the merchant-risk features of transactions at least this much
    # later (event time) than its decision: chargebacks arrive late (features/merchant_risk.py).
    label_delay_ms: int = Field(default=7 * DAY_MS, ge=0, le=90 * DAY_MS)

    @model_validator(mode="after")
    def _check_horizons(self) -> FeatureConfig:
        # The buffers keep events newer than watermark - window; the longer-lived summaries
        # (previous transaction, settled item lists) must outlive them, or a feature would
        # silently depend on when state was trimmed.
        need_prev = FRAUD_LONG_WINDOW_MS + self.allowed_lateness_ms
        if self.previous_transaction_horizon_ms < need_prev:
            raise ValueError(
                f"previous_transaction_horizon_ms={self.previous_transaction_horizon_ms} must be"
                f" >= 24 h + allowed_lateness_ms = {need_prev}"
            )
        need_hist = INTEREST_WINDOW_MS + self.allowed_lateness_ms
        if self.history_horizon_ms < need_hist:
            raise ValueError(
                f"history_horizon_ms={self.history_horizon_ms} must be"
                f" >= 30 min + allowed_lateness_ms = {need_hist}"
            )
        return self
