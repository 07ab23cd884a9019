"""The feature engine: the one implementation of every feature, online and offline.

Pure: no Kafka, Redis or Ray here. The consumer actors call the engines per poll batch and write
their state to a changelog; training calls ``features.replay`` over an event log. Both run the
same code, so training and serving cannot disagree. Definitions: ``features.definitions`` and
docs/features.md.
"""

from features._engine import BatchResult
from features.aggregates import GlobalViews, IdfSource, IdfTable, ViewSliceDelta
from features.config import FeatureConfig
from features.definitions import (
    FEATURE_SET_VERSION,
    FRAUD,
    FRAUD_FEATURE_NAMES,
    RECOMMENDATION,
    RECOMMENDATION_FEATURE_NAMES,
    FeatureGroup,
    FeatureSpec,
)
from features.errors import FeatureError, PartitionNotAssigned, StateDecodeError
from features.fraud import FraudFeatureEngine, fraud_row_dict
from features.partitioner import murmur2, partition_for_key
from features.recommendations import RecommendationFeatureEngine, recommendation_row_dict
from features.state import PARTITION_META_KEY

__all__ = [
    "FEATURE_SET_VERSION",
    "FRAUD",
    "FRAUD_FEATURE_NAMES",
    "PARTITION_META_KEY",
    "RECOMMENDATION",
    "RECOMMENDATION_FEATURE_NAMES",
    "BatchResult",
    "FeatureConfig",
    "FeatureError",
    "FeatureGroup",
    "FeatureSpec",
    "FraudFeatureEngine",
    "GlobalViews",
    "IdfSource",
    "IdfTable",
    "PartitionNotAssigned",
    "RecommendationFeatureEngine",
    "StateDecodeError",
    "ViewSliceDelta",
    "fraud_row_dict",
    "murmur2",
    "partition_for_key",
    "recommendation_row_dict",
]
