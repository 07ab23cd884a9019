"""The scenarios of ``rtml bench``, in the order they run within a round.

To add one: a module here with a ``bench.scenario.Scenario`` subclass, named in ``SCENARIOS``.

The registry names classes by import path, so ``rtml --help`` and argument checks import no
Kafka or Ray code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.scenario import Scenario

SCENARIOS: dict[str, str] = {
    "ceiling": "bench.scenarios.ceiling:CeilingScenario",
    "features": "bench.scenarios.features:FeaturesScenario",
    "memory": "bench.scenarios.memory:MemoryScenario",
    "patterns": "bench.scenarios.patterns:PatternsScenario",
    "e2e": "bench.scenarios.e2e:E2EScenario",
    "serving": "bench.scenarios.serving:ServingScenario",
    "scaling": "bench.scenarios.scaling:ScalingScenario",
    "naive": "bench.scenarios.naive:NaiveScenario",
    "peers": "bench.scenarios.peers:PeersScenario",
}


def load(name: str) -> Scenario:
    """A new instance of the scenario ``name`` (KeyError for an unknown one)."""
    module, _, cls = SCENARIOS[name].partition(":")
    scenario: Scenario = getattr(import_module(module), cls)()
    return scenario
