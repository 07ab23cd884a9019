"""What one ``rtml bench`` run does: the scenarios, their sizes and the isolated stack.

``BenchOptions`` is frozen and checks itself across fields (``ConfigError`` naming the option,
the value and what was expected). ``for_mode`` gives the sizes of a quick or a full run; any
explicit option overrides them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from rtml.errors import ConfigError

Mode = Literal["quick", "full"]

# The isolated stack's ports: far from the dev stack (9092/6379) and the test stack (19092/16379).
KAFKA_PORT = 39092
CONTROLLER_PORT = 39093
REDIS_PORT = 36379
TARGET_TX_PER_S = 30_000.0  # the "Streaming feature engine" issue, on a 2-core machine
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``quick`` takes about 6 minutes, ``full`` ~40."""

    repeats: int
    transactions: int  # pre-produced for the throughput scenarios
    users: int  # generator users for them (1.35 cards per user)
    memory_seconds: float  # live traffic while RSS is sampled
    memory_rate: float  # records/s (transactions, plus profiles when users appear)
    memory_cards: int
    profile_records: int  # records processed under cProfile (0: no profile)
    actors: tuple[int, ...] = (1, 2)
    loads: tuple[float, ...] = (1_000.0, 2_000.0, 5_000.0, 20_000.0)  # e2e fixed rates, tx/s
    load_seconds: float = 15.0  # e2e: how long each fixed load runs (and the HTTP loads)
    # e2e: uncounted seconds at the load's rate before it (the broker's JIT, the actors' caches)
    load_warmup_seconds: float = 10.0
    # The scaling curve (bench/scenarios/scaling.py): actors x input partitions.
    scaling_actors: tuple[int, ...] = (1, 2, 4)
    scaling_partitions: tuple[int, ...] = (4, 8)


# Quick: every scenario once, in about 6 minutes on 2 cores (fewer records, shorter loads and
# warm-ups, the scaling curve over 8 partitions only): a look at everything, not statistics.
# For medians and spreads give --repeats (each round adds about 4 minutes) or run the full run.
QUICK = Sizes(
    repeats=1,
    transactions=200_000,
    users=130_000,
    memory_seconds=30.0,
    memory_rate=4_000.0,
    memory_cards=50_000,
    profile_records=50_000,
    load_seconds=8.0,
    load_warmup_seconds=5.0,
    scaling_partitions=(8,),
)
FULL = Sizes(
    repeats=5,
    transactions=2_000_000,
    users=1_000_000,
    memory_seconds=600.0,
    memory_rate=10_000.0,
    memory_cards=1_000_000,
    profile_records=300_000,
    loads=(1_000.0, 2_000.0, 5_000.0, 20_000.0, 30_000.0),
    load_seconds=60.0,
)


