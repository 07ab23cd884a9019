"""The places of the synthetic world: where users live, where they travel, where fraud comes from.

Every place is real (rounded coordinates). ``residents`` weights where the card issuer's users
live; all of those bill in a dollar-like currency, so amounts are comparable across users.
``tourism`` weights legit trips, ``fraud`` weights where stolen cards are used. The two overlap on
purpose: a far-away transaction is a hint, not proof.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    lat: float
    lon: float
    currency: str
    residents: float  # weight in the user population (0: nobody lives here)
    tourism: float  # weight as a legit travel destination
    fraud: float  # weight as the origin of card-not-present and counterfeit fraud


PLACES: tuple[Place, ...] = (
    Place("New York", 40.713, -74.006, "USD", 8.0, 3.0, 1.5),
    Place("Los Angeles", 34.052, -118.244, "USD", 6.0, 2.0, 1.5),
    Place("Chicago", 41.878, -87.630, "USD", 4.0, 1.0, 1.0),
    Place("Houston", 29.760, -95.370, "USD", 3.0, 0.3, 0.8),
    Place("Phoenix", 33.448, -112.074, "USD", 2.0, 0.3, 0.3),
    Place("Philadelphia", 39.953, -75.165, "USD", 2.0, 0.3, 0.3),
    Place("San Francisco", 37.775, -122.419, "USD", 3.0, 1.5, 0.5),
    Place("Seattle", 47.606, -122.332, "USD", 2.0, 0.5, 0.3),
    Place("Miami", 25.762, -80.192, "USD", 2.0, 2.0, 1.5),
    Place("Atlanta", 33.749, -84.388, "USD", 2.0, 0.3, 0.8),
    Place("Boston", 42.360, -71.059, "USD", 2.0, 0.5, 0.2),
    Place("Denver", 39.739, -104.990, "USD", 1.5, 0.5, 0.2),
    Place("Toronto", 43.653, -79.383, "CAD", 3.0, 0.8, 0.5),
    Place("Vancouver", 49.283, -123.121, "CAD", 1.5, 0.8, 0.3),
    Place("Montreal", 45.502, -73.567, "CAD", 1.5, 0.6, 0.2),
    Place("London", 51.507, -0.128, "GBP", 5.0, 3.0, 1.5),
    Place("Manchester", 53.481, -2.243, "GBP", 1.5, 0.3, 0.4),
    Place("Dublin", 53.350, -6.260, "EUR", 1.0, 0.8, 0.3),
    Place("Paris", 48.857, 2.352, "EUR", 3.0, 3.0, 0.8),
    Place("Berlin", 52.520, 13.405, "EUR", 2.5, 1.0, 0.5),
    Place("Madrid", 40.417, -3.704, "EUR", 2.0, 1.5, 0.5),
    Place("Amsterdam", 52.368, 4.904, "EUR", 1.0, 1.5, 0.5),
    Place("Sydney", -33.869, 151.209, "AUD", 2.0, 1.0, 0.3),
    Place("Melbourne", -37.814, 144.963, "AUD", 2.0, 0.5, 0.2),
    Place("Auckland", -36.848, 174.763, "NZD", 0.8, 0.5, 0.1),
    Place("Singapore", 1.352, 103.820, "SGD", 1.0, 1.5, 0.5),
    # Visited, never home.
    Place("Cancun", 21.161, -86.851, "MXN", 0.0, 2.0, 0.3),
    Place("Honolulu", 21.307, -157.858, "USD", 0.0, 1.5, 0.1),
    Place("Las Vegas", 36.170, -115.140, "USD", 0.0, 2.0, 0.8),
    Place("Lisbon", 38.722, -9.139, "EUR", 0.0, 1.5, 0.3),
    Place("Rome", 41.903, 12.496, "EUR", 0.0, 2.0, 0.4),
    Place("Bangkok", 13.756, 100.502, "THB", 0.0, 1.5, 1.0),
    Place("Denpasar", -8.650, 115.217, "IDR", 0.0, 1.0, 0.3),
    Place("Tokyo", 35.676, 139.650, "JPY", 0.0, 1.5, 0.3),
    Place("Dubai", 25.205, 55.271, "AED", 0.0, 1.0, 0.8),
    Place("Hong Kong", 22.320, 114.169, "HKD", 0.0, 0.8, 1.2),
    Place("Istanbul", 41.008, 28.978, "TRY", 0.0, 0.8, 1.2),
    Place("Sao Paulo", -23.551, -46.633, "BRL", 0.0, 0.3, 1.5),
    Place("Lagos", 6.524, 3.379, "NGN", 0.0, 0.1, 2.0),
    Place("Bucharest", 44.426, 26.103, "RON", 0.0, 0.2, 2.0),
    Place("Jakarta", -6.209, 106.846, "IDR", 0.0, 0.2, 1.5),
    Place("Manila", 14.600, 120.984, "PHP", 0.0, 0.3, 1.5),
)

# Spread of homes and shops around a place's centre, in degrees (~10-15 km).
CITY_SPREAD_DEG = 0.12

# Local hour -> relative activity (1.0 at the peak): quiet nights, lunch and evening peaks.
DIURNAL = np.array(
    [0.15, 0.09, 0.06, 0.05, 0.06, 0.12, 0.28, 0.50, 0.70, 0.78, 0.84, 0.90,
     1.00, 0.95, 0.85, 0.80, 0.84, 0.90, 1.00, 0.97, 0.85, 0.65, 0.42, 0.25],
)  # fmt: skip


def place_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lat, lon, utc_offset_hours) of every place, indexed like ``PLACES``."""
    lat = np.array([p.lat for p in PLACES])
    lon = np.array([p.lon for p in PLACES])
    return lat, lon, utc_offset_hours(lon)


def utc_offset_hours(lon: np.ndarray) -> np.ndarray:
    """Solar time zone: the local hour is UTC shifted by longitude / 15 degrees."""
    return np.rint(np.asarray(lon) / 15.0).astype(np.int64)


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in km between points in degrees; numpy arrays broadcast."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    a = (
        np.sin((phi2 - phi1) / 2) ** 2
        + np.cos(phi1) * np.cos(phi2) * np.sin(np.radians(np.subtract(lon2, lon1)) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def distance_matrix_km() -> np.ndarray:
    """Great-circle distances between every pair of places (km), shape (P, P)."""
    lat, lon, _ = place_arrays()
    return haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
