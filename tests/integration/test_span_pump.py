"""Spans published as record batches against the real broker: every one arrives, each on the
partition a keyed send would pick, in the order it was queued."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.kafka.topic_reader import read_all
from streams.telemetry.span_pump import publish_batches
from tests.harness import new_topic

PARTITIONS = 4


@dataclass
class FaustLikeProducer:
    """What `publish_batches` needs of Faust's producer: the aiokafka producer under it."""

    kafka: AIOKafkaProducer

    def _ensure_producer(self) -> AIOKafkaProducer:
        return self.kafka


async def test_batches_land_on_the_keys_partitions_in_order(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "spans", PARTITIONS)
    # 600 records of ~300 bytes: several 16 KB record batches per partition.
    records = [(f"session-{i % 37}".encode(), f"{i:05d}".encode() + b"x" * 300) for i in range(600)]
    kafka = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await kafka.start()
    try:
        await publish_batches(FaustLikeProducer(kafka), topic, records[:250])
        await publish_batches(FaustLikeProducer(kafka), topic, records[250:])
        await kafka.flush()
    finally:
        await kafka.stop()

    got = await read_all(bootstrap, topic)
    assert sorted((m.key, m.value) for m in got) == sorted(records), "each record exactly once"
    choose = DefaultPartitioner()
    partitions = list(range(PARTITIONS))
    expected: dict[int, list[bytes]] = defaultdict(list)
    for key, value in records:
        expected[choose(key, partitions, partitions)].append(value)
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for m in sorted(got, key=lambda m: (m.partition, m.offset)):
        by_partition[m.partition].append(m.value)
    assert by_partition == expected, "a keyed send's partition, queue order kept"
    assert len(by_partition) > 1
