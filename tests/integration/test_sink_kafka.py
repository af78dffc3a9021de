"""The ClickHouse sink against the real broker and a real chDB engine.

Each test has its own topic, consumer group and chDB directory. chDB hosts one engine per
process, so every client a test opens is closed before it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sinks.clickhouse import connect, migrate
from sinks.consumer import SinkStats, run_sink
from sinks.samples import request_traces
from streams.events.codecs import get_codec
from streams.events.records import DeadLetter, Span

pytestmark = pytest.mark.integration

TABLES = ("otel_traces", "llm_calls", "decisions")


class Crash(BaseException):
    """Stands in for the process dying: not an Exception, so nothing in the sink catches it."""


class FaultyClient:
    """Wraps a real client at the insert boundary.

    `fail_first`: that many inserts raise before reaching ClickHouse; `land_then_fail`: that many
    inserts reach ClickHouse and then raise (a timeout after the server wrote: the nasty case);
    `crash_after`: predicate on the table name; once it matches after a successful insert,
    raise Crash (the sink process dies between its insert and its Kafka commit).
    """

    def __init__(
        self,
        inner: Any,
        *,
        fail_first: int = 0,
        land_then_fail: int = 0,
        crash_after: Callable[[str], bool] | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.inner = inner
        self.fail_first = fail_first
        self.land_then_fail = land_then_fail
        self.crash_after = crash_after
        self.gate = gate
        self.calls: list[str] = []

    def insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
        name = table.split(".")[-1]
        self.calls.append(name)
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionRefusedError("injected: ClickHouse refused the connection")
        result = self.inner.insert(table, *args, **kwargs)
        if self.land_then_fail > 0 and name != "schema_migrations":
            self.land_then_fail -= 1
            raise TimeoutError("injected: insert landed but the reply was lost")
        if self.crash_after is not None and self.crash_after(name):
            raise Crash(f"injected crash after inserting {name}")
        return result

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.command(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.query(*args, **kwargs)


@pytest.fixture
def names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        "topic": f"agentstream-test-{tag}.traces.v1",
        "dlq": f"agentstream-test-{tag}.deadletter.v1",
        "group": f"sink-test-{tag}",
    }


@pytest.fixture
def ch_url(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'chdb'}"


@contextlib.contextmanager
def opened(url: str) -> Iterator[Any]:
    client = connect(url)
    try:
        yield client
    finally:
        client.close()


async def create_topics(bootstrap: str, *topics: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k) for k, v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def encoded(spans: list[Span]) -> list[tuple[bytes, bytes]]:
    codec = get_codec()
    return [(s.attributes["agentstream.session.id"].encode(), codec.encode(s)) for s in spans]


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def end_offsets(bootstrap: str, topic: str, partitions: int = 3) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: off for tp, off in ends.items()}


def counts(client: Any, final: bool = True) -> dict[str, int]:
    suffix = " FINAL" if final else ""
    return {t: int(client.command(f"SELECT count() FROM agentstream.{t}{suffix}")) for t in TABLES}


def rollup_requests(client: Any) -> int:
    return int(client.command("SELECT sum(requests) FROM agentstream.decisions_1m"))


@contextlib.asynccontextmanager
async def sink_running(
    bootstrap: str, names: dict[str, str], url: str, **kwargs: Any
) -> AsyncIterator[tuple[asyncio.Task[SinkStats], asyncio.Event, SinkStats]]:
    stop, stats = asyncio.Event(), SinkStats()
    kwargs.setdefault("batch_max_rows", 64)
    kwargs.setdefault("batch_max_age_s", 0.3)
    kwargs.setdefault("backoff_cap_s", 0.5)
    task = asyncio.create_task(
        run_sink(bootstrap, names["topic"], names["group"], url, stop, stats=stats, **kwargs)
    )
    try:
        yield task, stop, stats
    finally:
        stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 30)


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.1)


N = 60  # requests -> 4 spans each (router, agent, chat, verifier)
EXPECTED = {"otel_traces": 4 * N, "llm_calls": N, "decisions": N}


async def test_spans_land_in_all_tables_and_offsets_follow(
    bootstrap: str, names: dict[str, str], ch_url: str
) -> None:
    await create_topics(bootstrap, names["topic"], names["dlq"])
    garbage = [(b"k", b"not avro"), (b"k", b"\xc3\x01" + b"\x00" * 8), (b"k", b"")]
    await produce(bootstrap, names["topic"], encoded(request_traces(N, seed=names["group"])))
    await produce(bootstrap, names["topic"], garbage)
    ends = await end_offsets(bootstrap, names["topic"])
    async with sink_running(bootstrap, names, ch_url, dead_letter_topic=names["dlq"]) as (
        task,
        stop,
        stats,
    ):
        await wait_for(lambda: stats.consumed == 4 * N + 3, what="consume")
        await wait_for(lambda: stats.rows.get("otel_traces") == 4 * N, what="rows")
        await wait_for(lambda: stats.commits > 0 and not task.done(), what="commit")
        stop.set()
        result = await asyncio.wait_for(task, 30)
    assert result.undecodable == 3 and result.dead_lettered == 3 and result.flush_failures == 0
    assert result.rows == {**EXPECTED, "replay_reports": 0}  # the sink writes replay reports too
    assert await committed(bootstrap, names["group"], names["topic"]) == ends
    with opened(ch_url) as client:
        assert counts(client, final=False) == EXPECTED  # not even transient duplicates
        assert counts(client) == EXPECTED
        assert rollup_requests(client) == N
        offsets = client.query(
            "SELECT partition, max(next_offset) FROM agentstream.sink_offsets GROUP BY partition"
        ).result_rows
        assert dict(offsets) == ends
    # the undecodable records are in the dead-letter topic, verbatim, with a reason
    consumer = AIOKafkaConsumer(
        names["dlq"], bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    letters = [get_codec().decode(r.value, DeadLetter) for rs in got.values() for r in rs]
    assert sorted(d.value for d in letters) == sorted(v for _, v in garbage)
    assert all(d.topic == names["topic"] and d.reason for d in letters)


async def test_offsets_are_committed_only_after_the_insert(
    bootstrap: str, names: dict[str, str], ch_url: str
) -> None:
    await create_topics(bootstrap, names["topic"])
    await produce(bootstrap, names["topic"], encoded(request_traces(10, seed=names["group"])))
    with opened(ch_url) as inner:
        migrate(inner)
        gate = threading.Event()
        client = FaultyClient(inner, gate=gate)
        async with sink_running(bootstrap, names, ch_url, client=client, batch_max_rows=1000) as (
            task,
            stop,
            stats,
        ):
            await wait_for(lambda: client.calls, what="first insert attempt")
            await asyncio.sleep(1.0)  # the insert is held: nothing may be committed meanwhile
            assert await committed(bootstrap, names["group"], names["topic"]) == {}
            assert stats.commits == 0
            gate.set()
            await wait_for(lambda: stats.commits > 0, what="commit after insert")
            stop.set()
            await asyncio.wait_for(task, 30)
        assert sum((await committed(bootstrap, names["group"], names["topic"])).values()) == 40
        assert counts(inner) == {"otel_traces": 40, "llm_calls": 10, "decisions": 10}


async def test_clickhouse_failures_lose_nothing_and_duplicate_nothing(
    bootstrap: str, names: dict[str, str], ch_url: str
) -> None:
    await create_topics(bootstrap, names["topic"])
    await produce(bootstrap, names["topic"], encoded(request_traces(N, seed=names["group"])))
    with opened(ch_url) as inner:
        migrate(inner)
        # 4 refused inserts, then 3 that land but report failure, then healthy
        client = FaultyClient(inner, fail_first=4, land_then_fail=3)
        async with sink_running(bootstrap, names, ch_url, client=client) as (task, stop, stats):
            await wait_for(lambda: stats.rows.get("decisions") == N, what="all decisions")
            await wait_for(lambda: stats.commits > 0, what="commits")
            await produce(bootstrap, names["topic"], encoded(request_traces(N, seed="more")))
            await wait_for(
                lambda: stats.consumed == 8 * N and stats.rows["decisions"] == 2 * N,
                what="second wave",
            )
            stop.set()
            result = await asyncio.wait_for(task, 30)
        assert result.flush_failures >= 7 and client.fail_first == client.land_then_fail == 0
        expected = {t: 2 * n for t, n in EXPECTED.items()}
        assert counts(inner) == expected
        # token dedup dropped the re-sent batches at insert time: no duplicates even unmerged,
        # and the materialized rollups saw every request once
        assert counts(inner, final=False) == expected
        assert rollup_requests(inner) == 2 * N
    ends = await end_offsets(bootstrap, names["topic"])
    assert await committed(bootstrap, names["group"], names["topic"]) == ends


async def test_clickhouse_down_at_start_then_backlog_drains(
    bootstrap: str, names: dict[str, str], ch_url: str
) -> None:
    await create_topics(bootstrap, names["topic"])
    await produce(bootstrap, names["topic"], encoded(request_traces(20, seed=names["group"])))
    refused = "http://127.0.0.1:9/"  # discard port: nothing listens, connections are refused
    async with sink_running(bootstrap, names, refused) as (task, stop, stats):
        await asyncio.sleep(2.0)
        assert not task.done() and stats.consumed == 0
        stop.set()
        assert (await asyncio.wait_for(task, 30)).rows == {}
    assert await committed(bootstrap, names["group"], names["topic"]) == {}
    async with sink_running(bootstrap, names, ch_url) as (task, stop, stats):
        await wait_for(lambda: stats.rows.get("decisions") == 20 and stats.commits > 0)
    with opened(ch_url) as client:
        assert counts(client, final=False) == {"otel_traces": 80, "llm_calls": 20, "decisions": 20}


@pytest.mark.parametrize("crash_point", ["after_rows", "after_progress"])
async def test_sink_killed_between_insert_and_commit_does_not_duplicate(
    bootstrap: str, names: dict[str, str], ch_url: str, crash_point: str
) -> None:
    await create_topics(bootstrap, names["topic"])
    await produce(bootstrap, names["topic"], encoded(request_traces(N, seed=names["group"])))
    last = "decisions" if crash_point == "after_rows" else "sink_offsets"
    with opened(ch_url) as inner:
        migrate(inner)
        client = FaultyClient(inner, crash_after=lambda table: table == last)
        async with sink_running(
            bootstrap, names, ch_url, client=client, batch_max_rows=10_000, batch_max_age_s=2.0
        ) as (task, _, _):
            with pytest.raises(Crash):
                await asyncio.wait_for(task, 60)
        first = counts(inner, final=False)
        assert first == EXPECTED  # the whole backlog was one batch, written, never committed
        assert await committed(bootstrap, names["group"], names["topic"]) == {}
        async with sink_running(
            bootstrap, names, ch_url, client=inner, batch_max_rows=10_000, batch_max_age_s=2.0
        ) as (_, stop, stats):
            await wait_for(lambda: stats.commits > 0, what="restarted sink commits")
            stop.set()
        ends = await end_offsets(bootstrap, names["topic"])
        assert await committed(bootstrap, names["group"], names["topic"]) == ends
        assert counts(inner) == EXPECTED
        if crash_point == "after_progress":
            # progress was recorded in ClickHouse: the restart resumed past the batch
            assert stats.resumed_from_clickhouse > 0 and stats.spans == 0
        else:
            # replayed from the Kafka commit as the identical batch: the token dropped it
            assert stats.spans == 4 * N
        assert counts(inner, final=False) == EXPECTED
        assert rollup_requests(inner) == N
