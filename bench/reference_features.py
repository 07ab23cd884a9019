"""The fraud features written the obvious way: one list of recent transactions per card.

The reference pipelines of ``rtml bench`` (the naive per-event pipeline, Quix Streams, Bytewax,
Faust) compute the fraud row of docs/features.md with this code, so they all do the same work;
what differs is the framework around it. It follows the definitions (window bounds, ties, exact
sums with ``math.fsum``, the haversine as specified) and gives the engine's values for every
transaction the engine does not dead-letter as late; unlike the engine it has no watermark, so
it scores late transactions too (the workload has 0.1% of them).

The state of a card is plain JSON (lists and numbers), because the peers keep it in their own
state stores, which serialize it::

    {"h": [[event_time, amount, merchant_id, lat, lon], ...],   # by event time, last 25 h
     "a": [event_time, lat, lon] | null}                         # newest dropped from "h"

Stdlib only: the peers import this module in their own virtual environment.
"""

from __future__ import annotations

import math
from typing import Any

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WINDOWS_MS = (MINUTE_MS, 5 * MINUTE_MS, HOUR_MS)
ALLOWED_LATENESS_MS = HOUR_MS  # features.config.FeatureConfig's default
KEEP_MS = DAY_MS + ALLOWED_LATENESS_MS  # an event up to an hour late still sees its 24 h
PREVIOUS_HORIZON_MS = 7 * DAY_MS  # FeatureConfig.previous_transaction_horizon_ms
EARTH_RADIUS_KM = 6371.0088
SPEED_MIN_SECONDS = 60.0

CardState = dict[str, Any]
Profile = tuple[float, float, float]  # home_lat, home_lon, account_age_days


def new_state() -> CardState:
    return {"h": [], "a": None}


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    s = math.sin((phi2 - phi1) * 0.5)
    s2 = math.sin((math.radians(lon2) - math.radians(lon1)) * 0.5)
    a = s * s + ((math.cos(phi1) * math.cos(phi2)) * s2) * s2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(a, 1.0)))


def update(
    state: CardState,
    event_time: int,
    amount: float,
    merchant_id: str,
    lat: float,
    lon: float,
    online: bool,
    profile: Profile | None = None,
) -> tuple[Any, ...]:
    """The fraud row of one transaction (``FRAUD_CARD.names`` order); adds it to ``state``."""
    t = event_time
    history: list[list[Any]] = state["h"]
    newest = max(t, history[-1][0]) if history else t
    # Forget what no window can reach any more; the newest forgotten one stays the anchor of
    # "previous transaction" (it may be up to 7 days old).
    cut = newest - KEEP_MS
    dropped = 0
    while dropped < len(history) and history[dropped][0] <= cut:
        dropped += 1
    if dropped:
        last = history[dropped - 1]
        state["a"] = [last[0], last[3], last[4]]
        del history[:dropped]
    anchor = state["a"]
    if anchor is not None and anchor[0] <= newest - PREVIOUS_HORIZON_MS - ALLOWED_LATENESS_MS:
        state["a"] = anchor = None

    # The transactions before this one in event time (equal times: processed before it).
    pos = len(history)
    while pos and history[pos - 1][0] > t:
        pos -= 1
    past = history[:pos]

    counts = []
    totals = []
    for window in WINDOWS_MS:
        inside = [e[1] for e in past if e[0] > t - window]
        counts.append(len(inside) + 1)
        totals.append(math.fsum([*inside, amount]))
    day = [e for e in past if e[0] > t - DAY_MS]
    merchants = {e[2] for e in day}
    seen = merchant_id in merchants
    unique = len(merchants) if seen else len(merchants) + 1
    ratio = amount / (math.fsum(e[1] for e in day) / len(day)) if day else None

    previous = past[-1] if past else None
    if previous is not None:
        prev_time, prev_lat, prev_lon = previous[0], previous[3], previous[4]
    elif anchor is not None:
        prev_time, prev_lat, prev_lon = anchor
    else:
        prev_time = None
    if prev_time is not None and prev_time > t - PREVIOUS_HORIZON_MS:
        distance = haversine_km(prev_lat, prev_lon, lat, lon)
        seconds = (t - prev_time) / 1000
        speed = distance * 3600.0 / max(seconds, SPEED_MIN_SECONDS)
    else:
        distance = seconds = speed = None

    if profile is None:
        home = age = None
    else:
        home = haversine_km(lat, lon, profile[0], profile[1])
        age = float(profile[2])

    history.insert(pos, [t, amount, merchant_id, lat, lon])
    return (
        amount,
        counts[0],
        counts[1],
        counts[2],
        totals[0],
        totals[1],
        totals[2],
        unique,
        0 if seen else 1,
        ratio,
        distance,
        seconds,
        speed,
        home,
        age,
        (t // HOUR_MS) % 24,
        1 if online else 0,
    )
