"""The batched write path's partitioner: Kafka's partitions, at no cost to the collector."""

from __future__ import annotations

import gc

from features.partitioner import partition_for_key
from rtml.kafka_batches import KeyPartitioner


def test_partitions_are_kafkas_for_every_partition_count() -> None:
    partitioner = KeyPartitioner()
    keys = [b"card-%d" % i for i in range(200)]
    for partitions in (1, 8, 13):
        for _ in range(2):  # computed, then from the memo
            assert [partitioner(k, partitions) for k in keys] == [
                partition_for_key(k, partitions) for k in keys
            ]


def test_a_full_memo_starts_over_and_stays_right() -> None:
    partitioner = KeyPartitioner(max_entries=10)
    keys = [b"k%d" % i for i in range(35)]
    assert [partitioner(k, 8) for k in keys] == [partition_for_key(k, 8) for k in keys]


def test_the_memo_adds_no_object_for_the_collector_to_walk() -> None:
    # The consumers collect between batches what was allocated since the last gc.freeze():
    # a memo the collector tracks is walked in full at every collection.
    keys = [b"card-%d" % i for i in range(2_000)]
    partitioner = KeyPartitioner()
    gc.collect()
    before = len(gc.get_objects())
    for key in keys:
        partitioner(key, 8)
        partitioner(key, 3)
    assert len(gc.get_objects()) - before < 10
