"""Read a whole topic as it stands now: for `agentstream session`, replay and tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record from the beginning to the current end of each partition (no consumer group)."""
    return await read_range(bootstrap, topic)


async def read_range(
    bootstrap: str,
    topic: str,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    start_offset: int | None = None,
    end_offset: int | None = None,
    partition: int | None = None,
) -> list[ConsumerRecord]:
    """Records of a topic by time (record timestamps, end exclusive) or by offsets (per partition,
    end exclusive), in partition-then-offset order; unbounded sides read to the ends. `partition`
    reads that partition only."""
    # Committed data only: an aborted transaction's records (the responder's) are not there.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(topic, p)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
            if partition is None or p == partition
        ]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        lo = dict(starts)
        hi = dict(ends)
        if start_ms is not None:
            found = await consumer.offsets_for_times({tp: start_ms for tp in tps})
            lo = {tp: (found[tp].offset if found[tp] else ends[tp]) for tp in tps}
        if end_ms is not None:
            found = await consumer.offsets_for_times({tp: end_ms for tp in tps})
            hi = {tp: (found[tp].offset if found[tp] else ends[tp]) for tp in tps}
        if start_offset is not None:
            lo = {tp: max(lo[tp], start_offset) for tp in tps}
        if end_offset is not None:
            hi = {tp: min(hi[tp], end_offset) for tp in tps}
        out: list[ConsumerRecord] = []
        for tp in tps:
            if lo[tp] >= hi[tp]:
                continue
            consumer.seek(tp, lo[tp])
            while await consumer.position(tp) < hi[tp]:
                for batch in (await consumer.getmany(tp, timeout_ms=300)).values():
                    out.extend(m for m in batch if m.offset < hi[tp])
        return out
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The next offset of each partition of `topic` (read_uncommitted: every record written)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def partition_records(
    bootstrap: str, topic: str, partition: int, start: int | None
) -> AsyncGenerator[tuple[int, list[tuple[int, bytes, bytes | None]]], None]:
    """(end, records) batches of one partition from `start` (None: its first record) up to its
    end offset when called; the first batch may be empty. Records are (offset, key, value)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20,
        fetch_max_wait_ms=20,  # aiokafka's 500 ms was paid once per partition read
        auto_offset_reset="none",  # a start the log no longer has is an error, not a jump to the end
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if start is None:
            # An explicit seek: after `seek_to_beginning` aiokafka's `position()` answered the end.
            start = (await consumer.beginning_offsets([tp]))[tp]
        consumer.seek(tp, start)
        yield end, []
        while await consumer.position(tp) < end:
            got = await consumer.getmany(tp, timeout_ms=1000, max_records=20_000)
            records = [(r.offset, r.key, r.value) for r in got.get(tp, ()) if r.offset < end]
            if records:
                yield end, records
    finally:
        await consumer.stop()
