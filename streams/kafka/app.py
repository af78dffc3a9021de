"""The only faust.App: settings in, topics created explicitly before anything produces."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import faust

from streams.config.settings import Settings, get_settings
from streams.kafka import seek_guard
from streams.kafka.commit_guard import CommitGuard
from streams.kafka.recovery_watch import watch_recovery
from streams.kafka.topic_reader import read_range
from streams.kafka.topics import ensure_topics

if TYPE_CHECKING:
    from streams.config.services import Services


class AgentStreamApp(faust.App):
    """faust.App that knows its settings and creates its topics before it starts."""

    agentstream_settings: Settings
    commit_guard: CommitGuard
    # Started with the app (the worker adds the stages' warm-up): runs while the group forms.
    startup_work: list[Callable[[], Awaitable[None]]]

    @cached_property
    def services(self) -> Services:
        """The worker's runtime pieces (provider, ledger, tracing), built on first use."""
        from streams.config.services import Services  # the stages' dependencies, not the CLI's

        return Services(self.agentstream_settings)

    async def on_first_start(self) -> None:
        # Topics first, with their partition counts: auto-created topics break co-partitioning.
        await ensure_topics(self.agentstream_settings)
        for table in self.tables.values():  # local state copies checked against their changelog
            prepare = getattr(table.data, "prepare", None)
            if prepare is not None:
                await prepare()
        _tune_consumer(self.consumer)
        # Faust creates its data directory without parents; ours may not exist yet.
        Path(self.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()

    async def on_start(self) -> None:
        await super().on_start()
        _make_flush_strict(self.producer)
        self.commit_guard.install(self.consumer)
        seek_guard.install(self.consumer)
        for work in self.startup_work:
            self.add_future(work())
        self.add_future(watch_recovery(self))


# Faust hard-codes 1.5 s. A fetch parked on the broker holds up every later request on its
# connection (a broker answers one connection's requests in order), and Faust's recovery makes
# three such requests in a row (end offsets, start offsets, the seek): 4.5 s of every worker
# start and every rebalance. New records still end a parked fetch at once.
FETCH_MAX_WAIT_MS = 100


def _tune_consumer(consumer: Any) -> None:
    """The worker's consumer reads committed data only, and does not park fetches for long.

    Faust reads uncommitted unless its own exactly-once mode is on, so the monitor would count the
    answers of a responder transaction that was aborted (a responder killed mid-transaction) and
    then again as its successor sends them. Only the responder writes in transactions, so no
    other input changes. aiokafka builds its fetcher from these in `start()`, after the consumer
    is created."""
    thread = consumer._thread
    create = thread._create_worker_consumer

    def create_tuned(transport: Any) -> Any:
        kafka_consumer = create(transport)
        kafka_consumer._isolation_level = "read_committed"
        kafka_consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return kafka_consumer

    thread._create_worker_consumer = create_tuned


class _CountingEvent(asyncio.Event):
    """Faust's buffer sets `message_sent` once per message handed to aiokafka: count them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def set(self) -> None:
        self.count += 1
        super().set()


def _make_flush_strict(producer: Any) -> None:
    """Faust commits offsets right after `producer.flush()`, whose buffer drain gives up after
    0.1 s without progress (PITFALLS): table writes could still be unsent when the offset of the
    event that caused them is committed. And "the buffer is empty" is not "everything was handed
    to aiokafka": the buffer's sender task takes a message off the queue before it awaits the
    send. So this flush waits until every message put into the buffer has been handed over
    (counted on both ends); the driver's flush then waits for aiokafka to deliver them."""
    buffer = producer.buffer
    original_flush, original_put = buffer.flush, buffer.put
    sent = _CountingEvent()
    sent.count = -buffer.size  # already queued when this is installed: not counted as put
    buffer.message_sent = sent
    puts = [0]

    def put(fut: Any) -> None:
        puts[0] += 1
        original_put(fut)

    async def drain() -> None:
        while buffer.size or sent.count < puts[0]:
            if buffer.size:
                await original_flush()
            else:
                await asyncio.sleep(0.002)  # one message taken off the queue, still being sent

    buffer.put = put
    buffer.flush = drain


def ownership_settled(app: faust.App) -> bool:
    """No rebalance and no table recovery in progress: which partitions are ours is known.
    (`recovery` is on Faust's TableManager, not on the interface type it declares.)

    aiokafka's own flag counts too: it is raised when the member starts to rejoin, before the
    revocation, and lowered once the new assignment is installed, whereas the previous
    recovery can still clear Faust's `rebalancing` during the join."""
    return (
        not app.rebalancing
        and bool(cast(Any, app.tables).recovery.completed.is_set())
        and not _reassigning(app)
    )


def _reassigning(app: faust.App) -> bool:
    # `_consumer`, not `consumer`: the property would create a consumer that is not there yet.
    consumer = getattr(getattr(getattr(app, "_consumer", None), "_thread", None), "_consumer", None)
    subscription = getattr(consumer, "_subscription", None)
    return bool(subscription is not None and subscription.reassignment_in_progress)


async def _record_offsets(bootstrap: str, topic: str, partition: int, start: int, end: int) -> set[int]:
    """Offsets in [start, end) of one partition that hold a committed record (the others are
    transaction markers or aborted records), for the commit guard."""
    records = await asyncio.wait_for(
        read_range(bootstrap, topic, partition=partition, start_offset=start, end_offset=end), timeout=30
    )
    return {r.offset for r in records}


def active_partitions(app: faust.App, topic: str) -> Sequence[int]:
    """The partitions of `topic` actively assigned to this worker. Read off the assignor's
    current assignment (replaced, never changed in place, at every rebalance): its public
    `assigned_actives()` builds a set of every assigned partition of every topic per call, which
    was 4% of the worker's CPU under load from the runner's ownership checks alone."""
    assignment = cast(Any, app.assignor)._assignment
    return cast(Sequence[int], assignment.actives.get(topic, ()))


def create_app(settings: Settings) -> AgentStreamApp:
    app = AgentStreamApp(
        settings.app_id,
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        table_standby_replicas=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 6),
        broker_rebalance_timeout=max(10.0, settings.session_timeout_s * 3),
        broker_commit_interval=1.0,
        producer_linger_ms=5,
        web_enabled=False,
        web_bind="127.0.0.1",  # only if a worker is started `--with-web`
        datadir=str(settings.data_dir / "worker"),
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.agentstream_settings = settings
    app.startup_work = []
    app.commit_guard = CommitGuard(record_offsets=functools.partial(_record_offsets, settings.kafka_bootstrap_servers))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types receivers without named kwargs
    async def forget_finished(sender: Any, revoked: set[Any], **_: Any) -> None:
        app.commit_guard.forget(revoked)

    return app


app = create_app(get_settings())
