"""The partition of a session key, computed the way every producer computes it."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(session_id: str, partitions: int) -> int:
    """aiokafka's default partitioner (murmur2, like Java's): same key, same partition, any process."""
    return partition_of_key(session_id.encode(), partitions)


def partition_of_key(key: bytes, partitions: int) -> int:
    """The partition a producer's default partitioner sends `key` to, over `partitions`."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
