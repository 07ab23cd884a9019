"""Kafka's default partitioner for keyed records, so replay sees the partitions Kafka would.

``murmur2`` is org.apache.kafka.common.utils.Utils.murmur2 (seed 0x9747b28c); the partition is
``toPositive(murmur2(key_bytes)) % partitions`` where toPositive clears the sign bit. The Java
client, aiokafka's DefaultPartitioner and librdkafka's ``murmur2_random`` agree on this.
"""

from __future__ import annotations

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data``, as an unsigned int (Java's int & 0xffffffff)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - (length & 3)
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record with this key."""
    if partitions < 1:
        raise ValueError(f"partitions must be a positive integer, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
