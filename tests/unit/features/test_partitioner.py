"""Kafka's default partitioner, so replay puts each key in the partition Kafka would."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from features.partitioner import murmur2, partition_for_key

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 and Akka's Murmur2Spec (Java's signed ints).
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_the_java_client(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected & 0xFFFFFFFF


@given(st.binary(max_size=64))
def test_murmur2_matches_aiokafka(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_partition_for_key_is_positive_murmur2_mod_partitions() -> None:
    # toPositive(-973932308) = 1173551340; 1173551340 % 8 = 4
    assert partition_for_key(b"21", 8) == (-973932308 & 0x7FFFFFFF) % 8 == 4
    assert {partition_for_key(f"card-{i}".encode(), 3) for i in range(50)} == {0, 1, 2}
    with pytest.raises(ValueError, match="positive integer"):
        partition_for_key(b"x", 0)
