"""What the generator makes: the size of the world, its rates, its fraud and its defects.

One frozen ``GeneratorConfig`` fully determines the stream together with the start time (and, in
live mode, the rate): same config, same bytes. It checks itself when built and raises
``ConfigError`` naming the field, the value and what was expected.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rtml.errors import ConfigError

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

SCENARIOS = ("card_testing", "account_takeover", "merchant_spree")
DEFAULT_SCENARIO_WEIGHTS = {"card_testing": 0.4, "account_takeover": 0.3, "merchant_spree": 0.3}
MIX_STREAMS = ("transactions", "user-events")


@dataclass(frozen=True)
class GeneratorConfig:
    """Every knob of the synthetic stream. Rates are per user per simulated day."""

    seed: int = 0
    # The world.
    users: int = 10_000
    merchants: int = 3_000
    items: int = 5_000
    # Legit activity.
    txns_per_user_day: float = 3.0
    sessions_per_user_day: float = 1.5
    mean_session_views: float = 9.0
    travel_rate: float = 1 / 90  # trips started per user per day
    legit_burst_rate: float = 0.05  # shopping trips and in-app purchase bursts per user per day
    # Fraud: the share of all transactions that are fraud, split over the scenarios.
    fraud_rate: float = 0.01
    scenario_weights: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_SCENARIO_WEIGHTS)
    )
    # Profiles (the compacted topic): changes per user per day.
    profile_update_rate: float = 0.002
    profile_delete_rate: float = 0.0002
    # Defects.
    out_of_order_fraction: float = 0.01
    max_delay_ms: int = 30_000
    late_fraction: float = 0.001
    allowed_lateness_ms: int = HOUR_MS
    malformed_fraction: float = 0.001
    max_record_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("users", self.users, 1, 10_000_000)
        _check_int("merchants", self.merchants, 1, 1_000_000)
        _check_int("items", self.items, 1, 10_000_000)
        for name in (
            "txns_per_user_day",
            "sessions_per_user_day",
            "travel_rate",
            "legit_burst_rate",
            "profile_update_rate",
            "profile_delete_rate",
        ):
            _check_float(name, getattr(self, name), 0.0, 1e6)
        _check_float("mean_session_views", self.mean_session_views, 1.0, 1e4)
        if self.txns_per_user_day == 0 and self.sessions_per_user_day == 0:
            raise ConfigError("txns_per_user_day and sessions_per_user_day cannot both be 0")
        for name in ("fraud_rate", "out_of_order_fraction", "late_fraction", "malformed_fraction"):
            _check_float(name, getattr(self, name), 0.0, 1.0)
        if self.fraud_rate >= 1.0:
            raise ConfigError(f"fraud_rate must be below 1, got {self.fraud_rate}")
        if self.out_of_order_fraction + self.late_fraction + self.malformed_fraction > 1.0:
            raise ConfigError(
                "out_of_order_fraction + late_fraction + malformed_fraction must not exceed 1"
            )
        _check_weights("scenario_weights", self.scenario_weights, SCENARIOS)
        _check_int("allowed_lateness_ms", self.allowed_lateness_ms, 1_000, 30 * DAY_MS)
        _check_int("max_delay_ms", self.max_delay_ms, 1, self.allowed_lateness_ms - 1)
        _check_int("max_record_bytes", self.max_record_bytes, 256, 2**30)

    def with_mix(self, mix: dict[str, float]) -> GeneratorConfig:
        """The same world with transactions and user events in the shares of ``mix``.

        Keeps the total number of transactions plus user events per user-day; only the split
        changes. Shares are relative (``{"transactions": 1, "user-events": 3}`` is 25%/75%).
        """
        _check_weights("mix", mix, MIX_STREAMS)
        total = sum(mix.values())
        txn_share = mix.get("transactions", 0.0) / total
        per_session = self.user_events_per_session
        volume = self.txns_per_user_day + self.sessions_per_user_day * per_session
        return replace(
            self,
            txns_per_user_day=volume * txn_share,
            sessions_per_user_day=volume * (1.0 - txn_share) / per_session,
        )

    @property
    def user_events_per_session(self) -> float:
        """Expected user events in a session: views, plus the clicks and purchases they lead to."""
        from producers.user_activity import EVENTS_PER_VIEW

        return self.mean_session_views * EVENTS_PER_VIEW

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


def _check_weights(name: str, weights: dict[str, float], known: tuple[str, ...]) -> None:
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ConfigError(f"{name}: unknown key {unknown[0]!r}; expected one of {', '.join(known)}")
    for key, value in weights.items():
        _check_float(f"{name}[{key}]", value, 0.0, 1e6)
    if not any(value > 0 for value in weights.values()):
        raise ConfigError(f"{name}: at least one weight must be positive")