@dataclass(frozen=True)
class BenchOptions:
    mode: Mode
    scenarios: tuple[str, ...]
    sizes: Sizes
    out: Path
    state_dir: Path | None = None  # None: a fresh temporary directory
    keep_stack: bool = False
    plots: bool = True
    seed: int = 0
    kafka_port: int = KAFKA_PORT
    controller_port: int = CONTROLLER_PORT
    redis_port: int = REDIS_PORT
    partitions: int = 8
    target: float = TARGET_TX_PER_S
    name: str | None = None  # output file stem; None: the mode, or "<mode>-custom"
    serve_throughput_optimized: bool = True  # Serve's throughput mode, rtml's default

    def __post_init__(self) -> None:
        s = self.sizes
        _positive_int("--repeats", s.repeats, high=100)
        _positive_int("--transactions", s.transactions, low=1_000)
        _positive_int("--users", s.users, high=10_000_000)
        _positive_int("--memory-cards", s.memory_cards, high=10_000_000)
        _positive_int("--partitions", self.partitions, high=1_000)
        if not s.memory_seconds >= 5:
            raise ConfigError(f"--memory-seconds must be at least 5, got {s.memory_seconds:g}")
        if not s.memory_rate > 0:
            raise ConfigError(f"--memory-rate must be positive, got {s.memory_rate:g}")
        if not s.load_seconds >= 5:
            raise ConfigError(f"--load-seconds must be at least 5, got {s.load_seconds:g}")
        if not 0 <= s.load_warmup_seconds <= 600:
            raise ConfigError(
                f"--load-warmup-seconds must be between 0 and 600, got {s.load_warmup_seconds:g}"
            )
        if s.profile_records < 0:
            raise ConfigError(f"--profile-records must be >= 0, got {s.profile_records}")
        if not s.actors or any(n < 1 or n > self.partitions for n in s.actors):
            raise ConfigError(
                f"--actors must be between 1 and the {self.partitions} partitions, "
                f"got {','.join(map(str, s.actors)) or 'none'}"
            )
        if not s.scaling_actors or any(n < 1 for n in s.scaling_actors):
            raise ConfigError(f"scaling actor counts must be >= 1, got {s.scaling_actors}")
        if not s.scaling_partitions or any(not 1 <= p <= 1_000 for p in s.scaling_partitions):
            raise ConfigError(
                f"scaling partition counts must be between 1 and 1,000, got {s.scaling_partitions}"
            )
        ports = {
            "--kafka-port": self.kafka_port,
            "--controller-port": self.controller_port,
            "--redis-port": self.redis_port,
        }
        for name, port in ports.items():
            if not 1024 <= port <= 65535:
                raise ConfigError(f"{name} must be between 1024 and 65535, got {port}")
        if len(set(ports.values())) != len(ports):
            raise ConfigError(f"the ports must differ, got {sorted(ports.values())}")
        if not self.scenarios:
            raise ConfigError("select at least one scenario")
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"--name must be letters, digits, '.', '_' or '-' (a file name), got {self.name!r}"
            )

    def stem(self, all_scenarios: Sequence[str]) -> str:
        """File name stem of this run's outputs in ``out``: one set per mode, so a re-run
        replaces them; a run with other sizes or fewer scenarios is ``<mode>-custom`` unless
        named, so it never silently replaces the reference results."""
        if self.name is not None:
            return self.name
        standard = self.sizes == sizes_for(self.mode) and self.scenarios == tuple(all_scenarios)
        standard = standard and self.serve_throughput_optimized
        return self.mode if standard else f"{self.mode}-custom"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        data["state_dir"] = str(self.state_dir) if self.state_dir else None
        data["sizes"]["actors"] = list(self.sizes.actors)
        data["sizes"]["loads"] = list(self.sizes.loads)
        data["sizes"]["scaling_actors"] = list(self.sizes.scaling_actors)
        data["sizes"]["scaling_partitions"] = list(self.sizes.scaling_partitions)
        data["scenarios"] = list(self.scenarios)
        return data


def sizes_for(mode: Mode) -> Sizes:
    return QUICK if mode == "quick" else FULL


def parse_only(text: str | None, known: Sequence[str]) -> tuple[str, ...]:
    """``"features,ceiling"`` -> the scenarios in the registry's order; all when None."""
    if text is None:
        return tuple(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--only needs at least one scenario name")
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(
            f"--only: unknown scenario {unknown[0]!r}; expected some of {', '.join(known)}"
        )
    return tuple(n for n in known if n in names)


def parse_actors(text: str) -> tuple[int, ...]:
    """``"1,2"`` -> (1, 2): the actor counts of the Ray feature runs."""
    try:
        counts = tuple(sorted({int(n) for n in text.split(",") if n.strip()}))
    except ValueError:
        raise ConfigError(f"--actors expects comma-separated whole numbers, got {text!r}") from None
    if not counts:
        raise ConfigError("--actors needs at least one count")
    return counts


def parse_loads(text: str) -> tuple[float, ...]:
    """``"1000,2000"`` -> (1000.0, 2000.0): the fixed rates (tx/s) of the end-to-end runs."""
    try:
        loads = tuple(sorted({float(n) for n in text.split(",") if n.strip()}))
    except ValueError:
        raise ConfigError(f"--loads expects comma-separated numbers, got {text!r}") from None
    if not loads or any(not 0 < rate <= 1_000_000 for rate in loads):
        raise ConfigError(f"--loads needs rates between 1 and 1,000,000 tx/s, got {text!r}")
    return loads


def with_overrides(sizes: Sizes, **overrides: Any) -> Sizes:
    """``sizes`` with the options given on the command line (None: keep the mode's)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(sizes, **given)


def _positive_int(name: str, value: int, *, low: int = 1, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be at most {high:,}, got {value:,}")
