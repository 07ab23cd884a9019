"""The result schema of ``rtml bench``: what one run measured, as JSON.

::

    BenchResults                       one run: command, options, machine, git commit
    ├── workloads {name: {...}}        the data each scenario ran on (counts, users, topics)
    ├── measurements [Measurement]     repeated numbers, one Sample per round
    │     id = "scenario/name", unit, baselines (ids it is divided by), samples
    ├── series [Series]                values over time (memory: RSS, cards in state)
    ├── checks [Check]                 targets (e.g. 30,000 tx/s): met or not, and why
    ├── artifacts [str]                files written next to the JSON (plots, profiles)
    └── notes [str]                    anything a reader must know (warm-up, noise)

``to_dict`` adds derived fields for readers (each measurement's summary, each ratio to its
baseline); ``from_dict`` ignores them and recomputes, so the samples are the only truth.
Later scenarios add measurements and series; the schema does not change for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import Summary, ratio_summary, summarize

SCHEMA = "rtml-bench/1"

Details = dict[str, Any]


@dataclass
class Sample:
    """One measurement in one round; ``details`` holds what explains it (events, CPU...)."""

    round: int
    value: float
    details: Details = field(default_factory=dict)


@dataclass
class Measurement:
    scenario: str
    name: str
    label: str
    unit: str
    baselines: list[str] = field(default_factory=list)  # ids this one is divided by
    higher_is_better: bool = True
    samples: list[Sample] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.name}"

    def summary(self) -> Summary | None:
        return summarize(s.value for s in self.samples) if self.samples else None

    def pairs(self) -> list[tuple[int, float]]:
        return [(s.round, s.value) for s in self.samples]


@dataclass(frozen=True)
class Ratio:
    """``measurement / baseline``, paired by round."""

    measurement: str
    baseline: str
    summary: Summary


@dataclass
class Series:
    """A value over time: ``points`` are (seconds since the series started, value)."""

    scenario: str
    name: str
    label: str
    unit: str
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.name}"

    def stats(self) -> dict[str, float] | None:
        if not self.points:
            return None
        values = [v for _, v in self.points]
        return {
            "start": values[0],
            "end": values[-1],
            "min": min(values),
            "max": max(values),
            "seconds": self.points[-1][0] - self.points[0][0],
        }


@dataclass
class Check:
    """A target: ``met`` is None when it could not be decided (its measurement did not run)."""

    name: str
    target: str
    value: str
    met: bool | None
    detail: str = ""


@dataclass
class BenchResults:
    command: str
    mode: str
    options: Details
    machine: Details
    started_at: str
    finished_at: str | None = None
    workloads: dict[str, Details] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema: str = SCHEMA

    def measurement(self, id_: str) -> Measurement | None:
        return next((m for m in self.measurements if m.id == id_), None)

    def declare(self, measurement: Measurement) -> Measurement:
        """Add a measurement (no samples yet) or return the one with the same id."""
        known = self.measurement(measurement.id)
        if known is not None:
            return known
        self.measurements.append(measurement)
        return measurement

    def ratios(self) -> list[Ratio]:
        """Every measurement divided by each of its baselines that was measured."""
        out = []
        for m in self.measurements:
            for baseline in m.baselines:
                base = self.measurement(baseline)
                if base is None:
                    continue
                summary = ratio_summary(m.pairs(), base.pairs())
                if summary is not None:
                    out.append(Ratio(m.id, base.id, summary))
        return out

    def ratios_of(self, id_: str) -> list[Ratio]:
        return [r for r in self.ratios() if r.measurement == id_]

    # --- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> Details:
        return {
            "schema": self.schema,
            "command": self.command,
            "mode": self.mode,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "options": self.options,
            "machine": self.machine,
            "workloads": self.workloads,
            "measurements": [_measurement_dict(m) for m in self.measurements],
            "ratios": [
                {"measurement": r.measurement, "baseline": r.baseline, **r.summary.to_dict()}
                for r in self.ratios()
            ],
            "series": [
                {
                    "scenario": s.scenario,
                    "name": s.name,
                    "label": s.label,
                    "unit": s.unit,
                    "stats": s.stats(),
                    "points": [[t, v] for t, v in s.points],
                }
                for s in self.series
            ],
            "checks": [vars(c).copy() for c in self.checks],
            "artifacts": list(self.artifacts),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Details) -> BenchResults:
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ValueError(f"unsupported results schema {schema!r}; expected {SCHEMA!r}")
        try:
            return cls(
                command=data["command"],
                mode=data["mode"],
                options=dict(data["options"]),
                machine=dict(data["machine"]),
                started_at=data["started_at"],
                finished_at=data.get("finished_at"),
                workloads={k: dict(v) for k, v in data.get("workloads", {}).items()},
                measurements=[
                    Measurement(
                        scenario=m["scenario"],
                        name=m["name"],
                        label=m["label"],
                        unit=m["unit"],
                        baselines=list(m.get("baselines", [])),
                        higher_is_better=m.get("higher_is_better", True),
                        samples=[
                            Sample(int(s["round"]), float(s["value"]), dict(s.get("details", {})))
                            for s in m["samples"]
                        ],
                    )
                    for m in data.get("measurements", [])
                ],
                series=[
                    Series(
                        s["scenario"],
                        s["name"],
                        s["label"],
                        s["unit"],
                        [(float(t), float(v)) for t, v in s["points"]],
                    )
                    for s in data.get("series", [])
                ],
                checks=[Check(**c) for c in data.get("checks", [])],
                artifacts=list(data.get("artifacts", [])),
                notes=list(data.get("notes", [])),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed results: {exc!r}") from exc

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")

    @classmethod
    def read_json(cls, path: Path) -> BenchResults:
        return cls.from_dict(json.loads(path.read_text()))


def _measurement_dict(m: Measurement) -> Details:
    summary = m.summary()
    return {
        "id": m.id,
        "scenario": m.scenario,
        "name": m.name,
        "label": m.label,
        "unit": m.unit,
        "baselines": list(m.baselines),
        "higher_is_better": m.higher_is_better,
        "summary": summary.to_dict() if summary else None,
        "samples": [{"round": s.round, "value": s.value, "details": s.details} for s in m.samples],
    }
