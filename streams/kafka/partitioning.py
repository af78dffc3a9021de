"""The partition of a session key, computed the way every producer computes it."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(session_id: str, partitions: int) -> int:
    """aiokafka's default partitioner (murmur2, like Java's): same key, same partition, any process."""
    return int(murmur2(session_id.encode()) & 0x7FFFFFFF) % partitions
