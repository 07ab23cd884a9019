"""The pipelines consumer actors run, by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumers.runner import Pipeline
    from rtml.settings import Settings, TopicSpec


def factories() -> dict[str, Callable[[Settings], Pipeline]]:
    from consumers.pipelines.fraud_features import FraudFeaturesPipeline
    from consumers.pipelines.profiles import ProfilesPipeline
    from consumers.pipelines.recsys_features import RecsysFeaturesPipeline

    return {
        "profiles": ProfilesPipeline,
        "fraud": FraudFeaturesPipeline,
        "recsys": RecsysFeaturesPipeline,
    }


# The consumer group of each pipeline (the ``group_id`` default of its class).
GROUP_IDS = {
    "profiles": "rtml-profiles",
    "fraud": "rtml-fraud-features",
    "recsys": "rtml-recsys-features",
}


def input_spec(settings: Settings, pipeline: str) -> TopicSpec:
    """A pipeline's input topic."""
    topics = settings.rtml_topics
    return {
        "profiles": topics.user_profiles,
        "fraud": topics.transactions,
        "recsys": topics.user_events,
    }[pipeline]


def input_partitions(settings: Settings, pipeline: str) -> int:
    """Partitions of a pipeline's input topic: the most actors that can do work."""
    return input_spec(settings, pipeline).partitions
