"""The pipelines consumer actors run, by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumers.runner import Pipeline
    from rtml.settings import Settings


def factories() -> dict[str, Callable[[Settings], Pipeline]]:
    from consumers.pipelines.fraud_features import FraudFeaturesPipeline
    from consumers.pipelines.profiles import ProfilesPipeline
    from consumers.pipelines.recsys_features import RecsysFeaturesPipeline

    return {
        "profiles": ProfilesPipeline,
        "fraud": FraudFeaturesPipeline,
        "recsys": RecsysFeaturesPipeline,
    }


def input_partitions(settings: Settings, pipeline: str) -> int:
    """Partitions of a pipeline's input topic: the most actors that can do work."""
    topics = settings.rtml_topics
    spec = {
        "profiles": topics.user_profiles,
        "fraud": topics.transactions,
        "recsys": topics.user_events,
    }[pipeline]
    return spec.partitions
