"""Every topic declared once, created explicitly with its partition count and config."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.config.settings import Settings

# Short names; `Settings.topic(name)` gives `agentstream.<name>.v1`.
REQUESTS = "requests"
ROUTED = "routed"
EXECUTED = "executed"
RESPONSES = "responses"
# Answers waiting to be published exactly once by the responder (internal, at-least-once in).
OUTBOX = "outbox"
ESCALATIONS = "escalations"
HUMAN_DECISIONS = "human-decisions"
DEADLETTER = "deadletter"
CONTROL = "control"
WORKERS = "workers"  # heartbeats, latest per worker id
WORKER_HEARTBEAT_S = 5.0  # a worker silent for three heartbeats is reported gone
TRACES = "traces"
# Reservations and settlements keyed by tenant: one tenant's budget is decided on one partition.
BUDGET = "budget"
# Every answer once (written by the responder): the monitor's one global, ordered input.
MONITOR = "monitor"

STREAM_TOPICS = (
    REQUESTS, ROUTED, EXECUTED, OUTBOX, RESPONSES, ESCALATIONS, HUMAN_DECISIONS, DEADLETTER, TRACES, BUDGET,
)
COMPACTED_TOPICS = (CONTROL, WORKERS)
SINGLE_PARTITION_TOPICS = (MONITOR,)
TABLES = ("sessions", "budgets")
SINGLE_PARTITION_TABLES = ("monitor",)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.partitions
    compact = {"cleanup.policy": "compact"}
    specs = [TopicSpec(settings.topic(t), n, {}) for t in STREAM_TOPICS]
    specs += [TopicSpec(settings.topic(t), 1, compact) for t in COMPACTED_TOPICS]
    specs += [TopicSpec(settings.topic(t), 1, {}) for t in SINGLE_PARTITION_TOPICS]
    # Changelogs: compact only, no time retention (PITFALLS: recovery hangs on deleted segments).
    specs += [TopicSpec(f"{settings.app_id}-{t}-changelog", n, compact) for t in TABLES]
    specs += [TopicSpec(f"{settings.app_id}-{t}-changelog", 1, compact) for t in SINGLE_PARTITION_TABLES]
    return specs


# How long a created topic may take to appear, with a leader per partition, in the cluster metadata.
TOPICS_VISIBLE_TIMEOUT_S = 30.0


async def ensure_topics(settings: Settings) -> list[str]:
    """Creates missing topics and waits until all are served; returns the names it created.

    Safe to call from every process. The wait matters: a worker that subscribes before a new
    topic is in the metadata joins its group holding none of that topic's partitions.
    """
    specs = topic_specs(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=s.config) for s in missing]
                )
        await wait_until_served(admin, specs, TOPICS_VISIBLE_TIMEOUT_S)
        return [s.name for s in missing]
    finally:
        await admin.close()


async def partition_count(settings: Settings, topic: str) -> int:
    """How many partitions `topic` has in the cluster; `RuntimeError` if it is not there."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        await admin.start()
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise RuntimeError(f"topic {topic} is not in the cluster (error code {described['error_code']})")
    return len(described["partitions"])


def unserved(described: list[dict[str, Any]], specs: list[TopicSpec]) -> list[str]:
    """Topics of `specs` not yet in the metadata with every partition led by a broker."""
    by_name = {t["topic"]: t for t in described}
    waiting = []
    for spec in specs:
        topic = by_name.get(spec.name)
        partitions = topic["partitions"] if topic and topic["error_code"] == 0 else []
        led = [p for p in partitions if p["error_code"] == 0 and p["leader"] >= 0]
        if len(led) < spec.partitions:
            waiting.append(spec.name)
    return waiting


async def wait_until_served(admin: AIOKafkaAdminClient, specs: list[TopicSpec], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = [s.name for s in specs]
    while True:
        waiting = unserved(await admin.describe_topics(waiting), [s for s in specs if s.name in waiting])
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not served by the cluster after {timeout_s:.0f} s: {', '.join(waiting)}")
        await asyncio.sleep(0.1)
