"""Read a whole topic as it stands now: for `agentstream session`, replay and tests."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


async def read_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """Every record from the beginning to the current end of each partition (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out reading {topic}")
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(m for m in batch if m.offset < ends[TopicPartition(m.topic, m.partition)])
        return records
    finally:
        await consumer.stop()
