"""Every topic declared once, created explicitly with its partition count and config."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

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


async def ensure_topics(settings: Settings) -> list[str]:
    """Creates missing topics; returns the names it created. Safe to call from every process."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in topic_specs(settings) if s.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=s.config) for s in missing]
                )
        return [s.name for s in missing]
    finally:
        await admin.close()
